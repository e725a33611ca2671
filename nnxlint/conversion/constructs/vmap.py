"""``nn.vmap`` and ``nn.jit`` of a class of the file.

An ensemble, ``n`` copies each with its own parameters (Linen names it
``VmapHead_0``; its parameters carry a leading axis of size ``n``)::

    y = nn.vmap(Head, variable_axes={'params': 0}, split_rngs={'params': True},
                in_axes=None, out_axes=0, axis_size=3)(16)(x)

is built as the scanned stacks are, ``nnx.vmap`` under ``nnx.split_rngs`` in
``__init__``, and applied by ``nnx.vmap`` over the copies (axis 0) and Linen's
``in_axes`` for the inputs::

    @nnx.split_rngs(splits=3)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def vmap_head_0(rngs: nnx.Rngs):
        return Head(8, 16, rngs=rngs)
    self.vmap_head_0 = vmap_head_0(rngs)
    ...
    y = nnx.vmap(Head.__call__, in_axes=(0, None), out_axes=0)(self.vmap_head_0, x)

One set of parameters mapped over a batch axis (``variable_axes={'params':
None}``, ``split_rngs={'params': False}``) is the plain module, its state
broadcast: ``nnx.vmap(Head.__call__, in_axes=(None, 0), out_axes=0)(self.vmap_head_0, x)``.
``nnxlint.transplant`` loads either as Linen stores it.  ``split_rngs={'dropout':
True}`` in an ensemble gives each copy its own dropout stream (``nnx.split_rngs``
splits every stream): per-copy masks on both sides, not the same masks (Linen
folds its keys in by module path, NNX by a stream counter).

``nn.jit(Block)`` is a compile boundary only (Linen names it ``JitBlock_0``; the
variables are unchanged): the module itself, ``self.jit_block_0(x)``; the NNX
train step is compiled by ``nnx.jit`` as a whole.  No fix (the finding names the
line): options of ``nn.jit`` (``static_argnums``, ``donate_argnums``, ...) or
``nn.vmap`` other than those above, ``variable_axes`` other than the two forms
(a collection the class does not have, such as ``{'param': 0}``, makes Linen's
own ``init`` fail), an ensemble without ``axis_size=``, a shared module that
splits ``dropout`` or maps no input, keyword arguments, a train/eval argument
that ``in_axes`` maps.  A train/eval argument (a Dropout's ``deterministic``) goes,
as for any submodule: ``model.train()`` / ``eval()`` set it.  Shared parameters
without split ``dropout`` draw one mask for the whole mapped axis on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.axis_shapes import batched
from nnxlint.conversion.base import Unconvertible, arg_keyword
from nnxlint.conversion.constructs.scan_stack import build_stack, dict_entries, omitted_parameters
from nnxlint.conversion.shapes import Several, int_literal, is_open

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter

_VMAP_OPTIONS = ("variable_axes", "split_rngs", "in_axes", "out_axes", "axis_size")
_ENSEMBLE_COLLECTIONS = ("params", "batch_stats")
_ENSEMBLE_STREAMS = ("params", "dropout")


@dataclass(frozen=True)
class Vmap:
    block: str  # the user class mapped
    copies: cst.BaseExpression | None  # ``axis_size``: the ensemble's size; None: one shared module
    in_axes: cst.BaseExpression | None  # Linen's, None: its default 0
    out_axes: cst.BaseExpression | None


@dataclass(frozen=True)
class Jit:
    block: str  # the user class compiled


def is_vmap(converter: ClassConverter, node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and converter.env.linen_member(node.func) in ("vmap", "jit")


def read_vmap(converter: ClassConverter, node: cst.Call) -> Vmap | Jit:
    """What ``nn.vmap(...)`` / ``nn.jit(...)`` wraps, or Unconvertible."""
    transform = converter.env.linen_member(node.func)
    positional = [arg.value for arg in node.args if arg.keyword is None]
    options = {arg_keyword(arg): arg.value for arg in node.args if arg.keyword is not None}
    allowed = _VMAP_OPTIONS if transform == "vmap" else ()
    unknown = sorted(set(options) - set(allowed))
    if len(positional) != 1 or unknown or any(arg.star for arg in node.args):
        raise Unconvertible(f"`nn.{transform}` with {', '.join(f'`{name}=`' for name in unknown) or 'these arguments'}"
                            " is not converted")
    target = positional[0]
    layer = converter.layer(target) if isinstance(target, cst.Name) else None
    if layer is None or layer.user_class is None:
        raise Unconvertible(f"`nn.{transform}` of something other than a Linen class of this file")
    if transform == "jit":
        return Jit(layer.user_class)
    variable_axes, split_rngs = dict_entries(options.get("variable_axes")), dict_entries(options.get("split_rngs"))
    if "split_rngs" in options and split_rngs is None:
        raise Unconvertible("`nn.vmap` whose `split_rngs` is not a literal dict")
    out_axes = options.get("out_axes")
    if out_axes is not None and not all(int_literal(axis) is not None for axis in (
            [element.value for element in out_axes.elements] if isinstance(out_axes, cst.Tuple) else [out_axes])):
        raise Unconvertible("`nn.vmap` with `out_axes` other than ints")
    if variable_axes is None or "params" not in variable_axes:
        raise Unconvertible("`nn.vmap` whose `variable_axes` does not map `params` (a collection the class "
                            "does not have makes Linen's init fail)")
    copies = None
    if _all_equal(variable_axes, "0") and set(variable_axes) <= set(_ENSEMBLE_COLLECTIONS):
        if split_rngs is None or "params" not in split_rngs or set(split_rngs) - set(_ENSEMBLE_STREAMS) \
                or not _all_equal(split_rngs, "True"):
            raise Unconvertible("`nn.vmap` ensemble whose `split_rngs` is not {'params': True} (and 'dropout': True)")
        if "axis_size" not in options:
            raise Unconvertible("`nn.vmap` ensemble without `axis_size=`: NNX builds the copies before any input")
        copies = options["axis_size"]
    elif set(variable_axes) == {"params"} and _all_equal(variable_axes, "None"):
        if split_rngs not in (None, {}) and not (set(split_rngs) == {"params"} and _all_equal(split_rngs, "False")):
            raise Unconvertible("`nn.vmap` of shared parameters whose `split_rngs` is not {'params': False}")
    else:
        raise Unconvertible("`nn.vmap` whose `variable_axes` is neither {'params': 0} (an ensemble) "
                            "nor {'params': None} (shared parameters)")
    return Vmap(layer.user_class, copies, options.get("in_axes"), out_axes)


def _all_equal(entries: dict[str, cst.BaseExpression], code: str) -> bool:
    return all(_literal(value) == code for value in entries.values())


def _literal(node: cst.BaseExpression) -> str | None:
    """``0`` / ``None`` / ``True`` / ``False`` as written; None for anything else."""
    if isinstance(node, cst.Name) and node.value in ("None", "True", "False"):
        return node.value
    return str(int_literal(node)) if int_literal(node) is not None else None


def _axes(node: cst.BaseExpression | None, count: int, name: str) -> list[str]:
    """Linen's ``in_axes`` / ``out_axes`` (an int, None, or a tuple of them) as one axis per value."""
    if node is None:
        return ["0"] * count
    if isinstance(node, cst.Tuple):
        axes = [_literal(element.value) for element in node.elements]
        if len(axes) != count:
            raise Unconvertible(f"`nn.vmap`'s `{name}` do not match the values mapped")
    else:
        axes = [_literal(node)] * count
    if any(axis is None or axis in ("True", "False") for axis in axes):
        raise Unconvertible(f"`nn.vmap` with `{name}` other than ints and None")
    return axes  # type: ignore[return-value]


