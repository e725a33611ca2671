"""The engine on hostile sources: lines as Python counts them, noqa only in comments,
fixes that CPython refuses to compile dropped, NNX000 where the user sees the error,
deep nesting without RecursionError (issue 13)."""

from __future__ import annotations

import ast

import libcst as cst
import pytest

from nnxlint.edits import with_keyword
from nnxlint.engine import check_source, unknown_noqa_codes
from nnxlint.registry import all_rules
from nnxlint.rule import Fix, Rule
from nnxlint.runner import Job, check_file, check_files

RULES = list(all_rules().values())
OPTIMIZER = "opt = nnx.Optimizer(model, optax.adam(1e-3))"
HEADER = "from flax import nnx\nimport optax\n"


def codes_and_lines(text, rules=RULES):
    return [(finding.code, finding.line) for finding in check_source(text, "t.py", rules).findings]


def python_line_of(text, needle):
    """The line CPython gives the first Call whose source contains ``needle``."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and needle in ast.unparse(node):
            return node.lineno
    raise AssertionError(needle)


# -- lines as Python counts them --------------------------------------------------

@pytest.mark.parametrize("separator", ["\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_findings_and_noqa_use_python_lines(separator):
    text = f'{HEADER}note = "a{separator}b"\n{OPTIMIZER}\n'
    line = python_line_of(text, "Optimizer")
    assert codes_and_lines(text) == [("NNX102", line)]
    suppressed = f'{HEADER}note = "a{separator}b"\n{OPTIMIZER}  # noqa: NNX102\n'
    assert codes_and_lines(suppressed) == []
    # a noqa on the line *after* the finding (which str.splitlines would take for it) suppresses nothing
    wrong_line = f'{HEADER}note = "a{separator}b"\n{OPTIMIZER}\nother = 1  # noqa: NNX102\n'
    assert codes_and_lines(wrong_line) == [("NNX102", line)]


def test_fix_leaves_a_line_with_noqa_after_a_form_feed_alone():
    text = f'{HEADER}\x0c\nnote = "\u2028"\n{OPTIMIZER}  # noqa: NNX102\n'
    assert check_source(text, "t.py", RULES, "safe").fixed_text is None


def test_unknown_noqa_codes_are_reported_at_python_lines():
    text = f'note = "a\u2028b"\nx = 1  # noqa: NNX999\n'
    assert unknown_noqa_codes(text, {"NNX102"}) == [(2, "NNX999")]


# -- noqa only in comments ----------------------------------------------------------

@pytest.mark.parametrize("text", [
    f'{HEADER}{OPTIMIZER}; note = "# noqa"\n',
    f'{HEADER}{OPTIMIZER}; note = "# noqa: NNX102"\n',
    f'{HEADER}{OPTIMIZER}; note = """\n# noqa: NNX102\n"""\n',
])
def test_noqa_inside_a_string_suppresses_nothing(text):
    assert [code for code, _ in codes_and_lines(text)] == ["NNX102"]


def test_noqa_in_a_string_is_not_an_unknown_code():
    assert unknown_noqa_codes('x = "# noqa: NNX999"\n', {"NNX102"}) == []


# -- fixed files must compile ---------------------------------------------------------

class RepeatsKeyword(Rule):
    """A fix LibCST re-parses happily but CPython refuses: ``f(a=1, a=1)``."""

    code, name, summary = "TST101", "repeats-keyword", "adds a second `a=` keyword"
    triggers = ("f(",)

    def visit_Call(self, node):
        if isinstance(node.func, cst.Name) and node.func.value == "f":
            self.report(node, "call", Fix("add a=1", "safe", {node: with_keyword(node, "a", cst.Integer("1"))}))


def test_a_fix_whose_output_does_not_compile_is_dropped_with_the_reason():
    result = check_source("f(a=1)\n", "t.py", [RepeatsKeyword], "safe")
    assert result.fixed_text is None and result.dropped_fixes == ["add a=1"]
    assert "keyword argument repeated" in result.drop_reasons["add a=1"]


