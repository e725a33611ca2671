"""A projection created when a block changes its input's shape, as ResNets write it::

    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    ...
    if residual.shape != y.shape:
        residual = self.conv(self.filters, (1, 1), self.strides, name='conv_proj')(residual)

Linen decides at ``init`` from the example input's shape; NNX's ``__init__``
must decide from sizes.  The two shapes differ only where the feature sizes
differ or a convolution with a stride other than 1 shrank the spatial axes
(every layer before the test keeps them otherwise: SAME convolutions, norms,
elementwise functions), so ``__init__`` builds the projection under::

    if in_features != filters or strides not in (1, (1,), (1, 1), (1, 1, 1)):
        self.conv_proj = conv(in_features, filters, (1, 1), strides, rngs=rngs)

and ``__call__`` keeps the test on the shapes.  The condition holds whenever
Linen's does, so the NNX call never lacks the projection; it may hold where
Linen's does not (a stride of 2 on a spatial axis of size 1), and then the NNX
model has a projection the Linen variables do not: ``nnxlint.transplant``
names it, nothing is computed differently.  Converted for a test
``a.shape != b.shape`` without ``else``, when every statement before it in
``__call__`` builds and applies layers (convolutions with SAME padding, no
dilation), applies elementwise functions or activation fields, or binds names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import method_of, self_attribute
from nnxlint.conversion.linen_map import ELEMENTWISE_FUNCTIONS
from nnxlint.conversion.shapes import int_literal, string_literal

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter

_UNIT_STRIDES = "(1, (1,), (1, 1), (1, 1, 1))"
_SPATIAL_KEYWORDS = ("input_dilation", "kernel_dilation")


def shape_test_condition(rewriter: "CallRewriter", node: cst.If) -> Optional[str]:
    """``__init__``'s test for modules created under ``if a.shape != b.shape:``; None
    when the test is no such comparison or the conversion cannot bound it."""
    test = node.test
    if node.orelse is not None or not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1
                                       and isinstance(test.comparisons[0].operator, cst.NotEqual)):
        return None
    left, right = _shape_of_name(rewriter, test.left), _shape_of_name(rewriter, test.comparisons[0].comparator)
    if not left or not right or left[-1] is None or right[-1] is None:
        return None
    strides = _strides_before(rewriter, node)
    if strides is None:
        return None
    parts = [] if left[-1] == right[-1] else [f"{left[-1].operand()} != {right[-1].operand()}"]
    parts += [f"{code} not in {_UNIT_STRIDES}" for code in strides]
    return " or ".join(parts) or "False"


def _shape_of_name(rewriter: "CallRewriter", node: cst.BaseExpression):
    if isinstance(node, cst.Attribute) and node.attr.value == "shape" and isinstance(node.value, cst.Name):
        return rewriter.shapes.get(node.value.value)
    return None


def _strides_before(rewriter: "CallRewriter", branch: cst.If) -> Optional[list[str]]:
    """The strides (``__init__`` code) of the convolutions built before ``branch``, or None
    when something before it may change the spatial axes otherwise."""
    converter = rewriter.converter
    body = _statements_before(converter, branch)
    if body is None:
        return None
    allowed = True

    class Check(cst.CSTVisitor):
        def visit_Subscript(self, node: cst.Subscript) -> None:
            nonlocal allowed
            allowed = False

        def visit_Call(self, node: cst.Call) -> None:
            nonlocal allowed
            func = node.func
            if isinstance(func, cst.Call) or converter.layer(func) is not None:
                return  # a layer built (and applied)
            member = converter.env.linen_member(func) or ""
            qualified = converter.env.resolve(func) or ""
            if member in ELEMENTWISE_FUNCTIONS or qualified.rpartition(".")[2] in ELEMENTWISE_FUNCTIONS \
                    and qualified.startswith(("jax.nn.", "jax.numpy.")):
                return
            if self_attribute(func) is not None and rewriter._activation_field(func):
                return
            if qualified == "functools.partial" or member.startswith("initializers."):
                return
            allowed = False

    for statement in body:
        statement.visit(Check())
    if not allowed:
        return None
    strides = []
    for attribute in converter.slot_order:
        slot = converter.slots[attribute]
        layer = converter.layer(slot.construction.func)
        if layer is None or layer.mapping is None:
            if layer is not None and layer.user_class is not None:
                return None  # a block of the file: its spatial behaviour is its own
            continue
        if layer.mapping.linen not in ("Conv",):
            if "strides" in layer.mapping.linen_positional or "window_shape" in layer.mapping.linen_positional:
                return None
            continue
        values, _ = converter.construction_args(slot.construction, layer.mapping)
        preset = dict(layer.made_by.preset) if layer.made_by is not None else {}
        for keyword in _SPATIAL_KEYWORDS:
            if keyword in values or keyword in preset:
                return None
        padding = values.get("padding", preset.get("padding", cst.SimpleString("'SAME'")))
        if padding is None or string_literal(padding) != "SAME":
            return None
        stride = values.get("strides", preset.get("strides", cst.Integer("1")))
        if stride is None:
            return None  # fixed by a parent's partial: not in this class's terms
        if int_literal(stride) == 1 or _all_ones(stride):
            continue
        strides.append(converter.init_code(stride, {}))
    return strides


def _all_ones(node: cst.BaseExpression) -> bool:
    return isinstance(node, (cst.Tuple, cst.List)) and bool(node.elements) \
        and all(int_literal(element.value) == 1 for element in node.elements)


def _statements_before(converter, branch: cst.If) -> Optional[list[cst.CSTNode]]:
    """The statements of ``__call__`` before ``branch`` (None: it is not one of them)."""
    call = method_of(converter.node, "__call__")
    statements = list(call.body.body) if call is not None and isinstance(call.body, cst.IndentedBlock) else []
    for index, statement in enumerate(statements):
        if statement is branch:
            return statements[:index]
    return None

