"""A recurrent cell stepped over a sequence by a scanned ``__call__``, as flax's
sst2 writes its LSTM::

    @functools.partial(nn.transforms.scan, variable_broadcast='params', in_axes=1,
                       out_axes=1, split_rngs={'params': False})
    @nn.compact
    def __call__(self, carry, x):
        return nn.OptimizedLSTMCell(self.hidden_size)(carry, x)

    def initialize_carry(self, input_shape):
        return nn.OptimizedLSTMCell(self.hidden_size, parent=None).initialize_carry(
            jax.random.key(0), input_shape)

Linen scans the step over axis 1 of ``x`` with one set of cell parameters
(``OptimizedLSTMCell_0``) and returns ``(carry, outputs)``; ``nnx.RNN`` does the
same over the cell the module holds: ``return nnx.RNN(self.optimized_lstm_cell_0,
return_carry=True)(x, initial_carry=carry)`` (``time_major=True`` for axis 0).
``initialize_carry`` builds a detached cell only for its carry: NNX asks the held
cell, ``self.optimized_lstm_cell_0.initialize_carry(input_shape, nnx.Rngs(key))``
(NNX wants a stream even for the default zero carry, which draws nothing).  Converted only in
exactly this shape: the scan options above, one cell of ``RNN_CELLS`` created
and called with ``(carry, x)``, and an ``initialize_carry`` building the same cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.imports import is_docstring
from nnxlint.conversion.base import LINEN_COMPACT, Unconvertible, arg_keyword, function_params
from nnxlint.conversion.constructs.rnn import RNN_CELLS
from nnxlint.conversion.shapes import Several, int_literal, is_open, string_literal

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter

_SCANS = ("flax.linen.scan", "flax.linen.transforms.scan")


@dataclass
class ScannedCell:
    cell: cst.Call  # ``nn.OptimizedLSTMCell(self.hidden_size)``
    carry: str
    inputs: str
    axis: int  # the scanned axis of ``inputs`` (and of the outputs)


def scanned_cell(converter: ClassConverter, call: cst.FunctionDef) -> Optional[ScannedCell]:
    """The scanned cell of a ``__call__`` written as above; None for any other ``__call__``."""
    decorators = [d.decorator for d in call.decorators]
    scans = [d for d in decorators if isinstance(d, cst.Call) and converter.env.resolve(d.func) == "functools.partial"
             and d.args and converter.env.resolve(d.args[0].value) in _SCANS]
    if len(decorators) != 2 or len(scans) != 1 or converter.env.resolve(decorators[1]) != LINEN_COMPACT:
        return None
    options = {arg_keyword(arg): arg.value for arg in scans[0].args[1:]}
    if set(options) != {"variable_broadcast", "in_axes", "out_axes", "split_rngs"}:
        raise Unconvertible("`__call__` scanned with other options than `variable_broadcast='params', "
                            "split_rngs={'params': False}` and one `in_axes`/`out_axes` (0 or 1) is not converted")
    in_axis, out_axis = int_literal(options["in_axes"]), int_literal(options["out_axes"])
    split = options["split_rngs"]
    if string_literal(options["variable_broadcast"]) != "params" or in_axis not in (0, 1) \
            or in_axis != out_axis or not _params_not_split(split):
        raise Unconvertible("`__call__` scanned with other options than `variable_broadcast='params', "
                            "split_rngs={'params': False}` and one `in_axes`/`out_axes` (0 or 1) is not converted")
    params = [param.name.value for param in function_params(call)[1:]]
    body = call.body.body if isinstance(call.body, cst.IndentedBlock) else ()
    statements = [s for s in body if not is_docstring(s)]
    returned = statements[0].body[0].value if len(statements) == 1 and isinstance(
        statements[0], cst.SimpleStatementLine) and isinstance(statements[0].body[0], cst.Return) else None
    if len(params) != 2 or not (isinstance(returned, cst.Call) and isinstance(returned.func, cst.Call)
                                and [converter.env.code(arg.value) for arg in returned.args] == params
                                and converter.env.linen_member(returned.func.func) in RNN_CELLS):
        raise Unconvertible("a scanned `__call__(self, carry, x)` other than `return nn.<LSTM or GRU cell>(...)(carry, x)` "
                            "is not converted")
    return ScannedCell(returned.func, params[0], params[1], in_axis)  # type: ignore[arg-type]


def _params_not_split(split: Optional[cst.BaseExpression]) -> bool:
    return isinstance(split, cst.Dict) and len(split.elements) == 1 \
        and string_literal(split.elements[0].key) == "params" \
        and isinstance(split.elements[0].value, cst.Name) and split.elements[0].value.value == "False"


def convert_scanned_call(converter: ClassConverter, call: cst.FunctionDef, scan: ScannedCell,
                         shapes: dict) -> cst.FunctionDef:
    """``__call__`` as ``nnx.RNN`` over the held cell; the cell sized by one step of ``x``."""
    sequence = shapes.get(scan.inputs)
    if sequence is None or is_open(sequence):  # of unknown rank: a step too, with the same last axis
        step = sequence
    else:
        step = sequence[:scan.axis] + sequence[scan.axis + 1:] if len(sequence) > scan.axis + 1 else None
    slot = converter.construct(scan.cell, None)
    output, _ = converter.call_slot(slot, [step], shapes)
    outputs = None if output is None or sequence is None else sequence[:-1] + output[-1:]
    converter.scanned_output = Several((None, outputs))
    time_major = ", time_major=True" if scan.axis == 0 else ""
    line = cst.parse_statement(f"return {converter.env.nnx}.RNN(self.{slot.attribute}, return_carry=True"
                               f"{time_major})({scan.inputs}, initial_carry={scan.carry})\n")
    body = [s for s in call.body.body if is_docstring(s)] + [line]  # type: ignore[union-attr]
    return call.with_changes(body=call.body.with_changes(body=body), decorators=[])


def carry_method(converter: ClassConverter, method: cst.FunctionDef, scan: ScannedCell) -> Optional[cst.FunctionDef]:
    """``initialize_carry`` building a detached copy of the scanned cell -> the held cell's."""
    body = [s for s in method.body.body if not is_docstring(s)]  # type: ignore[union-attr]
    returned = body[0].body[0].value if len(body) == 1 and isinstance(body[0], cst.SimpleStatementLine) \
        and isinstance(body[0].body[0], cst.Return) else None
    if not (isinstance(returned, cst.Call) and isinstance(returned.func, cst.Attribute)
            and returned.func.attr.value == "initialize_carry" and isinstance(returned.func.value, cst.Call)
            and len(returned.args) == 2):
        return None
    detached = returned.func.value
    same_cell = [arg for arg in detached.args if arg_keyword(arg) != "parent"]
    if converter.env.code(detached.func) != converter.env.code(scan.cell.func) or \
            _arguments(converter, same_cell) != _arguments(converter, scan.cell.args) \
            or not any(arg_keyword(arg) == "parent" for arg in detached.args):
        return None
    attribute = next(name for name, slot in converter.slots.items() if slot.construction is scan.cell)
    key, shape = (converter.env.code(arg.value) for arg in returned.args)
    line = cst.parse_statement(f"return self.{attribute}.initialize_carry({shape}, {converter.env.nnx}.Rngs({key}))\n")
    docstrings = [s for s in method.body.body if is_docstring(s)]  # type: ignore[union-attr]
    return method.with_changes(body=method.body.with_changes(body=docstrings + [line]))


def _arguments(converter: ClassConverter, args) -> list[tuple[Optional[str], str]]:
    return [(arg_keyword(arg), converter.env.code(arg.value)) for arg in args]
