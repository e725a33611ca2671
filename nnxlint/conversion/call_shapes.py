"""The shapes of arrays inside a Linen ``__call__``: what a name, a call of a
layer or function, or arithmetic gives.  A mixin of ``CallRewriter``."""

from __future__ import annotations

import re
from typing import Optional, Sequence

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.axis_shapes import axis_call_shape, concatenated, batched, matmul, per_example, vmap_kind
from nnxlint.conversion.base import arg_keyword, is_false, self_attribute
from nnxlint.conversion.constructs.dict_entries import entry_shape
from nnxlint.conversion.constructs.jraph_graph import graph_call_shape, graph_feature_shape
from nnxlint.conversion.constructs.input_axes import resized
from nnxlint.conversion.linen_map import ELEMENTWISE_FUNCTIONS, POOLING_FUNCTIONS
from nnxlint.conversion.shapes import SOME_AXES, Several, Shape, broadcast, flatten, is_open, keeps_input_rank, open_shape, sum_sizes, int_literal, int_tuple, string_literal, window_output

_ELEMENTWISE_OPERATORS = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.Power)


_SHAPE_KEEPING_METHODS = frozenset({"astype", "clip"})
_SHAPE_KEEPING_FUNCTIONS = frozenset({f"jax.numpy.{name}" for name in (
    "asarray", "array", "exp", "log", "sqrt", "abs", "square", "tanh", "sin", "cos", "clip", "round", "floor",
    "where", "flip", "roll")}) | {"jax.lax.stop_gradient", "jax.lax.with_sharding_constraint",
                                  "flax.linen.with_logical_constraint"}
_RANDOM_ARRAYS = frozenset({"jax.random.normal", "jax.random.uniform"})