def test_runner_warns_about_a_fix_that_would_not_compile(tmp_path, monkeypatch):
    import nnxlint.runner

    path = tmp_path / "t.py"
    path.write_text("f(a=1)\n")
    monkeypatch.setattr(nnxlint.runner, "all_rules", lambda: {"TST101": RepeatsKeyword})
    outcome = check_file(str(path), Job(frozenset({"TST101"}), (), str(tmp_path), "safe", write=True))
    assert path.read_text() == "f(a=1)\n"
    assert any("would not compile" in warning and "keyword argument repeated" in warning
               for warning in outcome.warnings), outcome.warnings


# -- NNX000: every file, where the user sees it, with CPython's verdict -------------------

@pytest.mark.parametrize("text", [
    "import os\nx = (1,\n",                         # no trigger string at all
    "from flax import nnx\nx = 1\ny = 'unterminated\nz = 2\n",  # a tokenizer error
    "from flax import nnx\n\ndef f(:\n    pass\n",
    "from flax import nnx\nif True:\n    x = 1\n  y = 2\n",     # inconsistent dedent
    "from flax import nnx\nx = [1,\n     2\ny = 3\n",
])
def test_nnx000_is_reported_where_cpython_reports_it(text):
    with pytest.raises(SyntaxError) as expected:
        compile(text, "t.py", "exec", ast.PyCF_ONLY_AST)
    (finding,) = check_source(text, "t.py", RULES).findings
    assert finding.code == "NNX000" and "syntax error" in finding.message
    assert (finding.line, finding.column) == (expected.value.lineno, expected.value.offset)
    assert expected.value.msg in finding.message


def test_a_binary_file_is_said_to_be_binary(tmp_path):
    path = tmp_path / "blob.py"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00")
    outcome = check_file(str(path), Job(frozenset(all_rules()), (), str(tmp_path)))
    (finding,) = outcome.findings
    assert finding.code == "NNX000" and "binary" in finding.message and "encoding" not in finding.message


# -- deep nesting -----------------------------------------------------------------------------

def test_an_if_with_a_thousand_elif_branches():
    text = ("from flax import nnx\nx = 1\nif x == 0:\n    pass\n"
            + "".join(f"elif x == {i}:\n    y = nnx.Linear(2, 3)\n" for i in range(1, 1000)))
    compile(text, "t.py", "exec")
    result = check_source(text, "t.py", RULES)
    assert result.crashes == []
    assert {finding.code for finding in result.findings} == {"NNX101"}


def test_valid_python_libcst_cannot_parse_is_not_called_a_syntax_error():
    text = "from flax import nnx\ns = (\n" + "".join(f"    'a{i}'\n" for i in range(5000)) + ")\n"
    compile(text, "t.py", "exec")
    for finding in check_source(text, "t.py", RULES).findings:
        assert finding.code != "NNX000" or ("syntax error" not in finding.message
                                            and "LibCST" in finding.message), finding


def test_nesting_too_deep_for_python_is_nnx000_not_a_hang(tmp_path):
    # CPython gives up on this sum (RecursionError); LibCST takes minutes over it
    path = tmp_path / "deep.py"
    path.write_text("from flax import nnx\nm = nnx.Linear(2, 3)\ns = " + " + ".join(["1"] * 20000) + "\n")
    other = tmp_path / "other.py"
    other.write_text("import flax.linen as nn\n")
    job = Job(frozenset(all_rules()), (), str(tmp_path), time_limit=3)
    deep, fine = check_files([str(path), str(other)], job, jobs=1)
    (finding,) = deep.findings
    assert finding.code == "NNX000" and "nested" in finding.message
    assert [f.code for f in fine.findings] == ["NNX001"]


def test_a_checked_file_leaves_nothing_behind_in_memory():
    import gc
    import weakref

    from nnxlint import context as context_module

    made = []
    original = context_module.FileContext.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(weakref.ref(self))

    context_module.FileContext.__init__ = remember
    try:
        text = "from flax import nnx\nimport jax\n\n@jax.jit\ndef step(model, x):\n    model.count += 1\n"
        for _ in range(3):
            check_source(text, "t.py", RULES)
    finally:
        context_module.FileContext.__init__ = original
    gc.collect()
    assert made and all(reference() is None for reference in made)


