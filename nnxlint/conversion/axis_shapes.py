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

import re
from typing import Optional, Sequence

import libcst as cst

from nnxlint.conversion.base import Unconvertible
from nnxlint.conversion.shapes import (
    SOME_AXES, Axis, Shape, Size, fold_integers, int_literal, is_open, product, string_literal, sum_sizes, tidy_code,
)


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
    method = func.attr.value if isinstance(func, cst.Attribute) and not qualified.startswith("jax.") else None
    if qualified == "einops.rearrange" and len(values) == 2 and not keywords:
        return True, rearranged(following, values[0], string_literal(values[1]))
    if qualified == "jax.numpy.tile" and len(values) == 2 and not keywords \
            and isinstance(values[1], (cst.Tuple, cst.List)):
        reps = explicit_shape(following, [element.value for element in values[1].elements])
        return True, tiled(following.shape_of(values[0]), reps)
    if (qualified == "jax.numpy.reshape" and len(values) == 2 or method == "reshape" and values) and not keywords:
        array, written = (values[0], values[1:]) if qualified == "jax.numpy.reshape" else (func.value, values)
        shape = reshaped(following, array, written)  # type: ignore[arg-type]
        if shape is not None:
            return True, shape  # (a ``-1`` is left to the flatten rule of ``call_shapes.py``)
    if qualified in _REORDERING or method in _REORDERING_METHODS:
        array, rest = (values[0], values[1:]) if qualified in _REORDERING else (func.value, values)  # type: ignore
        operation = _REORDERING.get(qualified) or _REORDERING_METHODS[method]  # type: ignore[index]
        return True, None if keywords or (qualified and not values) else operation(following.shape_of(array), rest)
    return False, None


def swapaxes(shape: Shape, given: Sequence[cst.BaseExpression]) -> Shape:
    """``jnp.swapaxes(x, 1, 2)`` (Mixer's token mixing): a known rank only."""
    axes = _positions(shape, given)
    if axes is None or len(axes) != 2:
        return None
    moved = list(shape)  # type: ignore[arg-type]
    moved[axes[0]], moved[axes[1]] = moved[axes[1]], moved[axes[0]]
    return tuple(moved)


def transpose(shape: Shape, given: Sequence[cst.BaseExpression]) -> Shape:
    """``jnp.transpose(x, (0, 2, 1))`` / ``x.transpose(0, 2, 1)``; no order reverses the axes."""
    if len(given) == 1 and isinstance(given[0], (cst.Tuple, cst.List)):
        given = [element.value for element in given[0].elements]
    if not given:
        return tuple(reversed(shape)) if shape and not is_open(shape) else None
    axes = _positions(shape, given)
    if axes is None or sorted(axes) != list(range(len(shape))):  # type: ignore[arg-type]
        return None
    return tuple(shape[axis] for axis in axes)  # type: ignore[index]


def moveaxis(shape: Shape, given: Sequence[cst.BaseExpression]) -> Shape:
    """``jnp.moveaxis(x, 1, -1)``."""
    axes = _positions(shape, given)
    if axes is None or len(axes) != 2:
        return None
    moved = list(shape)  # type: ignore[arg-type]
    moved.insert(axes[1], moved.pop(axes[0]))
    return tuple(moved)


_REORDERING = {"jax.numpy.swapaxes": swapaxes, "jax.numpy.transpose": transpose, "jax.numpy.moveaxis": moveaxis}
_REORDERING_METHODS = {"swapaxes": swapaxes, "transpose": transpose}


def _positions(shape: Shape, given: Sequence[cst.BaseExpression]) -> Optional[list[int]]:
    """Literal axes of a shape of known rank, from the front."""
    if not shape or is_open(shape) or not isinstance(shape, tuple):
        return None
    axes = [int_literal(node) for node in given]
    if any(axis is None or not -len(shape) <= axis < len(shape) for axis in axes):
        return None
    return [axis % len(shape) for axis in axes]  # type: ignore[operator]


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


# -- shapes written out, for inputs of known rank (``constructs/input_axes.py``) ----------------
def explicit_shape(following, elements: Sequence[cst.BaseExpression]) -> Shape:
    """``(n, h * w, c)`` / ``(1, 1, c)``: each axis the size its expression has in
    ``__init__`` terms (``c`` an alias of a known size), None where it reads a value
    of ``__call__`` (``n``, the batch); None for a ``-1`` or a starred element."""
    if getattr(following, "following", False):
        return None  # a followed function's names are not the method's
    converter = following.converter
    sizes: list = []
    for node in elements:
        if int_literal(node) is not None and int_literal(node) < 0:  # type: ignore[operator]
            return None
        try:
            code = converter.init_code(node, following.shapes)
        except Unconvertible:
            sizes.append(None)
            continue
        value = fold_integers(code)
        sizes.append(Size.number(value) if value is not None else Size(tidy_code(code)))
    return tuple(sizes)


