"""A module created under ``@nn.compact``, bound to a name, and used later::

    embed = nn.Embed(self.vocab, self.width)
    x = embed(tokens)
    ...
    return embed.attend(x)          # tied output embedding

Linen names the module where it is created (``Embed_0``); NNX builds it as that
attribute in ``__init__`` and every use reads it: ``self.embed_0(tokens)``,
``self.embed_0.attend(x)`` (``nnx.Embed.attend``).  The binding statement goes.
Converted where the name is bound once, outside loops, and used only by calls
of the module or of its methods in ``linen_map.LAYER_METHODS`` (the module's
size comes from its first call, or from its arguments when it reads none from
its input, as ``nn.Embed``).  Bound inside a branch on fields (BiT's head,
``if self.num_classes: head = nn.Dense(...)``, then called on the pooled and
the unpooled features), ``__init__`` builds it under the same test
(``constructs/branch_module.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Unconvertible
from nnxlint.conversion.constructs.branch_module import branch_guard
from nnxlint.conversion.linen_map import LAYER_METHODS

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter


def bind_local_module(rewriter: CallRewriter, node: cst.Assign) -> bool:
    """``embed = nn.Embed(...)``: the module becomes an attribute; True when it was one."""
    converter = rewriter.converter
    value = node.value
    if not isinstance(value, cst.Call) or not converter._compact:
        return False
    layer = converter.layer(value.func)
    if layer is None or layer.mapping is None:
        return False
    target = node.targets[0].target if len(node.targets) == 1 else None
    if not isinstance(target, cst.Name) or converter._assignments.get(target.value) != 1:
        raise Unconvertible(f"an `nn.{layer.mapping.linen}` bound to something other than a name assigned once")
    guard = branch_guard(rewriter, value) if rewriter.depth else None  # refuses a loop or a test of `__call__`
    rewriter.local_modules[target.value] = converter.construct(value, None, guard)
    rewriter.removed_statements.add(id(node))
    return True


def mark_local_module_use(rewriter: CallRewriter, node: cst.Call) -> None:
    """``embed(x)`` / ``embed.attend(x)``: the name is read by the call, which converts it."""
    func = node.func
    name = func.value if isinstance(func, cst.Attribute) else func
    if isinstance(name, cst.Name) and name.value in rewriter.local_modules:
        rewriter.local_module_reads.add(id(name))


def local_module_call(rewriter: CallRewriter, original: cst.Call,
                      updated: cst.Call) -> cst.BaseExpression | None:
    """The NNX call for a use of a bound module; None for any other call."""
    func = original.func
    if isinstance(func, cst.Name) and func.value in rewriter.local_modules:
        return rewriter._call_slot(rewriter.local_modules[func.value], original, updated)
    if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)
            and func.value.value in rewriter.local_modules):
        return None
    converter = rewriter.converter
    slot = rewriter.local_modules[func.value.value]
    mapping = converter.layer(slot.construction.func).mapping  # type: ignore[union-attr]
    if func.attr.value not in LAYER_METHODS.get(mapping.linen, ()):
        raise Unconvertible(f"`{func.value.value}.{func.attr.value}` of an `nn.{mapping.linen}` is not converted")
    if slot.init_code is None:
        if mapping.input_size is not None:
            raise Unconvertible(f"`{func.value.value}.{func.attr.value}` before `{func.value.value}` is called: "
                                "its input size is unknown")
        converter.call_slot(slot, [None], rewriter.shapes)
    return updated.with_changes(func=cst.parse_expression(f"self.{slot.attribute}.{func.attr.value}"))
