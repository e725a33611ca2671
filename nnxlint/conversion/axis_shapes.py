"""Shapes through the axis-moving operations of real models: ``x.squeeze(axis)`` /
``jnp.squeeze``, ``jnp.expand_dims``, the matrix product ``a @ b`` (attention
pooling: ``jnp.expand_dims(weights, 1) @ values`` then ``.squeeze(1)``), and a file
function under a plain ``@jax.vmap`` (its body sees one example: the mapped leading
axis goes in, and comes back in front of what it returns).  Rules of
``call_shapes.ShapeFollowing``.

A known shape gets numpy's result.  An open shape (``(..., F)``: a class converted on
its own, rank unknown) keeps its last axis where the operation touches a leading one,
and its leading axes become ``SOME_AXES`` (no longer the input's, so no parent gives
them its input's rank).  A negative axis before the last surely is a leading one; a
non-negative one is taken to be (a batch or time axis: models write ``x.squeeze(1)``),
and ``b`` in ``a @ b`` is taken to have two axes or more.  Where that is not so, the
size given to the next layer differs from its real input's and NNX raises a shape
error at the first call (the transplant refuses the Linen kernel too); where it is
so, the layer computes what Linen's does.  Nothing is computed differently either way.
"""

from __future__ import annotations

from typing import Optional, Sequence

import libcst as cst

from nnxlint.conversion.shapes import SOME_AXES, Axis, Shape, Size, int_literal, is_open


def axis_call_shape(following, func: cst.BaseExpression, qualified: str, args: Sequence[cst.Arg],
                    keywords: dict) -> tuple[bool, Shape]:
    """(whether ``func(...)`` is one of these operations, its shape)."""
    values = [arg.value for arg in args]
    if qualified in ("jax.numpy.squeeze", "jax.numpy.expand_dims"):
        given = values[1] if len(values) > 1 else keywords.get("axis")
        shape = following.shape_of(values[0]) if values else None
        return True, (squeeze if qualified.endswith("squeeze") else expand_dims)(shape, given)
    if isinstance(func, cst.Attribute) and func.attr.value == "squeeze" and not qualified.startswith("jax."):
        given = values[0] if values else keywords.get("axis")
        return True, squeeze(following.shape_of(func.value), given) if len(values) <= 1 else None
    return False, None


def _axis(node: Optional[cst.BaseExpression]) -> Optional[int]:
    return int_literal(node) if node is not None else None


def squeeze(shape: Shape, node: Optional[cst.BaseExpression]) -> Shape:
    axis = _axis(node)
    if not shape or axis is None:
        return None
    if is_open(shape):
        return (SOME_AXES, shape[-1]) if len(shape) == 2 and axis != -1 else None
    if not -len(shape) <= axis < len(shape):
        return None
    position = axis % len(shape)
    dropped = shape[position]
    if dropped is not None and dropped.value is not None and dropped.value != 1:
        return None  # numpy raises: only an axis of size 1 is squeezed
    return shape[:position] + shape[position + 1:]


def expand_dims(shape: Shape, node: Optional[cst.BaseExpression]) -> Shape:
    axis = _axis(node)
    if not shape or axis is None:
        return None
    if is_open(shape):
        return (SOME_AXES, shape[-1]) if len(shape) == 2 and axis != -1 else None
    rank = len(shape) + 1
    if not -rank <= axis < rank:
        return None
    position = axis % rank
    return shape[:position] + (Size.number(1),) + shape[position:]


def matmul(left: Shape, right: Shape) -> Shape:
    """``a @ b``: the last axis is ``b``'s when ``b`` has two axes or more."""
    if not right or (not is_open(right) and len(right) < 2):
        return None
    if is_open(right) or not left or is_open(left):
        return (SOME_AXES, right[-1]) if right[-1] is not None else None
    if len(left) == 1:
        return right[:-2] + right[-1:]
    lead_left, lead_right = left[:-2], right[:-2]
    width = max(len(lead_left), len(lead_right))
    lead_left = (Size.number(1),) * (width - len(lead_left)) + lead_left
    lead_right = (Size.number(1),) * (width - len(lead_right)) + lead_right
    return tuple(_broadcast(a, b) for a, b in zip(lead_left, lead_right)) + (left[-2], right[-1])


def _broadcast(a: Axis, b: Axis) -> Axis:
    if a == b:
        return a
    if a is not None and a.value == 1:
        return b
    if b is not None and b.value == 1:
        return a
    return None


def vmap_kind(env, function: cst.FunctionDef) -> Optional[bool]:
    """True for a function under ``@jax.vmap`` alone (``in_axes=0``, ``out_axes=0``);
    None for one whose decorators otherwise map it (not followed); False otherwise."""
    decorators = [decorator.decorator for decorator in function.decorators]
    if len(decorators) == 1 and env.resolve(decorators[0]) == "jax.vmap":
        return True
    return None if any("vmap" in env.code(decorator) for decorator in decorators) else False


def per_example(shape: Shape) -> Shape:
    """An argument's shape inside a ``@jax.vmap`` function: without its leading axis."""
    if not isinstance(shape, tuple) or not shape:
        return None
    return shape if is_open(shape) else shape[1:]


def batched(shape: Shape) -> Shape:
    """What a ``@jax.vmap`` function returns: the mapped axis in front."""
    if not isinstance(shape, tuple):
        return None
    return shape if is_open(shape) else (None,) + shape
