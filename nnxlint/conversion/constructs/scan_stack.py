"""A layer stack scanned by ``nn.scan`` (optionally over ``nn.remat`` / ``nn.checkpoint``)::

    Blocks = nn.scan(nn.remat(Block), variable_axes={'params': 0},
                     split_rngs={'params': True}, length=self.depth)
    x, _ = Blocks(self.width)(x, None)

Linen creates one ``Block`` whose parameters carry a leading layer axis, named
``ScanCheckpointBlock_0`` (``Scan`` + ``Checkpoint`` for remat + the class).
NNX builds the stack as Flax's scan-over-layers guide does: ``nnx.vmap`` under
``nnx.split_rngs`` in ``__init__``, ``nnx.scan`` (of ``nnx.remat``) where it is
called, over the block's own ``__call__``, which keeps Linen's
``(carry, xs) -> (carry, ys)`` signature::

    @nnx.split_rngs(splits=depth)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def scan_checkpoint_block_0(rngs: nnx.Rngs):
        return Block(width, width, rngs=rngs)
    self.scan_checkpoint_block_0 = scan_checkpoint_block_0(rngs)
    ...
    x, _ = nnx.scan(nnx.remat(Block.__call__), in_axes=(0, nnx.Carry, 0),
                    out_axes=(nnx.Carry, 0))(self.scan_checkpoint_block_0, x, None)

``nnxlint.transplant`` loads the stacked Linen parameters as they are.  The scan
is written inline (``nn.scan(...)(...)(x, ...)``) or through a name bound once
(``Blocks = nn.scan(...)``, a statement the conversion removes).  Converted:
a user class, ``variable_axes`` mapping ``params`` / ``batch_stats`` to 0,
``split_rngs`` splitting ``params`` (and ``dropout``), ``length=``, ``in_axes``
of ints and ``nn.broadcast``, ``out_axes=0``; anything else (``metadata_params``,
``unroll``, ``reverse``, a train/eval argument) gets no fix.  The carry keeps its
shape through the stack (``jax.lax.scan`` requires it): the conversion follows it so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Unconvertible, arg_keyword, method_of
from nnxlint.conversion.shapes import Several, int_literal, string_literal

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter

_REMAT = ("remat", "checkpoint")
_STACKED_COLLECTIONS = ("params", "batch_stats")
_SPLIT_STREAMS = ("params", "dropout")
_SCAN_OPTIONS = ("variable_axes", "split_rngs", "length", "in_axes", "out_axes")


@dataclass(frozen=True)
class Scan:
    block: str  # the user class scanned
    remat: bool
    length: cst.BaseExpression
    in_axes: tuple[str, ...] | None  # NNX axes of the scanned inputs after the carry; None: 0 for each


def is_scan(converter: ClassConverter, node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and converter.env.linen_member(node.func) == "scan"


def read_scan(converter: ClassConverter, node: cst.Call) -> Scan:
    """What ``nn.scan(...)`` scans, or Unconvertible."""
    env = converter.env
    positional = [arg.value for arg in node.args if arg.keyword is None]
    options = {arg_keyword(arg): arg.value for arg in node.args if arg.keyword is not None}
    unknown = sorted(set(options) - set(_SCAN_OPTIONS))
    if len(positional) != 1 or unknown or any(arg.star for arg in node.args):
        raise Unconvertible(f"`nn.scan` with {', '.join(f'`{name}=`' for name in unknown) or 'these arguments'} "
                            "is not converted")
    target, remat = positional[0], False
    if isinstance(target, cst.Call) and env.linen_member(target.func) in _REMAT:
        if len(target.args) != 1 or target.args[0].keyword is not None:
            raise Unconvertible("`nn.remat` with options (`static_argnums`, `policy`, ...) is not converted")
        target, remat = target.args[0].value, True
    layer = converter.layer(target) if isinstance(target, cst.Name) else None
    if layer is None or layer.user_class is None:
        raise Unconvertible("`nn.scan` of something other than a Linen class of this file")
    if not _maps_to_zero(options.get("variable_axes"), _STACKED_COLLECTIONS, "params"):
        raise Unconvertible("`nn.scan` whose `variable_axes` is not {'params': 0} (and 'batch_stats': 0)")
    if not _maps_to_true(options.get("split_rngs"), _SPLIT_STREAMS):
        raise Unconvertible("`nn.scan` whose `split_rngs` is not {'params': True} (and 'dropout': True)")
    if "length" not in options:
        raise Unconvertible("`nn.scan` without `length=`: the NNX stack is built before any input is seen")
    if "out_axes" in options and int_literal(options["out_axes"]) != 0:
        raise Unconvertible("`nn.scan` with `out_axes` other than 0")
    return Scan(layer.user_class, remat, options["length"], _in_axes(converter, options.get("in_axes")))


def _maps_to_zero(node, allowed: tuple[str, ...], required: str) -> bool:
    entries = dict_entries(node)
    return entries is not None and required in entries and set(entries) <= set(allowed) \
        and all(int_literal(value) == 0 for value in entries.values())


def _maps_to_true(node, allowed: tuple[str, ...]) -> bool:
    entries = dict_entries(node)
    return entries is not None and "params" in entries and set(entries) <= set(allowed) \
        and all(isinstance(value, cst.Name) and value.value == "True" for value in entries.values())


def dict_entries(node) -> dict[str, cst.BaseExpression] | None:
    if not isinstance(node, cst.Dict):
        return None
    entries = {}
    for element in node.elements:
        key = string_literal(element.key) if isinstance(element, cst.DictElement) else None
        if key is None:
            return None
        entries[key] = element.value
    return entries


def _in_axes(converter: ClassConverter, node) -> tuple[str, ...] | None:
    if node is None:
        return None
    elements = [element.value for element in node.elements] if isinstance(node, cst.Tuple) else [node]
    axes = []
    for element in elements:
        if converter.env.linen_member(element) == "broadcast":
            axes.append("None")
        elif int_literal(element) is not None:
            axes.append(str(int_literal(element)))
        else:
            raise Unconvertible("`nn.scan` with `in_axes` other than ints and `nn.broadcast`")
    return tuple(axes)


def scanned_call(rewriter: CallRewriter, scan: Scan, construction: cst.Call, call: cst.Call,
                 updated: cst.Call) -> cst.BaseExpression:
    """``Blocks(...)(carry, *xs)`` -> ``nnx.scan(...)(self.<stack>, carry, *xs)``; ``__init__`` builds the stack."""
    converter, nnx = rewriter.converter, rewriter.converter.env.nnx
    if rewriter.depth:
        raise Unconvertible("an `nn.scan` stack called inside a loop or branch is not converted")
    if any(arg.keyword is not None or arg.star for arg in call.args) or not call.args:
        raise Unconvertible("an `nn.scan` stack called with keyword or starred arguments is not converted")
    xs_count = len(call.args) - 1
    in_axes = scan.in_axes if scan.in_axes is not None else ("0",) * xs_count
    if len(in_axes) != xs_count:
        raise Unconvertible("`nn.scan`'s `in_axes` do not match the scanned inputs")
    attribute = converter.module_name(construction, f"Scan{'Checkpoint' if scan.remat else ''}{scan.block}")
    slot = converter._add_slot(attribute, construction)
    carry = rewriter.shape_of(call.args[0].value)
    inputs = [carry] + [rewriter.shape_of(arg.value) if axis == "None" else None
                        for arg, axis in zip(call.args[1:], in_axes)]
    code, _, mode = converter._child_init(slot, scan.block, inputs, rewriter.shapes, "scan")
    if mode is not None:
        raise Unconvertible("a scanned block with a train/eval argument is not converted")
    slot.init_code = build_stack(converter, attribute, code, scan.length, rewriter)
    rewriter.call_shapes[id(call)] = Several((carry, None))  # a scan's carry keeps its shape (jax.lax.scan)
    function = f"{scan.block}.__call__"
    if scan.remat:
        function = f"{nnx}.remat({function})"
    in_axes += ("None",) * omitted_parameters(converter, scan.block, len(call.args), "scan")
    axes = ", ".join(("0", f"{nnx}.Carry") + in_axes)
    scanned = cst.parse_expression(f"{nnx}.scan({function}, in_axes=({axes}), out_axes=({nnx}.Carry, 0))")
    stack = cst.Arg(cst.parse_expression(f"self.{attribute}"))
    return updated.with_changes(func=scanned, args=[stack, *updated.args])


def omitted_parameters(converter: ClassConverter, block: str, passed: int, transform: str) -> int:
    """How many defaulted parameters of ``block.__call__`` the call leaves out: ``nnx.scan``
    and ``nnx.vmap`` pass their defaults positionally (``resolve_kwargs``), so each needs an
    axis (None: broadcast)."""
    call = method_of(converter.env.class_node(block), "__call__")
    if call is None or call.params.star_arg is not cst.MaybeSentinel.DEFAULT or call.params.kwonly_params \
            or call.params.star_kwarg is not None:
        raise Unconvertible(f"an `nn.{transform}` of `{block}`, whose `__call__` takes other than positional "
                            "parameters")
    return max(len(call.params.params) - 1 - passed, 0)


def build_stack(converter: ClassConverter, attribute: str, block: str, length: cst.BaseExpression,
                 rewriter: CallRewriter) -> str:
    """``__init__``'s lines for the stack (one entry of its body: physical lines, each indented by the caller)."""
    nnx = converter.env.nnx
    converter.uses_rngs = True
    return "\n".join([f"@{nnx}.split_rngs(splits={converter.init_code(length, rewriter.shapes)})",
                      f"@{nnx}.vmap(in_axes=(0,), out_axes=0)",
                      f"def {attribute}(rngs: {nnx}.Rngs):",
                      f"{converter.env.module.default_indent}return {block}",
                      f"self.{attribute} = {attribute}(rngs)"])