def _inside(shape, axis: str):
    """An input's shape inside the mapped call: without its mapped axis."""
    if axis == "None":
        return shape
    if not isinstance(shape, tuple) or is_open(shape) or int(axis) >= len(shape) or int(axis) < 0:
        return None
    return shape[:int(axis)] + shape[int(axis) + 1:]


def vmap_call(rewriter: CallRewriter, lifted: Vmap | Jit, construction: cst.Call, call: cst.Call,
              updated: cst.Call) -> cst.BaseExpression:
    """``nn.vmap(Head, ...)(...)(x)`` -> ``nnx.vmap(Head.__call__, ...)(self.vmap_head_0, x)``;
    ``nn.jit(Block)(...)(x)`` -> ``self.jit_block_0(x)``."""
    converter, nnx = rewriter.converter, rewriter.converter.env.nnx
    transform = "jit" if isinstance(lifted, Jit) else "vmap"
    if rewriter.depth:
        raise Unconvertible(f"an `nn.{transform}` module called inside a loop or branch is not converted")
    if any(arg.keyword is not None or arg.star for arg in call.args):
        raise Unconvertible(f"an `nn.{transform}` module called with keyword or starred arguments is not converted")
    attribute = converter.module_name(construction, f"{transform.capitalize()}{lifted.block}")
    slot = converter._add_slot(attribute, construction)
    shapes = [rewriter.shape_of(arg.value) for arg in call.args]
    if isinstance(lifted, Jit):
        code, output, mode = converter._child_init(slot, lifted.block, shapes, rewriter.shapes, "jit")
        slot.init_code = f"self.{attribute} = {code}"
        rewriter.call_shapes[id(call)] = output
        if mode is not None:  # ``model.train()`` / ``eval()`` set it
            updated = rewriter._child_call_args(mode, call, updated)
        return updated.with_changes(func=cst.parse_expression(f"self.{attribute}"))
    in_axes = _axes(lifted.in_axes, len(call.args), "in_axes")
    if lifted.copies is None and all(axis == "None" for axis in in_axes):
        raise Unconvertible("an `nn.vmap` of shared parameters that maps no input is not converted")
    inputs = [_inside(shape, axis) for shape, axis in zip(shapes, in_axes)]
    code, output, mode = converter._child_init(slot, lifted.block, inputs, rewriter.shapes, "vmap")
    if mode is not None:  # ``model.train()`` / ``eval()`` set it; Linen maps a flag only with ``in_axes`` None
        if mode.index >= len(in_axes) or in_axes[mode.index] != "None":
            raise Unconvertible("an `nn.vmap` module whose train/eval argument is mapped (its `in_axes` is not None)")
        updated = rewriter._child_call_args(mode, call, updated)
        del in_axes[mode.index]
    in_axes += ["None"] * omitted_parameters(converter, lifted.block, len(in_axes) + (mode is not None), "vmap")
    if lifted.copies is None:
        slot.init_code = f"self.{attribute} = {code}"
    else:
        slot.init_code = build_stack(converter, attribute, code, lifted.copies, rewriter)
    out_axes = "0" if lifted.out_axes is None else converter.env.code(lifted.out_axes)
    rewriter.call_shapes[id(call)] = _mapped_output(output) if out_axes == "0" else None
    module_axis = "None" if lifted.copies is None else "0"
    function = cst.parse_expression(f"{nnx}.vmap({lifted.block}.__call__, in_axes=({', '.join([module_axis, *in_axes])}"
                                    f"{',' if not in_axes else ''}), out_axes={out_axes})")
    return updated.with_changes(func=function,
                                args=[cst.Arg(cst.parse_expression(f"self.{attribute}")), *updated.args])


def _mapped_output(output):
    if isinstance(output, Several):
        return Several(tuple(batched(part) for part in output.parts))
    return batched(output)
