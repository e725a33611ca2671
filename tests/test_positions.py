"""Positions from the top-level statements that hold a node (given the source text)
must be those of the whole-module pass, for every node, also where a statement's
code occurs twice, the file has no final newline, CRLF line ends or a header."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnxlint.context import walk
from nnxlint.engine import parse_module
from nnxlint.positions import Positions

ROOT = Path(__file__).resolve().parent.parent

TEXTS = {
    "plain": "import flax.linen as nn\n\n\nclass M(nn.Module):\n    @nn.compact\n    def __call__(self, x):\n"
             "        return nn.Dense(3)(x)\n",
    "repeated statements": "x = 1\ny = x.value\nx = 1\ny = x.value\n\n\ndef f():\n    x = 1\n    return x\n",
    "no final newline": "import jax\nx = jax.numpy.ones(3)\nx = jax.numpy.ones(3)",
    "one line, no newline": "x.value",
    "header and footer comments": "#!/usr/bin/env python\n# header\n\nimport flax\n\nflax.linen.Dense(3)\n# footer\n\n",
    "crlf": "import flax.nnx as nnx\r\n\r\nclass A(nnx.Module):\r\n    def __init__(self):\r\n"
            "        self.w = (1,\r\n                  2)\r\n",
    "unicode": "s = 'äöü €'; t = s.value  # ünïcode\nu = '🙂' + t.value\n",
    "semicolons and continuation": "a = 1; b = a.value\nc = \\\n    b.value\n",
}


def _all_nodes(text: str):
    module = parse_module(text)
    return module, list(walk(module))


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_partial_positions_equal_the_whole_module_pass(name):
    text = TEXTS[name]
    module, nodes = _all_nodes(text)
    whole, partial = Positions(module), Positions(module, text)
    for node in nodes:
        assert partial.get(node) == whole.get(node), (type(node).__name__, name)
    assert partial.get(module) == whole.get(module)


def test_partial_positions_on_the_fixtures():
    for path in sorted(ROOT.glob("fixtures/*/*.py"))[::8]:
        text = path.read_text(encoding="utf-8")
        module, nodes = _all_nodes(text)
        whole = Positions(module)
        partial = Positions(module, text)
        for number, node in enumerate(nodes):
            assert partial.get(node) == whole.get(node), path.name
            if number % 97 == 0:  # asked first of a fresh partial pass
                assert Positions(module, text).get(node) == whole.get(node), path.name
        wanted = nodes[::5]
        told = Positions(module, text, wanted)
        assert [told.get(node) for node in wanted] == [whole.get(node) for node in wanted], path.name


def test_only_the_statements_asked_about_are_generated():
    text = "import flax\n\n" + "".join(f"def f{i}():\n    return {i}\n\n" for i in range(50)) + "y = x.value\n"
    module, _ = _all_nodes(text)
    last = module.body[-1]
    positions = Positions(module, text)
    assert positions[last].start.line == text.count("\n")
    assert positions._whole is None and list(positions._statements) == [len(module.body) - 1]


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_positions_told_the_wanted_nodes_equal_the_whole_module_pass(name):
    """Only the wanted nodes' spans are recorded (with the children they are measured
    from: a class ends where its body does); any other node still gets its own."""
    text = TEXTS[name]
    module, nodes = _all_nodes(text)
    whole = Positions(module)
    for step in (1, 3, 7):
        wanted = nodes[::step]
        told = Positions(module, text, wanted)
        for node in wanted:
            assert told.get(node) == whole.get(node), (type(node).__name__, name)
        for node in nodes:  # the others: after the first, without the restriction
            assert told.get(node) == whole.get(node), (type(node).__name__, name)
