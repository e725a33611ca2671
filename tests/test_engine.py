"""The engine's guarantees, with rules made up for the purpose."""

from __future__ import annotations

import libcst as cst

from nnxlint.engine import check_source
from nnxlint.imports import add_imports
from nnxlint.positions import Positions
from nnxlint.registry import all_rules
from nnxlint.rule import Fix, Rule

SOURCE = "from flax import nnx\nimport flax.linen as nn\nx = nnx.Linear(1, 2)\n"


class Crashing(Rule):
    code, name, summary = "TST001", "crashing", "always raises"

    def visit_Call(self, node):
        raise RuntimeError("boom")


class BreaksSyntax(Rule):
    code, name, summary = "TST002", "breaks-syntax", "offers a fix whose output does not parse"

    def visit_Call(self, node):
        self.report(node, "call", Fix("break it", "safe", {node.func: cst.Name("class")}))


class RenamesCalls(Rule):
    """Two fixes that nest (a call inside a call): they must be applied over passes."""

    code, name, summary = "TST003", "renames-calls", "renames every call to f"
    triggers = ("(",)

    def visit_Call(self, node):
        if isinstance(node.func, cst.Name) and node.func.value != "f":
            self.report(node, "call", Fix("rename", "safe", {node: node.with_changes(func=cst.Name("f"))}))


def test_a_crashing_rule_is_reported_and_others_still_run():
    linen = all_rules()["NNX001"]
    result = check_source(SOURCE, "t.py", [Crashing, linen])
    assert [crash.code for crash in result.crashes] == ["TST001"]
    assert "boom" in result.crashes[0].detail
    assert [finding.code for finding in result.findings] == ["NNX001"]


def test_a_fix_that_breaks_syntax_is_dropped_and_reported():
    result = check_source(SOURCE, "t.py", [BreaksSyntax], "safe")
    assert result.fixed_text is None and result.dropped_fixes == ["break it"]
    assert [finding.code for finding in result.findings] == ["TST002"]


def test_overlapping_fixes_reach_a_fixpoint():
    result = check_source("a(b(c(1)))\n", "t.py", [RenamesCalls], "safe")
    assert result.fixed_text == "f(f(f(1)))\n" and result.fixes_applied == 3 and result.findings == []


def test_positions_match_libcst_position_provider():
    from libcst.metadata import MetadataWrapper, PositionProvider

    source = ("from a import (\n    b,\n)\r@decorator(arg)\nclass A(Base):\n    x: int = 1\n\n    def f(self, *, y=(1,\r\n 2)):\n"
              "        return [z for z in self.g(y) if z]  # c\n")
    module = cst.parse_module(source)
    reference = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    ours = Positions(module)
    assert len(reference) > 50
    for node, expected in reference.items():
        assert ours[node] == expected, node


def test_noqa_on_the_last_line_of_a_multiline_finding():
    source = "import flax.linen as nn\nfrom flax.linen import (\n    Dense,\n)  # noqa: NNX001\n"
    result = check_source(source, "t.py", [all_rules()["NNX001"]])
    assert [finding.line for finding in result.findings] == [1]


def test_text_precheck_skips_files_without_triggers():
    class NeverRuns(Crashing):
        triggers = ("no-such-text",)

    assert check_source(SOURCE, "t.py", [NeverRuns]).crashes == []


def test_imports_are_added_where_a_person_would():
    after_flax = add_imports(cst.parse_module("import os\nimport flax\nimport optax\n\nx = 1\n"), {"flax.nnx"})
    assert after_flax.code == "import os\nimport flax\nfrom flax import nnx\nimport optax\n\nx = 1\n"
    after_docstring = add_imports(cst.parse_module('"""Doc."""\n\nx = 1\n'), {"flax.nnx"})
    assert after_docstring.code == '"""Doc."""\nfrom flax import nnx\n\nx = 1\n'
    already = add_imports(cst.parse_module("from flax import nnx\n"), {"flax.nnx"})
    assert already.code == "from flax import nnx\n"
