"""A module rematerialised by ``nn.remat`` / ``nn.checkpoint``::

    x = nn.remat(Block)(16)(x)          # or: RematBlock = nn.remat(Block); RematBlock(16)(x)

Linen names it ``CheckpointBlock_0``; NNX builds the block as that attribute
and applies its ``__call__`` under ``nnx.remat``, which recomputes its
activations in the backward pass as Linen's does::

    self.checkpoint_block_0 = Block(d, 16, rngs=rngs)
    ...
    x = nnx.remat(Block.__call__)(self.checkpoint_block_0, x)

Converted for a class of the file, without ``nn.remat`` options
(``static_argnums``, ``policy``, ``prevent_cse``, ...), called with positional
arguments, without a train/eval argument.  (``nn.remat`` inside ``nn.scan`` is
part of the scanned stack: ``scan_stack.py``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Unconvertible

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter

REMAT = ("remat", "checkpoint")


@dataclass(frozen=True)
class Remat:
    block: str  # the user class rematerialised


def is_remat(converter: ClassConverter, node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and converter.env.linen_member(node.func) in REMAT


def read_remat(converter: ClassConverter, node: cst.Call) -> Remat:
    """The class a ``nn.remat(Block)`` wraps, or Unconvertible."""
    if len(node.args) != 1 or node.args[0].keyword is not None or node.args[0].star:
        raise Unconvertible("`nn.remat` with options (`static_argnums`, `policy`, ...) is not converted")
    target = node.args[0].value
    layer = converter.layer(target) if isinstance(target, cst.Name) else None
    if layer is None or layer.user_class is None:
        raise Unconvertible("`nn.remat` of something other than a Linen class of this file")
    return Remat(layer.user_class)


def remat_call(rewriter: CallRewriter, remat: Remat, construction: cst.Call, call: cst.Call,
               updated: cst.Call) -> cst.BaseExpression:
    """``nn.remat(Block)(...)(x)`` -> ``nnx.remat(Block.__call__)(self.checkpoint_block_0, x)``."""
    converter = rewriter.converter
    if rewriter.depth:
        raise Unconvertible("an `nn.remat` module called inside a loop or branch is not converted")
    if any(arg.keyword is not None or arg.star for arg in call.args):
        raise Unconvertible("an `nn.remat` module called with keyword or starred arguments is not converted")
    attribute = converter.module_name(construction, f"Checkpoint{remat.block}")
    slot = converter._add_slot(attribute, construction)
    inputs = [rewriter.shape_of(arg.value) for arg in call.args]
    code, output, mode = converter._child_init(slot, remat.block, inputs, rewriter.shapes, "remat")
    if mode is not None:
        raise Unconvertible("an `nn.remat` module with a train/eval argument is not converted")
    slot.init_code = f"self.{attribute} = {code}"
    rewriter.call_shapes[id(call)] = output
    function = cst.parse_expression(f"{converter.env.nnx}.remat({remat.block}.__call__)")
    return updated.with_changes(func=function,
                                args=[cst.Arg(cst.parse_expression(f"self.{attribute}")), *updated.args])