@pytest.mark.parametrize("parameter", [
    "rngs: nnx.Rngs | None = None", "rngs: Optional[nnx.Rngs] = None", 'rngs: "nnx.Rngs"', "rngs: Any",
    "rngs=None",
])
def test_nnx101_never_adds_a_second_rngs_parameter(parameter):
    text = ("from typing import Any, Optional\nfrom flax import nnx\n\nclass Block(nnx.Module):\n"
            f"    def __init__(self, din, *, {parameter}):\n        self.linear = nnx.Linear(din, din)\n")
    result = check_source(text, "t.py", [all_rules()["NNX101"]], "unsafe")
    assert result.dropped_fixes == []
    compile(result.fixed_text or text, "t.py", "exec")


def test_nnx101_leaves_an_init_that_rebinds_rngs_alone():
    text = ("from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, din):\n"
            "        rngs = make_keys()\n        self.linear = nnx.Linear(din, din)\n")
    result = check_source(text, "t.py", [all_rules()["NNX101"]], "unsafe")
    assert result.dropped_fixes == [] and "rngs: nnx.Rngs" not in (result.fixed_text or "")


# -- the Linen conversion: bounded arithmetic ---------------------------------------------

def test_size_arithmetic_is_bounded_not_computed():
    from nnxlint.conversion.base import substitute
    from nnxlint.conversion.shapes import fold_integers

    assert fold_integers("9**9**9") is None and fold_integers("2**10**10") is None
    assert fold_integers("7 * 7 * 64 + 3 // 2 - 2**4") == 7 * 7 * 64 + 1 - 16
    assert substitute("features * 2", {"features": "9**9**9"}).value is None
    assert substitute("features * 2", {"features": "(3 + 5)"}).value == 16


@pytest.mark.parametrize("size", ["9**9**9", "10**100000", "9" * 5000])
def test_check_does_not_hang_on_huge_linen_sizes(size):
    import signal

    text = ("import flax.linen as nn\nimport jax\nimport jax.numpy as jnp\n\n"
            "class Block(nn.Module):\n    features: int\n\n    @nn.compact\n    def __call__(self, x):\n"
            "        x = nn.Dense(self.features * 2)(x)\n        return nn.Dense(3)(x)\n\n"
            f"model = Block({size})\nparams = model.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))\n")

    def timeout(signum, frame):
        raise TimeoutError("check hangs")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    try:
        for level in (None, "unsafe"):
            result = check_source(text, "t.py", RULES, level)
            assert result.crashes == []
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("fields", ["    features: int\n    features: int\n", "    features: int\n    rngs: int\n"])
def test_nnx002_refuses_duplicate_fields_instead_of_a_duplicate_parameter(fields):
    text = ("import flax.linen as nn\nimport jax\nimport jax.numpy as jnp\n\n"
            f"class Block(nn.Module):\n{fields}\n    @nn.compact\n    def __call__(self, x):\n"
            "        return nn.Dense(self.features)(x)\n\n"
            "model = Block(3)\nparams = model.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))\n")
    result = check_source(text, "t.py", RULES, "unsafe")
    assert result.dropped_fixes == [] and result.crashes == [] and result.fixed_text is None
    (linen_class,) = [f for f in result.findings if f.code == "NNX002"]
    assert "declared twice or named `rngs`" in linen_class.message


def test_name_lookup_does_not_grow_with_the_number_of_rebindings():
    import time

    from nnxlint.names import Binding, Scope

    scope = Scope(cst.Module([]), None)
    count = 20_000  # generated code: one ``from flax import nnx`` per unit
    for index in range(count):
        scope.bind("nnx", Binding(index, "flax.nnx", in_except=index % 7 == 0))
    started = time.perf_counter()
    for index in range(count):
        found = scope.lookup_here("nnx", index)
        assert found is not None and found.index <= index and (not found.in_except or index == 0)
    # a scan of every binding per lookup (the old way) takes tens of seconds here
    assert time.perf_counter() - started < 2.0
