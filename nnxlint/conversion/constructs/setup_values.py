"""Plain values made in ``setup``: attributes that are not submodules, the locals that
compute them, and ``if``s on fields that set only such values, as pretrained-model
code writes them::

    def setup(self):
        self.weights = None
        if self.pretrained == 'imagenet':
            path = download(self.cache_dir, URLS[self.arch])
            self.weights = h5py.File(path, 'r')
        self.width = self.config.width

``setup`` runs before any submodule is used, as NNX's ``__init__`` runs before any
is built, so each statement keeps its place and meaning there: ``self.weights =
None`` and the whole ``if`` (with its ``elif``/``else`` arms and locals) are written
into ``__init__`` in ``__init__`` terms, before the submodules; a later read of
``self.weights`` or ``self.width`` (a layer argument, a test) reads the attribute
``__init__`` has just set.  NNX keeps such an attribute as it is (an h5py handle, a
config object, ``None``): a value that is neither an array nor a Variable nor a
Module is static in ``nnx.split`` and passes ``nnx.jit``.  Linen runs ``setup``
again on every ``init``/``apply``; NNX once, when the model is built.

Refused, with the line: an ``if`` whose test reads other than fields, a statement
other than an assignment, ``assert`` or ``if``, a local that would rebind a
constructor parameter, and an attribute that is also a field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import Unconvertible, line_of, self_attribute
from nnxlint.conversion.constructs import SELF_CALLS
from nnxlint.conversion.constructs.branch_module import guarded

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter


def sets_plain_values(converter: ClassConverter, node: cst.If) -> bool:
    """The ``if`` builds no submodule, parameter or variable (so it is plain ``__init__`` code)."""
    return not any(isinstance(call, cst.Call) and (converter.layer(call.func) is not None
                                                   or self_attribute(call.func) in SELF_CALLS) for call in walk(node))


def add_value(converter: ClassConverter, attribute: str, value: cst.BaseExpression,
              guard: Optional[str] = None) -> None:
    """``self.x = value`` in ``setup``, outside any branch of submodules: the same line in ``__init__``."""
    converter.init_lines.append(guarded(_value_line(converter, attribute, value), guard,
                                        converter.env.module.default_indent))


def add_local(converter: ClassConverter, name: str, value: cst.BaseExpression, guard: Optional[str] = None) -> None:
    """``path = download(...)`` in ``setup``: an ``__init__`` local."""
    converter.init_lines.append(guarded(_local_line(converter, name, value), guard,
                                        converter.env.module.default_indent))


def add_plain_if(converter: ClassConverter, node: cst.If, guard: Optional[str] = None) -> None:
    """An ``if`` of plain values, kept whole (arms, locals) in ``__init__``."""
    converter.init_lines.append(guarded("\n".join(_if_lines(converter, node)), guard,
                                        converter.env.module.default_indent))


def _if_lines(converter: ClassConverter, node: cst.If, keyword: str = "if") -> list[str]:
    test = converter.fixed_condition(node.test)
    if test is None:
        raise Unconvertible(f"an `if` in `setup` (line {line_of(converter.env.module, node)}) whose test reads "
                            "other than fields is not converted")
    lines = [f"{keyword} {test}:", *_block_lines(converter, node.body.body)]  # type: ignore[union-attr]
    if isinstance(node.orelse, cst.If):
        lines += _if_lines(converter, node.orelse, "elif")
    elif node.orelse is not None:
        lines += ["else:", *_block_lines(converter, node.orelse.body.body)]  # type: ignore[union-attr]
    return lines


def _block_lines(converter: ClassConverter, statements) -> list[str]:
    indent = converter.env.module.default_indent
    lines = []
    for statement in statements:
        lines += [indent + line for line in _statement_lines(converter, statement)]
    return lines


def _statement_lines(converter: ClassConverter, statement: cst.CSTNode) -> list[str]:
    if isinstance(statement, cst.If):
        return _if_lines(converter, statement)
    small = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 \
        else None
    if isinstance(small, cst.Assert):
        message = f", {converter.init_code(small.msg, {})}" if small.msg is not None else ""
        return [f"assert {converter.init_code(small.test, {})}{message}"]
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        target = small.targets[0].target
        attribute = self_attribute(target)
        if attribute is not None:
            return [_value_line(converter, attribute, small.value)]
        if isinstance(target, cst.Name):
            return [_local_line(converter, target.value, small.value)]
    raise Unconvertible(f"`setup` line {line_of(converter.env.module, statement)}: only assignments, `assert`s "
                        "and `if`s on fields are converted in a branch of plain values")


def _value_line(converter: ClassConverter, attribute: str, value: cst.BaseExpression) -> str:
    if attribute in converter.field_names:
        raise Unconvertible(f"`setup` sets `self.{attribute}`, a field of the class")
    code = converter.init_code(value, {})  # before the attribute is known: ``self.x = f(self.x)`` reads a field
    if isinstance(value, (cst.Dict, cst.List, cst.Tuple, cst.Set)) and _computes(value):
        raise Unconvertible(f"`self.{attribute}` is set in `setup` to a container of computed values: an array "
                            "in a plain attribute's container makes NNX's constructor raise (it needs `nnx.data`)")
    converter.setup_values.add(attribute)  # later reads in ``__init__`` read the attribute just set
    return f"self.{attribute} = {code}"


def _computes(node: cst.CSTNode) -> bool:
    return any(isinstance(part, cst.Call) for part in walk(node))


def _local_line(converter: ClassConverter, name: str, value: cst.BaseExpression) -> str:
    if name in converter.aliases:
        raise Unconvertible(f"`{name}` is bound twice in `setup`")
    if name in converter.field_names or name == "rngs":
        raise Unconvertible(f"`setup` binds `{name}`, which would rebind the NNX constructor's parameter `{name}`")
    return f"{name} = {converter.init_code(value, {})}"
