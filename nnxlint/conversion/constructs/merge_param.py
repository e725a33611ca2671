"""``deterministic = nn.merge_param('deterministic', self.deterministic, deterministic)``.

Linen's ``merge_param`` takes a flag given either at construction (a field) or
at call time (an argument) and raises when both or neither are given.  NNX
layers merge the same way themselves: ``nnx.Dropout.__call__(x, deterministic=...)``
falls back on the layer's own ``self.deterministic`` attribute, the one that
``model.train()`` / ``model.eval()`` set.  The converted module does likewise:
the field is kept as an attribute, the call argument stays, and the statement
becomes ``deterministic = self.deterministic if deterministic is None else
deterministic``, which gives Linen's value wherever Linen does not raise.  The
merged name stays a value of the call: layers and submodules get it as it is
written (``self.dropout(x, deterministic=deterministic)``), so no train/eval
switch is derived from it (``ClassConverter.merged_flags``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Unconvertible, self_attribute
from nnxlint.conversion.shapes import string_literal

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter

MERGE_PARAM = frozenset({"flax.linen.merge_param", "flax.linen.module.merge_param"})


def is_merge_param(converter: ClassConverter, node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and converter.env.resolve(node.func) in MERGE_PARAM


def bind_merged_flag(rewriter: CallRewriter, node: cst.Assign) -> None:
    """``name = nn.merge_param(...)``: ``name`` is a flag passed on as it is."""
    if not is_merge_param(rewriter.converter, node.value):
        return
    target = node.targets[0].target if len(node.targets) == 1 else None
    if not isinstance(target, cst.Name):
        raise Unconvertible("`nn.merge_param` assigned to something other than one name")
    rewriter.converter.merged_flags.add(target.value)
    rewriter.merged_calls.add(id(node.value))


def merged_value(rewriter: CallRewriter, call: cst.Call) -> cst.BaseExpression:
    """The NNX expression for ``nn.merge_param('name', self.field, argument)``."""
    converter = rewriter.converter
    if id(call) not in rewriter.merged_calls:
        raise Unconvertible("`nn.merge_param` inside an expression: assign it to a name first")
    args = call.args
    if len(args) != 3 or any(arg.keyword is not None or arg.star for arg in args):
        raise Unconvertible("`nn.merge_param` with other than three positional arguments")
    name, field, argument = (arg.value for arg in args)
    attribute = self_attribute(field)
    if string_literal(name) is None or attribute is None or attribute not in converter.field_names:
        raise Unconvertible("`nn.merge_param` of other than a literal name and a field (`self.x`)")
    if not isinstance(argument, cst.Name):
        raise Unconvertible("`nn.merge_param` of a call-time value other than a name")
    return cst.parse_expression(f"self.{attribute} if {argument.value} is None else {argument.value}")
