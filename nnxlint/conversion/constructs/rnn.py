"""``nn.RNN(nn.LSTMCell(16))``.

In ``setup``: ``nnx.RNN(nnx.LSTMCell(d, 16, rngs=rngs))`` (Linen names the cell
``rnn/cell``, as the NNX RNN holds it).  Created and called at once under
``@nn.compact``, Linen makes the cell the parent's own submodule
(``LSTMCell_0``) and the RNN holds no variables, so the cell becomes the
parent's attribute, scanned by an ``nnx.RNN`` where it is called (both scan
axis 1 from a zero carry).
"""

from __future__ import annotations

import libcst as cst

from nnxlint.conversion.base import Slot, Unconvertible
from nnxlint.conversion.constructs import Factory, factory
from nnxlint.conversion.linen_map import LAYERS
from nnxlint.conversion.shapes import Shape

# GRUCell: built as the subclass ``constructs/gru.py`` adds.
RNN_CELLS = ("LSTMCell", "OptimizedLSTMCell", "GRUCell")


def rnn_cell(construction: cst.Call, converter) -> cst.Call:
    """The cell of ``nn.RNN(nn.LSTMCell(...))``, created in place; other RNN options are not converted."""
    cells = [arg.value for arg in construction.args if arg.keyword is None or arg.keyword.value == "cell"]
    if len(cells) != 1 or not isinstance(cells[0], cst.Call) or any(
            arg.keyword is not None and arg.keyword.value not in ("cell", "name") for arg in construction.args):
        raise Unconvertible("`nn.RNN` with options or a cell not created in place is not converted")
    cell = cells[0]
    cell_name = converter.env.linen_member(cell.func)
    if cell_name not in RNN_CELLS:
        raise Unconvertible(f"`nn.RNN` of a cell other than {', '.join(RNN_CELLS)}")
    return cell


def rnn_output(converter, cell: cst.Call, sequence: Shape, shapes: dict[str, Shape]) -> Shape:
    """The hidden states an RNN of ``cell`` returns: the cell's features on the last axis."""
    if sequence is None:
        return None
    mapping = LAYERS[converter.env.linen_member(cell.func)]
    features = converter.construction_args(cell, mapping)[0]["features"]
    return sequence[:-1] + (converter.size_of(features, shapes),)


@factory("RNN")
class Rnn(Factory):
    def parts(self, construction, converter):
        return [rnn_cell(construction, converter)]

    def build(self, converter, slot, inputs, shapes):
        sequence = inputs[0] if inputs else None
        cell = rnn_cell(slot.construction, converter)
        part = Slot(f"{slot.attribute}.cell", cell)
        converter.call_slot(part, [sequence], shapes)
        return (f"{converter.env.nnx}.RNN({part.init_code.partition(' = ')[2]})",  # type: ignore[union-attr]
                rnn_output(converter, cell, sequence, shapes))

    def inline(self, rewriter, construction, call, updated):
        converter = rewriter.converter
        if len(call.args) != 1 or call.args[0].keyword is not None:
            raise Unconvertible("an `nn.RNN` called with more than its input (`initial_carry=`, ...)")
        cell = rnn_cell(construction, converter)
        slot = converter.construct(cell, None)
        sequence = rewriter.shape_of(call.args[0].value)
        converter.call_slot(slot, [sequence], rewriter.shapes)
        rewriter.call_shapes[id(call)] = rnn_output(converter, cell, sequence, rewriter.shapes)
        rnn = cst.Call(cst.parse_expression(f"{converter.env.nnx}.RNN"),
                       [cst.Arg(cst.parse_expression(f"self.{slot.attribute}"))])
        return updated.with_changes(func=rnn)