class ShapeFollowing:
    """Shapes of expressions, given ``self.shapes`` (names) and ``self.call_shapes`` (calls)."""

    shapes: dict[str, Shape]
    call_shapes: dict[int, Shape]
    converter: "ClassConverter"  # noqa: F821
    # sums of arrays of different known sizes (broadcasting, not followed): (the sum, its sizes),
    # for the refusal that may follow (``constructs/branch_sizes.py``); shared with followed functions
    unequal_sums: Optional[list] = None
    # plain local dicts whose entries' shapes are followed (``constructs/dict_entries.py``): only in a
    # converted method (``CallRewriter``), none in a followed function of the file
    record_dicts: frozenset = frozenset()

    def shape_of(self, node: cst.BaseExpression, several: bool = False) -> Shape:
        """The shape of ``node``'s array; a ``Several`` for a tuple only when ``several``."""
        shape = self._shape_of(node)
        return None if isinstance(shape, Several) and not several else shape

    def _shape_of(self, node: cst.BaseExpression) -> Shape:
        if isinstance(node, cst.Name):
            return self.shapes.get(node.value)
        if isinstance(node, cst.Call):
            return self.call_shapes.get(id(node))
        if isinstance(node, cst.Tuple):
            return Several(tuple(self.shape_of(element.value) for element in node.elements))  # type: ignore
        if isinstance(node, cst.Subscript):
            return self._slice_shape(node)
        if isinstance(node, cst.Attribute):
            return graph_feature_shape(self, node)  # ``graphs.nodes``
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.MatrixMultiply):
            return matmul(self.shape_of(node.left), self.shape_of(node.right))
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, _ELEMENTWISE_OPERATORS):
            left, right = self.shape_of(node.left), self.shape_of(node.right)
            if left is None or right is None:
                return left or right  # an array with a scalar keeps its shape
            shape = broadcast(left, right)
            if shape is None and self.unequal_sums is not None and left and right and left[-1] != right[-1]:
                self.unequal_sums.append((node, left[-1], right[-1]))
            return shape
        return None

    def _function_shape(self, call: cst.Call) -> Shape:
        converter = self.converter
        func = call.func
        args = [arg for arg in call.args if arg.keyword is None]
        keywords = {arg_keyword(arg): arg.value for arg in call.args if arg.keyword is not None}
        qualified = converter.env.resolve(func) or ""
        short = qualified.rpartition(".")[2]
        graph = graph_call_shape(self, call)  # ``graphs._replace(...)``, ``jraph.segment_sum(...)``
        if graph is not None:
            return graph
        if qualified.startswith(("flax.linen.", "jax.nn.", "jax.numpy.")) and short in ELEMENTWISE_FUNCTIONS \
                and args:
            return self.shape_of(args[0].value)
        if (self._activation_field(func) or isinstance(func, cst.Name) and func.value in converter.elementwise_locals) \
                and len(args) == 1 and not keywords:
            return self.shape_of(args[0].value)
        if qualified.startswith("flax.linen.") and short in POOLING_FUNCTIONS and args:
            return self._pool_shape(args, keywords)
        if isinstance(func, cst.Attribute) and func.attr.value in _SHAPE_KEEPING_METHODS:
            return self.shape_of(func.value)
        if qualified in _SHAPE_KEEPING_FUNCTIONS and args:
            return self.shape_of(args[0].value)
        if qualified in _RANDOM_ARRAYS and len(args) >= 2:
            return self._shape_read(args[1].value)
        if qualified == "jax.random.bernoulli" and (len(args) >= 3 or "shape" in keywords):  # (key, p, shape)
            return self._shape_read(keywords["shape"] if "shape" in keywords else args[2].value)
        if qualified == "jax.numpy.concatenate" and args:
            return self._concatenate_shape(args[0].value, keywords.get("axis", args[1].value if len(args) > 1 else None))
        known, shape = axis_call_shape(self, func, qualified, args, keywords)  # ``squeeze``, ``expand_dims``
        if known:
            return shape
        if isinstance(func, cst.Name) and func.value in self.converter.env.functions:
            return self._follow_function(self.converter.env.functions[func.value], call)
        if qualified == "jax.lax.dot_general" and len(args) == 3 and not keywords:
            return self._dense_contraction_shape(*(arg.value for arg in args))
        if qualified == "jax.numpy.reshape":  # ``jnp.reshape(x, (...))``
            return self._reshape_shape(args[0].value, args[1:]) if len(args) == 2 and not keywords else None
        if isinstance(func, cst.Attribute) and func.attr.value == "reshape":
            return self._reshape_shape(func.value, call.args)
        if qualified in ("jax.numpy.mean", "jax.numpy.sum", "jax.numpy.max") and args:
            return self._reduce_shape(self.shape_of(args[0].value), keywords.get("axis"), keywords.get("keepdims"))
        if isinstance(func, cst.Attribute) and func.attr.value in ("mean", "sum", "max") and not args:
            return self._reduce_shape(self.shape_of(func.value), keywords.get("axis"), keywords.get("keepdims"))
        return None

    def _activation_field(self, func: cst.BaseExpression) -> bool:
        """``self.act(x)`` of a ``Callable`` field without a default or whose default is an
        elementwise function (``activation: Callable = nn.relu``): taken to keep the shape,
        as an activation does (one that does not makes the next NNX layer raise a shape
        error; nothing is computed differently)."""
        attribute = self_attribute(func)
        converter = self.converter
        field = next((f for f in converter.fields if f.name == attribute), None)
        nnx_prefix = f"{converter.env.nnx}."
        return field is not None and "Callable" in (field.annotation or "") and (
            field.default is None or field.default.startswith(nnx_prefix)
            and field.default[len(nnx_prefix):] in ELEMENTWISE_FUNCTIONS)

    def _pool_shape(self, args, keywords) -> Shape:
        shape = self.shape_of(args[0].value)
        given = dict(zip(("inputs", "window_shape", "strides", "padding"), (a.value for a in args)))
        given.update(keywords)
        if not shape or "window_shape" not in given:
            return None
        shape = tuple(resized(axis) for axis in shape)  # (an input's leading axes no more)
        rank = len(shape) - 2
        window = int_tuple(given["window_shape"], rank)
        strides = int_tuple(given.get("strides"), rank) if "strides" in given else (1,) * rank
        padding = string_literal(given.get("padding", cst.SimpleString("'VALID'")))
        if window is None or strides is None or padding is None:
            return (shape[0],) + (None,) * rank + (shape[-1],)
        return ((shape[0],) + tuple(window_output(size, w, s, padding)
                                    for size, w, s in zip(shape[1:-1], window, strides)) + (shape[-1],))

    def _reshape_shape(self, array: cst.BaseExpression, new_shape: Sequence[cst.Arg]) -> Shape:
        shape = self.shape_of(array)
        args = [arg.value for arg in new_shape]
        if len(args) == 1 and isinstance(args[0], (cst.Tuple, cst.List)):
            args = [element.value for element in args[0].elements]
        if len(args) == 2 and int_literal(args[1]) == -1 and self._is_batch(args[0], array):
            return flatten(shape)
        return None

    def _dense_contraction_shape(self, array: cst.BaseExpression, kernel: cst.BaseExpression,
                                 dimensions: cst.BaseExpression) -> Shape:
        """``lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))``, a hand-written
        dense layer: ``x``'s last axis contracted with the first of a 2-D ``self.param``
        bound once to ``kernel``; the parameter's last axis comes out."""
        converter = self.converter
        if not isinstance(array, cst.Name) or not isinstance(kernel, cst.Name) \
                or converter._assignments.get(kernel.value) != 1 or not _binds_param(converter.node, kernel.value):
            return None
        width = converter.table_widths.get(kernel.value)
        contraction = re.sub(r"\s+", "", converter.env.code(dimensions))
        if width is None or contraction != f"((({array.value}.ndim-1,),(0,)),((),()))":
            return None
        shape = self.shape_of(array)
        if not shape:
            return None
        return open_shape(width) if is_open(shape) else tuple(shape[:-1]) + (width,)

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
        if not shape or axis is None:
            return None
        axes = int_tuple(axis, 1) if int_literal(axis) is not None else int_tuple(axis, 0)
        if axes is None:
            return None
        if is_open(shape):  # rank unknown: only axes counted from the end before the last one keep it
            return shape if all(a < -1 for a in axes) else None
        if not (keepdims is None or is_false(keepdims)):
            return None
        dropped = {a % len(shape) for a in axes}
        return tuple(size for index, size in enumerate(shape) if index not in dropped)


    def _shape_read(self, node: cst.BaseExpression) -> Shape:
        """``x.shape``: the shape of ``x``."""
        if isinstance(node, cst.Attribute) and node.attr.value == "shape":
            return self.shape_of(node.value)
        return None

    def _slice_shape(self, node: cst.Subscript) -> Shape:
        """``x[:, :n]``, ``x[:, 0]``, ``x[..., 0:2]``: the last axis is kept when the last
        index is a plain ``:`` or does not reach it (and nothing adds axes); ``self.embedding[ids]`` gathers rows
        of a 2-D parameter: the ids' axes, then the table's width."""
        found, entry = entry_shape(self, node)  # ``out['pre_logits']`` (``constructs/dict_entries.py``)
        if found:
            return entry
        width = self.converter.table_widths.get(self_attribute(node.value) or "")
        if width is not None and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
            ids = self.shape_of(node.slice[0].slice.value)
            return open_shape(width) if ids is None or is_open(ids) else tuple(ids) + (width,)
        shape = self.shape_of(node.value)
        if not shape or any(isinstance(element.slice, cst.Index) and (
                isinstance(element.slice.value, (cst.Ellipsis,)) or (isinstance(element.slice.value, cst.Name)
                                                                    and element.slice.value.value == "None"))
                for element in node.slice):
            return None
        last = node.slice[-1].slice
        if not (isinstance(last, cst.Slice) and last.lower is None and last.upper is None and last.step is None):
            if is_open(shape) and len(shape) == 2:  # ``x[:, :-1]``, ``x[:, 0]`` on an input of unknown rank:
                return (SOME_AXES, shape[-1])  # leading axes, as ``axis_shapes.py`` takes them (else NNX raises)
            if is_open(shape) or len(node.slice) >= len(shape):
                return None  # (of a known rank, ``x[:, 0]`` leaves the last axis alone: below)
        if is_open(shape):
            return tuple(resized(axis) for axis in shape)
        kept = [axis if isinstance(element.slice, cst.Slice) and element.slice.lower is None
                and element.slice.upper is None else None
                for element, axis in zip(node.slice, shape)]
        dropped = sum(isinstance(element.slice, cst.Index) for element in node.slice)
        if len(node.slice) > len(shape):
            return None
        axes = [axis for element, axis in zip(node.slice, kept) if isinstance(element.slice, cst.Slice)]
        result = tuple(axes) + tuple(shape[len(node.slice):])
        return result if len(result) == len(shape) - dropped else None

    def _concatenate_shape(self, arrays: cst.BaseExpression, axis: Optional[cst.BaseExpression]) -> Shape:
        """``jnp.concatenate([a, b], axis=-1)``: the last axes add up."""
        if isinstance(arrays, (cst.List, cst.Tuple)) and axis is not None and int_literal(axis) != -1:
            return concatenated([self.shape_of(element.value) for element in arrays.elements], int_literal(axis))
        if not isinstance(arrays, (cst.List, cst.Tuple)) or axis is None or int_literal(axis) != -1:
            return None
        shapes = [self.shape_of(element.value) for element in arrays.elements]
        if not shapes or any(not shape or shape[-1] is None or (is_open(shape) and len(shape) != 2)
                             for shape in shapes):
            return None
        # the arrays share their leading axes: a known one's, when there is one
        known = [shape for shape in shapes if not is_open(shape)] or shapes
        if any(len(shape) != len(known[0]) or shape[:-1] != known[0][:-1] for shape in known):
            return None
        leading = known[0][:-1] if not is_open(known[0]) or all(map(keeps_input_rank, shapes)) else (SOME_AXES,)
        return leading + (sum_sizes([shape[-1] for shape in shapes]),)

    def _follow_function(self, function: cst.FunctionDef, call: cst.Call) -> Shape:
        """A function of the file (``reparameterize(rng, mean, logvar)``): the shape it
        returns for these arguments, by following its body (no recursion)."""
        params = function.params
        vmapped = vmap_kind(self.converter.env, function)  # ``@jax.vmap``: the body sees one example
        if call.args and any(arg.star or arg.keyword is not None for arg in call.args) \
                or len(call.args) > len(params.params) or getattr(self, "following", False) or vmapped is None:
            return None
        shapes = {param.name.value: self.shape_of(arg.value, several=True)
                  for param, arg in zip(params.params, call.args)}
        if vmapped:
            shapes = {name: per_example(shape) for name, shape in shapes.items()}
        follower = _FunctionShapes(self.converter, shapes)
        follower.unequal_sums = self.unequal_sums
        function.body.visit(follower)
        output = follower.output if not follower.returns_twice else None
        return batched(output) if vmapped else output


