"""The shapes of arrays inside a Linen ``__call__``: what a name, a call of a
layer or function, or arithmetic gives.  A mixin of ``CallRewriter``."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.conversion.base import arg_keyword, is_false
from nnxlint.conversion.linen_map import ELEMENTWISE_FUNCTIONS, POOLING_FUNCTIONS
from nnxlint.conversion.shapes import Shape, flatten, is_open, int_literal, int_tuple, string_literal, window_output

_ELEMENTWISE_OPERATORS = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.Power)


class ShapeFollowing:
    """Shapes of expressions, given ``self.shapes`` (names) and ``self.call_shapes`` (calls)."""

    shapes: dict[str, Shape]
    call_shapes: dict[int, Shape]
    converter: "ClassConverter"  # noqa: F821

    def shape_of(self, node: cst.BaseExpression) -> Shape:
        if isinstance(node, cst.Name):
            return self.shapes.get(node.value)
        if isinstance(node, cst.Call):
            return self.call_shapes.get(id(node))
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, _ELEMENTWISE_OPERATORS):
            left, right = self.shape_of(node.left), self.shape_of(node.right)
            if left is not None and right is not None and left != right:
                return None  # broadcasting two arrays: not followed
            return left or right  # an array with a scalar keeps its shape
        return None

    def _function_shape(self, call: cst.Call) -> Shape:
        converter = self.converter
        func = call.func
        args = [arg for arg in call.args if arg.keyword is None]
        keywords = {arg_keyword(arg): arg.value for arg in call.args if arg.keyword is not None}
        qualified = converter.env.resolve(func) or ""
        short = qualified.rpartition(".")[2]
        if qualified.startswith(("flax.linen.", "jax.nn.", "jax.numpy.")) and short in ELEMENTWISE_FUNCTIONS \
                and args:
            return self.shape_of(args[0].value)
        if qualified.startswith("flax.linen.") and short in POOLING_FUNCTIONS and args:
            return self._pool_shape(args, keywords)
        if isinstance(func, cst.Attribute) and func.attr.value == "reshape":
            return self._reshape_shape(func.value, call)
        if qualified in ("jax.numpy.mean", "jax.numpy.sum", "jax.numpy.max") and args:
            return self._reduce_shape(self.shape_of(args[0].value), keywords.get("axis"), keywords.get("keepdims"))
        if isinstance(func, cst.Attribute) and func.attr.value in ("mean", "sum", "max") and not args:
            return self._reduce_shape(self.shape_of(func.value), keywords.get("axis"), keywords.get("keepdims"))
        return None

    def _pool_shape(self, args, keywords) -> Shape:
        shape = self.shape_of(args[0].value)
        given = dict(zip(("inputs", "window_shape", "strides", "padding"), (a.value for a in args)))
        given.update(keywords)
        if not shape or "window_shape" not in given:
            return None
        rank = len(shape) - 2
        window = int_tuple(given["window_shape"], rank)
        strides = int_tuple(given.get("strides"), rank) if "strides" in given else (1,) * rank
        padding = string_literal(given.get("padding", cst.SimpleString("'VALID'")))
        if window is None or strides is None or padding is None:
            return (shape[0],) + (None,) * rank + (shape[-1],)
        return ((shape[0],) + tuple(window_output(size, w, s, padding)
                                    for size, w, s in zip(shape[1:-1], window, strides)) + (shape[-1],))

    def _reshape_shape(self, array: cst.BaseExpression, call: cst.Call) -> Shape:
        shape = self.shape_of(array)
        args = [arg.value for arg in call.args]
        if len(args) == 1 and isinstance(args[0], (cst.Tuple, cst.List)):
            args = [element.value for element in args[0].elements]
        if len(args) == 2 and int_literal(args[1]) == -1 and self._is_batch(args[0], array):
            return flatten(shape)
        return None

    @staticmethod
    def _is_batch(node: cst.BaseExpression, array: cst.BaseExpression) -> bool:
        """``x.shape[0]`` of the reshaped array itself."""
        return (isinstance(node, cst.Subscript) and isinstance(node.value, cst.Attribute)
                and node.value.attr.value == "shape" and isinstance(array, cst.Name)
                and isinstance(node.value.value, cst.Name) and node.value.value.value == array.value
                and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index)
                and int_literal(node.slice[0].slice.value) == 0)

    @staticmethod
    def _reduce_shape(shape: Shape, axis: Optional[cst.BaseExpression],
                      keepdims: Optional[cst.BaseExpression]) -> Shape:
        if not shape or is_open(shape) or axis is None or not (keepdims is None or is_false(keepdims)):
            return None
        axes = int_tuple(axis, 1) if int_literal(axis) is not None else int_tuple(axis, 0)
        if axes is None:
            return None
        dropped = {a % len(shape) for a in axes}
        return tuple(size for index, size in enumerate(shape) if index not in dropped)