def reshaped(following, array: cst.BaseExpression, new_shape: Sequence[cst.BaseExpression]) -> Shape:
    """``jnp.reshape(x, (n, h * w, c))`` / ``x.reshape(n, h * w, c)``: the shape written;
    ``x.reshape(input_shape)`` after ``input_shape = y.shape``: ``y``'s."""
    if len(new_shape) == 1 and isinstance(new_shape[0], cst.Name) \
            and new_shape[0].value in following.converter.shape_aliases:  # ``x.reshape(input_shape)``
        return following.converter.shape_aliases[new_shape[0].value]
    if len(new_shape) == 1 and isinstance(new_shape[0], (cst.Tuple, cst.List)):
        new_shape = [element.value for element in new_shape[0].elements]
    if any(isinstance(node, cst.StarredElement) for node in new_shape) or len(new_shape) < 2:
        return None
    return explicit_shape(following, new_shape)


def tiled(shape: Shape, reps: Shape) -> Shape:
    """``jnp.tile(cls, (n, 1, 1))``: each axis times its repetitions."""
    if not shape or not reps or is_open(shape) or len(shape) != len(reps):
        return None
    return tuple(size if rep is not None and rep.value == 1 else product([size, rep])
                 for size, rep in zip(shape, reps))


def concatenated(shapes: Sequence[Shape], axis: Optional[int]) -> Shape:
    """``jnp.concatenate([cls, x], axis=1)`` (a class token before the patches): the
    sizes on ``axis`` add up, the others agree (a known size where one has it)."""
    if axis is None or not shapes or any(not shape or is_open(shape) or len(shape) != len(shapes[0])
                                         for shape in shapes):
        return None
    rank = len(shapes[0])  # type: ignore[arg-type]
    if not -rank <= axis < rank:
        return None
    axis %= rank
    joined = []
    for position in range(rank):
        sizes = [shape[position] for shape in shapes]  # type: ignore[index]
        if position == axis:
            if any(size is None for size in sizes):
                return None
            joined.append(_readable_sum(sizes))  # type: ignore[arg-type]
            continue
        known = {size for size in sizes if size is not None}
        if len(known) > 1:
            return None
        joined.append(known.pop() if known else None)
    return tuple(joined)


def _readable_sum(sizes: Sequence[Size]) -> Size:
    """``1 + h // 4 * (w // 4)``: a sum without the parentheses its terms do not need."""
    total = sum_sizes(sizes)
    if total.value is not None:
        return total
    return Size(" + ".join(size.code if _binds_tighter_than_sum(size.code) else size.operand() for size in sizes))


def _binds_tighter_than_sum(code: str) -> bool:
    try:
        node = cst.parse_expression(code)
    except cst.ParserSyntaxError:
        return False
    arithmetic = (cst.Add, cst.Subtract, cst.Multiply, cst.FloorDivide, cst.Modulo, cst.Divide, cst.Power)
    return not isinstance(node, (cst.BinaryOperation, cst.UnaryOperation, cst.IfExp, cst.Comparison,
                                 cst.BooleanOperation, cst.Lambda)) \
        or isinstance(node, cst.BinaryOperation) and isinstance(node.operator, arithmetic)


def rearranged(following, array: cst.BaseExpression, pattern: Optional[str]) -> Shape:
    """``einops.rearrange(x, 'n h w c -> n (h w) c')``: names and groups of names only.
    An input of unknown rank whose leading axes are a ``__call__`` argument's has as many
    axes as the pattern names: the class is converted again for that rank."""
    parsed = _einops_pattern(pattern)
    shape = following.shape_of(array)
    if parsed is None or not shape:
        return None
    source, target = parsed
    if is_open(shape):
        from nnxlint.conversion.constructs.input_axes import stated_rank  # (imports this module)
        stated_rank(following, shape, len(source))
        return None
    if len(shape) != len(source):
        return None
    sizes = dict(zip(source, shape))
    return tuple(product([sizes[name] for name in group]) if len(group) > 1 else sizes[group[0]]
                 for group in target)


def _einops_pattern(pattern: Optional[str]) -> Optional[tuple[list[str], list[list[str]]]]:
    if pattern is None or pattern.count("->") != 1:
        return None
    left, right = pattern.split("->")
    source = left.split()
    if not source or not all(name.isidentifier() for name in source) or len(set(source)) != len(source):
        return None
    target: list[list[str]] = []
    for group in re.findall(r"\(([^()]*)\)|(\S+)", right):
        names = group[0].split() if group[1] == "" else [group[1]]
        if not names or any(name not in source for name in names):
            return None
        target.append(names)
    if sorted(name for group in target for name in group) != sorted(source):
        return None
    return source, target