class _FunctionShapes(ShapeFollowing, cst.CSTVisitor):
    following = True

    def __init__(self, converter, shapes: dict[str, Shape]) -> None:
        super().__init__()
        self.converter = converter
        self.shapes = shapes
        self.call_shapes: dict[int, Shape] = {}
        self.output: Shape = None
        self.returns_twice = False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False  # nested functions: their names are not followed

    def leave_Call(self, original_node: cst.Call) -> None:
        self.call_shapes[id(original_node)] = self._function_shape(original_node)

    def leave_Assign(self, original_node: cst.Assign) -> None:
        shape = self.shape_of(original_node.value, several=True)
        for target in original_node.targets:
            if isinstance(target.target, cst.Name):
                self.shapes[target.target.value] = shape
            else:
                self.shapes.update({name: None for name in _bound(target.target)})

    def leave_Return(self, original_node: cst.Return) -> None:
        self.returns_twice = self.returns_twice or self.output is not None
        if original_node.value is not None:
            self.output = self.shape_of(original_node.value, several=True)


def _bound(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [name for element in target.elements for name in _bound(element.value)]
    return []


def _binds_param(node: cst.CSTNode, name: str) -> bool:
    """``name = self.param('name', ...)`` somewhere in ``node``."""
    return any(isinstance(child, cst.Assign) and len(child.targets) == 1
               and isinstance(child.targets[0].target, cst.Name) and child.targets[0].target.value == name
               and isinstance(child.value, cst.Call) and self_attribute(child.value.func) == "param"
               and child.value.args and string_literal(child.value.args[0].value) == name
               for child in walk(node))
