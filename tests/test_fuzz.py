"""A fuzz run small enough for CI: generated and mutated programs through the whole
check --fix --unsafe-fixes pipeline (the long run: benchmarks/fuzz.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from fuzz import failure, generated_programs, mutated_programs  # noqa: E402  (the benchmark's oracle)


@pytest.mark.parametrize("number, text", list(enumerate(mutated_programs(8, seed=2026))))
def test_mutated_fixture_programs(number, text):
    assert failure(text, time_limit=20) is None


def test_generated_programs():
    problems = [(problem, text) for text in generated_programs(10, seed=2026)
                if (problem := failure(text, time_limit=20)) is not None]
    assert not problems, problems[0]


@pytest.mark.parametrize("text", [
    "from flax import nnx\nx = (1,\n",                       # what CPython rejects: NNX000, nothing else
    "from flax import nnx\ns = 'a\u2028b'\nm = nnx.Linear(1, 2)\n",
])
def test_the_oracle_accepts_what_nnxlint_gets_right(text):
    assert failure(text) is None


def test_the_oracle_notices_a_fix_that_does_not_compile(monkeypatch):
    import nnxlint.engine

    monkeypatch.setattr(nnxlint.engine, "_compile_error", lambda code: None)  # the check this issue added
    from nnxlint.rule import Fix, Rule

    class Repeats(Rule):
        code, name, summary, triggers = "TST900", "repeats", "adds a=1 twice", ("f(",)

        def visit_Call(self, node):
            import libcst as cst

            from nnxlint.edits import with_keyword
            self.report(node, "call", Fix("a", "safe", {node: with_keyword(node, "a", cst.Integer("1"))}))

    monkeypatch.setattr("nnxlint.registry.all_rules", lambda: {"TST900": Repeats})
    assert failure("f(a=1)\n").startswith("miscompiled")
