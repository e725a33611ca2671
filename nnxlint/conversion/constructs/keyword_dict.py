"""Keyword arguments gathered in a local dict and passed with ``**``::

    inits = dict(kernel_init=nn.initializers.xavier_uniform(),
                 bias_init=nn.initializers.normal(stddev=1e-6))
    x = nn.Dense(self.mlp_dim, **inits)(x)
    x = nn.Dense(d, **inits)(x)

NNX layers take the same keywords at construction, in ``__init__``; so the dict's
entries are written into each call that unpacks it (``nn.Dense(self.mlp_dim,
kernel_init=..., bias_init=...)``) and the assignment goes, before the conversion.
Only where that is the same program: the dict is built once, at the top of the
method, by ``dict(k=v, ...)`` or a literal with string keys, it is read only as
``**name`` in calls, and each value reads nothing but literals, fields and
module-level names (initializer factories: building them again per call gives
equal functions).  Anything else keeps the refusal "starred arguments".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import IDENTIFIER, names_read

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter


def inlined_keyword_dicts(converter: "ClassConverter", function: cst.FunctionDef) -> cst.FunctionDef:
    """``function`` with each local keyword dict written out where it is unpacked."""
    if not isinstance(function.body, cst.IndentedBlock):
        return function
    dicts: dict[str, list[cst.Arg]] = {}
    statements: dict[int, str] = {}  # the assignment -> the name it binds
    for statement in function.body.body:
        found = _keyword_dict(converter, statement)
        if found is not None:
            dicts[found[0]] = found[1]
            statements[id(statement)] = found[0]
    if not dicts:
        return function
    uses = _Uses(set(dicts))
    function.body.visit(uses)
    inlined = {name: arguments for name, arguments in dicts.items()
               if uses.unpacked.get(name, 0) and not uses.other.get(name, 0) and uses.bound.get(name, 0) == 1}
    if not inlined:
        return function
    kept = [statement for statement in function.body.body if statements.get(id(statement)) not in inlined]
    body = function.body.with_changes(body=kept).visit(_Inline(inlined))
    return function.with_changes(body=body)


def _keyword_dict(converter: "ClassConverter", statement: cst.CSTNode) -> Optional[tuple[str, list[cst.Arg]]]:
    """``name = dict(k=v, ...)`` / ``name = {'k': v, ...}``: the name and the keyword arguments."""
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Assign) and len(statement.body[0].targets) == 1
            and isinstance(statement.body[0].targets[0].target, cst.Name)):
        return None
    value = statement.body[0].value
    arguments: list[cst.Arg] = []
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Name) and value.func.value == "dict" \
            and converter.env.resolve(value.func) is None and converter._fixed_name("dict"):
        if any(arg.keyword is None for arg in value.args):
            return None
        arguments = [cst.Arg(arg.value, keyword=arg.keyword) for arg in value.args]
    elif isinstance(value, cst.Dict):
        for element in value.elements:
            key = element.key if isinstance(element, cst.DictElement) else None
            text = key.evaluated_value if isinstance(key, cst.SimpleString) else None
            if not (isinstance(text, str) and IDENTIFIER.fullmatch(text)):
                return None
            arguments.append(cst.Arg(element.value, keyword=cst.Name(text)))
    else:
        return None
    if not arguments or not all(converter._fixed(arg.value) for arg in arguments):
        return None
    return statement.body[0].targets[0].target.value, arguments


class _Uses(cst.CSTVisitor):
    """How each name is used: unpacked (``**name``), bound, or anything else."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.unpacked: dict[str, int] = {}
        self.bound: dict[str, int] = {}
        self.other: dict[str, int] = {}
        self._counted: set[int] = set()

    def _count(self, table: dict[str, int], name: str) -> None:
        table[name] = table.get(name, 0) + 1

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.star == "**" and isinstance(node.value, cst.Name) and node.value.value in self.wanted:
            self._count(self.unpacked, node.value.value)
            self._counted.add(id(node.value))

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        for name in names_read(node.target):
            if name in self.wanted:
                self._count(self.bound, name)
                self._counted.update(id(child) for child in _names(node.target, name))

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.wanted and id(node) not in self._counted:
            self._count(self.other, node.value)


def _names(node: cst.CSTNode, name: str) -> list[cst.Name]:
    found: list[cst.Name] = []

    class Collect(cst.CSTVisitor):
        def visit_Name(self, child: cst.Name) -> None:
            if child.value == name:
                found.append(child)

    node.visit(Collect())
    return found


class _Inline(cst.CSTTransformer):
    def __init__(self, dicts: dict[str, list[cst.Arg]]) -> None:
        super().__init__()
        self.dicts = dicts

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        args: list[cst.Arg] = []
        for arg in updated_node.args:
            if arg.star == "**" and isinstance(arg.value, cst.Name) and arg.value.value in self.dicts:
                args.extend(self.dicts[arg.value.value])
            else:
                args.append(arg)
        if len(args) == len(updated_node.args) and all(a is b for a, b in zip(args, updated_node.args)):
            return updated_node
        comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        separated = [arg if arg.comma is not cst.MaybeSentinel.DEFAULT else arg.with_changes(comma=comma)
                     for arg in args[:-1]]
        return updated_node.with_changes(args=separated + [args[-1]])
