"""A loop variable of ``__call__`` named like a field::

    features: Sequence[int]
    ...
    for features, stride in zip(self.features, self.strides):
        x = nn.Conv(features, (3, 3), strides=stride)(x)

In Linen the loop's ``features`` and the field ``self.features`` are two names;
``__init__`` takes the field as its parameter ``features``, so its loop building
the layers would rebind it, and a read of the field in or after that loop would
get an element.  The local is renamed in ``__call__`` (``features_``), before the
conversion, so both methods keep the two apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import function_params

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter


def unshadowed_loop_targets(converter: "ClassConverter", function: cst.FunctionDef) -> cst.FunctionDef:
    """``function`` with every loop variable named like a field renamed throughout."""
    targets = _LoopTargets()
    function.body.visit(targets)
    parameters = {param.name.value for param in function_params(function)}
    shadowing = sorted((targets.names & converter.field_names) - parameters)
    if not shadowing:
        return function
    taken = _Names()
    function.visit(taken)
    renames = {}
    for name in shadowing:
        new = f"{name}_"
        while new in taken.names or new in converter.field_names:
            new += "_"
        renames[name] = new
        taken.names.add(new)
    return function.with_changes(body=function.body.visit(_Rename(renames)))


class _LoopTargets(cst.CSTVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_For(self, node: cst.For) -> None:
        targets = [node.target] if isinstance(node.target, cst.Name) else [
            element.value for element in getattr(node.target, "elements", ())]
        self.names.update(target.value for target in targets if isinstance(target, cst.Name))


class _Names(cst.CSTVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


class _Rename(cst.CSTTransformer):
    """Renames the local names, not attributes (``x.features``) or keywords (``f(features=...)``)."""

    def __init__(self, renames: dict[str, str]) -> None:
        super().__init__()
        self.renames = renames
        self.kept: set[int] = set()

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.kept.add(id(node.attr))

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.kept.add(id(node.keyword))

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if original_node.value in self.renames and id(original_node) not in self.kept:
            return updated_node.with_changes(value=self.renames[original_node.value])
        return updated_node
