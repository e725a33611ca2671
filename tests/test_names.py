"""The import resolver: every real import form, and shadowing."""

from __future__ import annotations

import libcst as cst
import pytest

from nnxlint.context import FileContext, Traversal
from nnxlint.rule import Rule


class _Probe(Rule):
    code, name, summary = "PROBE", "probe", "records what call targets resolve to"

    def visit_Call(self, node: cst.Call) -> None:
        self.resolved.append(self.context.resolve(node.func))

    def __init__(self, context):
        super().__init__(context)
        self.resolved = []


def resolved_calls(source: str) -> list:
    module = cst.parse_module(source)
    context = FileContext(module, "probe.py")
    probe = _Probe(context)
    Traversal(context, [probe]).run(module)
    return probe.resolved


@pytest.mark.parametrize("source, expected", [
    ("import flax.linen as nn\nnn.Dense(3)\n", "flax.linen.Dense"),
    ("from flax import linen\nlinen.Dense(3)\n", "flax.linen.Dense"),
    ("from flax import linen as fl, nnx\nfl.Dense(3)\n", "flax.linen.Dense"),
    ("from flax import linen as fl, nnx\nnnx.Linear(1, 2)\n", "flax.nnx.Linear"),
    ("from flax.linen import Dense\nDense(3)\n", "flax.linen.Dense"),
    ("import flax\nflax.linen.Dense(3)\n", "flax.linen.Dense"),
    ("import flax\nflax.nnx.Linear(1, 2)\n", "flax.nnx.Linear"),
    ("import flax.linen\nflax.linen.Dense(3)\n", "flax.linen.Dense"),
    ("import flax.nnx as nnx\nnnx.Linear(1, 2)\n", "flax.nnx.Linear"),
    ("from flax import nnx as fx\nfx.Optimizer(m, t)\n", "flax.nnx.Optimizer"),
    ("from flax.nnx import Optimizer\nOptimizer(m, t)\n", "flax.nnx.Optimizer"),
    ("from flax.nnx.nn.linear import Linear\nLinear(1, 2)\n", "flax.nnx.Linear"),
    ("from flax.nnx.training.optimizer import Optimizer as O\nO(m, t)\n", "flax.nnx.Optimizer"),
    ("from flax.linen.linear import Dense\nDense(3)\n", "flax.linen.Dense"),
    ("import flax.linen as nn\nnn.initializers.zeros(k, s)\n", "flax.linen.initializers.zeros"),
    ("from flax.linen import initializers\ninitializers.zeros(k, s)\n", "flax.linen.initializers.zeros"),
    ("import jax\njax.jit(f)\n", "jax.jit"),
    ("try:\n    import flax.linen as nn\nexcept ImportError:\n    nn = None\nnn.Dense(3)\n", "flax.linen.Dense"),
    ("from flax import nnx\ndef f():\n    return nnx.Linear(1, 2)\n", "flax.nnx.Linear"),
    ("from flax import nnx\nclass A:\n    def f(self):\n        return nnx.Linear(1, 2)\n", "flax.nnx.Linear"),
    ("from flax import nnx\nclass A:\n    nnx = None\n    def f(self):\n        return nnx.Linear(1, 2)\n",
     "flax.nnx.Linear"),  # class attributes are not visible from methods
])
def test_import_forms_resolve(source, expected):
    assert resolved_calls(source)[-1] == expected


@pytest.mark.parametrize("source", [
    "from flax.nnx import Linear\nclass Linear:\n    pass\nLinear(1, 2)\n",
    "from flax.nnx import Linear\ndef Linear(a, b): ...\nLinear(1, 2)\n",
    "from flax import nnx\ndef f(nnx):\n    return nnx.Linear(1, 2)\n",
    "from flax import nnx\ndef f():\n    nnx = make()\n    return nnx.Linear(1, 2)\n",
    "from flax import nnx\nfor nnx in things:\n    nnx.Linear(1, 2)\n",
    "from flax import nnx\nwith open(p) as nnx:\n    nnx.Linear(1, 2)\n",
    "import flax\nflax = object()\nflax.nnx.Linear(1, 2)\n",
    "from . import nnx\nnnx.Linear(1, 2)\n",
    "from .flax import nnx\nnnx.Linear(1, 2)\n",
    "from mypkg import nnx\nnnx.Linear(1, 2)\n",
    "from flax import nnx\n[nnx.Linear(1, 2) for nnx in xs]\n",
    "from flax import nnx\nf = lambda nnx: nnx.Linear(1, 2)\nf(0)\n",
    "Linear(1, 2)\n",
])
def test_shadowed_or_foreign_names_are_not_flax(source):
    assert not any(name and name.startswith("flax.nnx.Linear") for name in resolved_calls(source))


def test_rebinding_after_use_does_not_reach_back():
    source = "from flax import nnx\nnnx.Linear(1, 2)\nnnx = None\n"
    assert resolved_calls(source) == ["flax.nnx.Linear"]


def test_function_sees_final_module_binding():
    source = "def f():\n    return nnx.Linear(1, 2)\nfrom flax import nnx\nf()\n"
    assert resolved_calls(source)[0] == "flax.nnx.Linear"


def test_the_traversal_reaches_every_node_because_sequence_fields_hold_only_nodes():
    """``context.children`` adds a sequence field's items without testing each one:
    LibCST's own annotations must say that every item is a node."""
    import collections.abc
    import typing

    import libcst as cst

    from nnxlint.context import _NODE_TYPES, child_fields, walk

    def nodes_only(annotation) -> bool:
        if typing.get_origin(annotation) is typing.Union:
            return all(nodes_only(argument) for argument in typing.get_args(annotation))
        return isinstance(annotation, type) and issubclass(annotation, cst.CSTNode)

    for kind in _NODE_TYPES:
        hints = typing.get_type_hints(kind)
        for field in child_fields(kind):
            hint = hints[field]
            options = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
            for option in options:
                if typing.get_origin(option) in (collections.abc.Sequence, list, tuple):
                    items = [item for item in typing.get_args(option) if item is not Ellipsis]
                    assert all(nodes_only(item) for item in items), (kind.__name__, field, option)
    module = cst.parse_module("import a.b as c\nf(x, *y, k=1)[1:2, ::3]\n@d\ndef g(p, /, q=2, *, r): pass\n")
    names = [node.value for node in walk(module) if isinstance(node, cst.Name)]
    assert sorted(names) == ["a", "b", "c", "d", "f", "g", "k", "p", "q", "r", "x", "y"]
