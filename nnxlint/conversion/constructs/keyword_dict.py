"""Keyword arguments gathered in a local dict and passed with ``**``::

    inits = dict(kernel_init=nn.initializers.xavier_uniform(),
                 bias_init=nn.initializers.normal(stddev=1e-6))
    x = nn.Dense(self.mlp_dim, **inits)(x)
    x = nn.Dense(d, **inits)(x)

    if self.num_classes:
        kw = {'kernel_init': nn.initializers.zeros} if self.head_zeroinit else {}
        head = nn.Dense(self.num_classes, name='head', **kw)

NNX layers take the same keywords at construction, in ``__init__``; so the dict's
entries are written into each call that unpacks it (``nn.Dense(self.mlp_dim,
kernel_init=..., bias_init=...)``) and the assignment goes, before the conversion.
Only where that is the same program: the dict is built once in the method (at its
top or in a block), by ``dict(k=v, ...)``, a literal with string keys, or a choice
``a if test else b`` of two such, it is read only as ``**name`` in calls, and each
value (and the test) reads nothing but literals, fields and module-level names
(initializer factories: building them again per call gives equal functions).

Of a choice, a keyword both dicts have is written ``k=(a_k if test else b_k)``; the
keywords only one has stay a ``**`` of the choice between what is left
(``**({'kernel_init': nn.initializers.zeros} if self.head_zeroinit else {})``),
which a Flax layer takes (``spread``) only for keywords NNX takes under the same
name with the same default and that leave the output's shape as it is: leaving one
out then means in NNX what it meant in Linen.  Anything else keeps the refusal
"starred arguments".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import IDENTIFIER, Unconvertible, names_read

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter
    from nnxlint.conversion.linen_map import LayerMapping

# keywords that leave a layer's output shape and dtype as they are
_SHAPELESS = frozenset({"use_bias", "kernel_init", "bias_init", "param_dtype", "precision", "use_scale",
                        "scale_init", "embedding_init"})


def inlined_keyword_dicts(converter: "ClassConverter", function: cst.FunctionDef) -> cst.FunctionDef:
    """``function`` with each local keyword dict written out where it is unpacked."""
    if not isinstance(function.body, cst.IndentedBlock):
        return function
    dicts: dict[str, list[cst.Arg]] = {}
    statements: dict[int, str] = {}  # the assignment -> the name it binds
    for statement in _statements(function.body):
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
    removed = {id_ for id_, name in statements.items() if name in inlined}
    return function.with_changes(body=function.body.visit(_Inline(inlined, removed)))


def spread(arg: cst.Arg, mapping: "LayerMapping") -> cst.BaseExpression:
    """The choice of ``**({...} if test else {...})`` left in a call of ``nn.<mapping.linen>``
    by the inlining, where passing it on is safe (see above)."""
    value = arg.value
    entries = [_entries(branch) for branch in (value.body, value.orelse)] if isinstance(value, cst.IfExp) else []
    if arg.star != "**" or not entries or None in entries:
        raise Unconvertible(f"starred arguments to `nn.{mapping.linen}`")
    for key in sorted({key for branch in entries for key in branch}):  # type: ignore[union-attr]
        if key not in _SHAPELESS or key not in mapping.same_defaults or mapping.renamed.get(key, key) != key:
            raise Unconvertible(f"`nn.{mapping.linen}` is passed `{key}` only sometimes (`**`): its NNX "
                                "default may differ, or it may change the output's shape")
    return value


def _statements(block: cst.BaseSuite) -> list[cst.SimpleStatementLine]:
    """The method's one-line statements, in its blocks too (not in nested functions or classes)."""
    found: list[cst.SimpleStatementLine] = []

    class Collect(cst.CSTVisitor):
        def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
            found.append(node)

        def visit_FunctionDef(self, node) -> bool:
            return False

        visit_ClassDef = visit_Lambda = visit_FunctionDef

    block.visit(Collect())
    return found


def _keyword_dict(converter: "ClassConverter", statement: cst.CSTNode) -> Optional[tuple[str, list[cst.Arg]]]:
    """``name = dict(k=v, ...)`` / ``name = {'k': v, ...}``: the name and the keyword arguments."""
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Assign) and len(statement.body[0].targets) == 1
            and isinstance(statement.body[0].targets[0].target, cst.Name)):
        return None
    value = statement.body[0].value
    if isinstance(value, cst.IfExp):
        arguments = _choice_arguments(converter, value)
    else:
        entries = _entries(value, converter)
        arguments = [cst.Arg(entry, keyword=cst.Name(key)) for key, entry in entries.items()] if entries else []
    if not arguments or not all(converter._fixed(arg.value) for arg in arguments):
        return None
    return statement.body[0].targets[0].target.value, arguments


def _choice_arguments(converter: "ClassConverter", choice: cst.IfExp) -> list[cst.Arg]:
    """``a if test else b``: ``k=(a_k if test else b_k)`` for the keys both have, then
    ``**(<a if test else b> of the others)``; [] where it is not a choice of keyword dicts."""
    first, second = _entries(choice.body, converter), _entries(choice.orelse, converter)
    if first is None or second is None or not converter._fixed(choice.test):
        return []
    arguments = [cst.Arg(choice.with_changes(body=first[key], orelse=second[key], lpar=[cst.LeftParen()],
                                             rpar=[cst.RightParen()]), keyword=cst.Name(key))
                 for key in first if key in second]
    first_only = {key: entry for key, entry in first.items() if key not in second}
    second_only = {key: entry for key, entry in second.items() if key not in first}
    if first_only or second_only:
        rest = choice.with_changes(body=_display(first_only), orelse=_display(second_only),
                                   lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        arguments.append(cst.Arg(rest, star="**"))
    return arguments


def _entries(value: cst.BaseExpression, converter: Optional["ClassConverter"] = None
             ) -> Optional[dict[str, cst.BaseExpression]]:
    """``dict(k=v, ...)`` or ``{'k': v, ...}``: its keywords and values."""
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Name) and value.func.value == "dict" \
            and (converter is None or (converter.env.resolve(value.func) is None and converter._fixed_name("dict"))):
        if any(arg.keyword is None for arg in value.args):
            return None
        return {arg.keyword.value: arg.value for arg in value.args}  # type: ignore[union-attr]
    if isinstance(value, cst.Dict):
        entries = {}
        for element in value.elements:
            key = element.key if isinstance(element, cst.DictElement) else None
            text = key.evaluated_value if isinstance(key, cst.SimpleString) else None
            if not (isinstance(text, str) and IDENTIFIER.fullmatch(text)):
                return None
            entries[text] = element.value
        return entries
    return None


def _display(entries: dict[str, cst.BaseExpression]) -> cst.Dict:
    return cst.Dict([cst.DictElement(cst.SimpleString(repr(key)), value) for key, value in entries.items()])


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
    def __init__(self, dicts: dict[str, list[cst.Arg]], removed: set[int]) -> None:
        super().__init__()
        self.dicts = dicts
        self.removed = removed  # the dicts' assignments

    def leave_SimpleStatementLine(self, original_node, updated_node):
        return cst.RemoveFromParent() if id(original_node) in self.removed else updated_node

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
