"""An activation chosen from a field into a local (purejaxrl's actor-critics)::

    if self.activation == "relu":
        activation = nn.relu
    else:
        activation = nn.tanh
    x = activation(nn.Dense(64)(x))

A local that every binding in the class's methods gives an elementwise Linen, JAX or
NumPy function (``relu``, ``tanh``, ...) keeps the shape of what it is called on, as
each of those does; so the next layer's input size is known and is no constructor
parameter.  Any other binding of the name (a parameter, a loop, another value, a
nested ``def``) and the name is not followed.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Iterable

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.linen_map import ELEMENTWISE_FUNCTIONS

if TYPE_CHECKING:
    from nnxlint.conversion.base import FileEnv

_MODULES = ("flax.linen.", "jax.nn.", "jax.numpy.")


def elementwise_locals(env: "FileEnv", methods: Iterable[cst.FunctionDef], bindings: Counter) -> frozenset[str]:
    """The names bound only to elementwise functions; ``bindings`` counts every binding."""
    values: dict[str, list[cst.BaseExpression]] = {}
    other: set[str] = set()
    for method in methods:
        other.update(param.name.value for param in walk(method.params) if isinstance(param, cst.Param))
        for node in walk(method.body):
            if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
                other.add(node.name.value)
            elif isinstance(node, cst.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0].target, cst.Name):
                values.setdefault(node.targets[0].target.value, []).append(node.value)
    return frozenset(name for name, bound in values.items()
                     if name not in other and bindings[name] == len(bound)
                     and all(_elementwise(env, value) for value in bound))


def _elementwise(env: "FileEnv", value: cst.BaseExpression) -> bool:
    qualified = env.resolve(value) or ""
    return qualified.startswith(_MODULES) and qualified.rpartition(".")[2] in ELEMENTWISE_FUNCTIONS
