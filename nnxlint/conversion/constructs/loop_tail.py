"""One more module of a stacked class, created after the loop that stacks it::

    for width in self.widths[:-1]:
        x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.widths[-1])(x)

Linen numbers the loop's modules ``Dense_0`` .. ``Dense_{n-1}`` and the one after
it ``Dense_{n}``: the next number of the same counter.  NNX appends that module to
the loop's ``nnx.List`` in ``__init__``, after the loop that fills it, and calls
the list's last element::

    self.denses = nnx.List([nnx.Linear(x_features, width, rngs=rngs) for width in widths[:-1]])
    self.denses.append(nnx.Linear(in_features, widths[-1], rngs=rngs))
    ...
    return self.denses[-1](x)

so ``nnxlint.transplant`` loads ``Dense_{n}`` into ``denses/{n}``, whatever ``n``
is at run time.  Converted only for one such module per list, created at the top
level of the method (not in a branch or another loop) without ``name=``; a
second one would need its index counted from the end and is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Slot, Unconvertible, arg_keyword
from nnxlint.conversion.naming import nnx_list_name

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter


def tail_call(rewriter: CallRewriter, construction: cst.Call, original: cst.Call,
              updated: cst.Call) -> cst.BaseExpression:
    """``Dense(...)(x)`` after the loop stacking ``Dense`` -> ``self.denses[-1](x)``;
    the list's ``__init__`` code gets the element appended."""
    converter = rewriter.converter
    layer = converter.layer(construction.func)
    assert layer is not None
    type_name = (layer.mapping.linen if layer.mapping else layer.user_class or "").rpartition(".")[2]
    attribute = nnx_list_name(type_name)
    stacked = converter.slots.get(attribute)
    refusal = _refusal(rewriter, construction, attribute, stacked)
    if refusal is not None:
        raise Unconvertible(f"`{type_name}(...)(...)`, a module of a class a loop stacks, created again {refusal}: "
                            "Linen's numbering would not match the list's")
    assert stacked is not None and stacked.init_code is not None
    element = Slot(attribute, construction)
    call = rewriter._call_slot(element, original, updated)
    code = element.init_code.partition(" = ")[2]  # type: ignore[union-attr]
    stacked.init_code += f"\nself.{attribute}.append({code})"
    rewriter.stack_tails.add(attribute)
    return call.with_changes(func=cst.parse_expression(f"self.{attribute}[-1]"))


def _refusal(rewriter: CallRewriter, construction: cst.Call, attribute: str, stacked: Slot | None) -> str | None:
    """Why the module cannot be the list's last element, or None."""
    if rewriter.depth or rewriter.loops:
        return "inside a branch or a loop"
    if any(arg_keyword(arg) == "name" for arg in construction.args):
        return "with `name=`"
    if stacked is None or stacked.init_code is None or len(rewriter.converter.layer(construction.func).choices) > 1:
        return "where the list it would join is not one the conversion built"
    if attribute in rewriter.stack_tails:
        return "a second time after its loop"
    return None
