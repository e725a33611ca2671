"""``nn.Sequential([nn.Dense(8), nn.relu, ...])``.

In ``setup`` it becomes ``nnx.Sequential(nnx.Linear(d, 8, ...), nnx.relu, ...)``
(Linen names the layers ``layers_0``, ``layers_2``: the ``nnx.List`` entries of
the NNX Sequential).  Created and called at once under ``@nn.compact``, Linen
names the layers as the parent's own (``Dense_0``), so they become the parent's
attributes, applied in order: ``nnx.relu(self.dense_0(x))``.
"""

from __future__ import annotations

import libcst as cst

from nnxlint.conversion.base import Slot, Unconvertible
from nnxlint.conversion.constructs import Factory, factory
from nnxlint.conversion.linen_map import ELEMENTWISE_FUNCTIONS
from nnxlint.conversion.shapes import Shape


def sequence_elements(construction: cst.Call) -> list[cst.BaseExpression]:
    """The layers of ``nn.Sequential([...])``, given as a list or tuple literal."""
    layers = [arg.value for arg in construction.args if arg.keyword is None or arg.keyword.value == "layers"]
    if len(layers) != 1 or not isinstance(layers[0], (cst.List, cst.Tuple)) or any(
            arg.keyword is not None and arg.keyword.value not in ("layers", "name") for arg in construction.args):
        raise Unconvertible("`nn.Sequential` without a literal list of layers is not converted")
    return [element.value for element in layers[0].elements]


@factory("Sequential")
class Sequential(Factory):
    def parts(self, construction, converter):
        return list(sequence_elements(construction))

    def build(self, converter, slot, inputs, shapes):
        shape = inputs[0] if inputs else None
        parts = []
        for index, element in enumerate(sequence_elements(slot.construction)):
            if isinstance(element, cst.Call) and converter.layer(element.func) is not None:
                part = Slot(f"{slot.attribute}.layers[{index}]", element)
                shape, mode = converter.call_slot(part, [shape], shapes)
                if mode is not None:
                    raise Unconvertible("a module with a train/eval argument inside `nn.Sequential`")
                parts.append(part.init_code.partition(" = ")[2])  # type: ignore[union-attr]
            elif converter.env.nnx_function(element) is not None:
                parts.append(converter.env.nnx_function(element))
                shape = shape if converter.env.linen_member(element) in ELEMENTWISE_FUNCTIONS else None
            else:
                raise Unconvertible("`nn.Sequential` with elements other than layers and Linen functions")
        return f"{converter.env.nnx}.Sequential({', '.join(parts)})", shape

    def inline(self, rewriter, construction, call, updated):
        converter = rewriter.converter
        if len(call.args) != 1 or call.args[0].keyword is not None:
            raise Unconvertible("an inline `nn.Sequential` called with more than its input")
        expression = updated.args[0].value
        shape: Shape = rewriter.shape_of(call.args[0].value)
        for element in sequence_elements(construction):
            if isinstance(element, cst.Call) and converter.layer(element.func) is not None:
                slot = converter.construct(element, None)
                shape, mode = converter.call_slot(slot, [shape], rewriter.shapes)
                if mode is not None:
                    raise Unconvertible("a module with a train/eval argument inside `nn.Sequential`")
                function = f"self.{slot.attribute}"
            elif converter.env.nnx_function(element) is not None:
                function = converter.env.nnx_function(element)
                shape = shape if converter.env.linen_member(element) in ELEMENTWISE_FUNCTIONS else None
            else:
                raise Unconvertible("`nn.Sequential` with elements other than layers and Linen functions")
            expression = cst.Call(cst.parse_expression(function), [cst.Arg(expression)])
        rewriter.call_shapes[id(call)] = shape
        return expression
