"""A recurrent layer created under ``@nn.compact``, bound to a name and called later,
as flax's seq2seq example writes its encoder and decoder::

    encoder = nn.RNN(nn.LSTMCell(self.hidden_size), return_carry=True, name='encoder')
    decoder = nn.RNN(DecoderLSTMCell(...), split_rngs={'params': False, 'lstm': True}, name='decoder')
    carry, _ = encoder(inputs, seq_lengths=lengths)
    logits, tokens = decoder(targets, initial_carry=(carry, targets[:, 0]))

Linen's ``nn.RNN`` holds no variables here: the cell, created in the parent's
compact scope, is the parent's own submodule (``LSTMCell_0``,
``DecoderLSTMCell_0``).  NNX builds the cell as that attribute in ``__init__``;
the binding stays where it was, over the held cell, with the options NNX's
``nnx.RNN`` has under the same names (``return_carry``, ``time_major``,
``reverse``, ``keep_order``, ``unroll``): ``encoder = nnx.RNN(self.lstm_cell_0,
return_carry=True)``; the calls stay as written (``seq_lengths=``,
``initial_carry=`` mean the same).

A custom cell (``class DecoderLSTMCell(nn.RNNCellBase)``) becomes an
``nnx.RNNCellBase`` subclass sized by what the RNN steps it with: its input
``x`` gives ``in_features``, each array of its carry a parameter named by its
place in the carry (``carry_0_1_features``: the second array of the first
element), which the parent passes.  An ``nn.LSTMCell`` stepped by hand,
``cell(carry, x)``, is sized as Linen sizes it: hidden features from the carry,
not from its ``features`` (Linen uses those only for ``initialize_carry``).

Random numbers: ``self.make_rng('lstm')`` in the cell draws from the stream the
cell keeps (``constructs/make_rng.py``).  ``nnx.RNN`` scans the cell with all its
state carried, so the stream's counter advances at each step: a new key per step
and per call, as Linen's ``split_rngs={'lstm': True}`` gives one -- from NNX's
counter instead of Linen's scope path, so the draws have the same distribution,
not the same values.  A stream the cell draws that ``split_rngs`` does not split
(one key for every step in Linen) gets no fix.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import CarryUnknown, Slot, Unconvertible, arg_keyword, line_of
from nnxlint.conversion.constructs.rnn import RNN_CELLS
from nnxlint.conversion.shapes import ANY_AXES, Several, Shape, Size, is_open, open_shape, string_literal
from nnxlint.flax_api import LINEN_CELL_BASE

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter

# ``nn.RNN`` options ``nnx.RNN`` takes under the same name with the same meaning
_SAME_OPTIONS = ("return_carry", "time_major", "reverse", "keep_order", "unroll")
# keywords of a call of the RNN that ``nnx.RNN.__call__`` takes alike
_SAME_CALL_KEYWORDS = ("initial_carry", "seq_lengths", "return_carry", "time_major", "reverse", "keep_order")
_CARRY_SIZE = re.compile(r"(?P<name>.*?)(?P<path>(?:_\d+)+)_features")


class Carry(Several):
    """A recurrent cell's carry, a tuple of arrays (``(c, h)``, or nested): a name bound to one
    keeps it (``state, _ = encoder(x)``; ``lstm_state, last = carry``), as the cell needs it."""


def as_carry(shape: Shape) -> Shape:
    if isinstance(shape, Several):
        return Carry(tuple(as_carry(part) for part in shape.parts))
    return shape


@dataclass
class BoundRnn:
    cell: Slot  # the cell, an attribute of the parent
    options: dict[str, cst.BaseExpression]  # the options kept for ``nnx.RNN``
    custom: bool  # a cell class of the file (an ``nn.RNNCellBase`` subclass)


# -- the cell class ------------------------------------------------------------------
def is_cell_class(converter: ClassConverter) -> bool:
    return any(converter.env.resolve(base.value) == LINEN_CELL_BASE for base in converter.node.bases)


def cell_base(converter: ClassConverter) -> str:
    """The NNX base of the converted class: ``nnx.RNNCellBase`` for a cell, else ``nnx.Module``."""
    return f"{converter.env.nnx}.RNNCellBase" if is_cell_class(converter) else f"{converter.env.nnx}.Module"


def check_cell_methods(converter: ClassConverter, methods: dict[str, cst.FunctionDef]) -> None:
    if is_cell_class(converter) and "initialize_carry" in methods:
        raise Unconvertible("a cell's own `initialize_carry`: Linen calls it as `(rng, input_shape)`, "
                            "NNX as `(input_shape, rngs)`; not converted")


def cell_input(converter: ClassConverter, param: cst.Param, index: int) -> Optional[Shape]:
    """The shapes inside a cell's ``__call__(self, carry, x)``: ``x`` sized by ``in_features``,
    each array of the carry by a parameter named by its place; None for other classes."""
    if not is_cell_class(converter) or index > 1:
        return None
    given = converter.inputs[index] if index < len(converter.inputs) else None
    if index == 1:
        converter.graph_sizes["in_features"] = 1
        return open_shape(Size("in_features"))
    name = param.name.value
    if given is None or (not isinstance(given, Several) and given and given[-1] is not None
                         and given[-1].code == "?"):
        raise CarryUnknown(f"the carry of cell `{converter.node.name.value}` is known only where an `nn.RNN` steps "
                           "it with an `initial_carry`")
    if re.search(r"_\d+$", name):
        raise Unconvertible(f"a cell's carry argument named `{name}` (ending in a number) is not converted")
    return _named_carry(converter, given, name)


def _named_carry(converter: ClassConverter, given: Shape, prefix: str) -> Shape:
    if isinstance(given, Several):
        return Carry(tuple(_named_carry(converter, part, f"{prefix}_{index}")
                             for index, part in enumerate(given.parts)))
    if not given:
        raise Unconvertible(f"the carry of cell `{converter.node.name.value}` holds an array whose size is not "
                            "known where the `nn.RNN` steps it")
    parameter = f"{prefix}_features"
    if parameter in converter.field_names:
        raise Unconvertible(f"a field is named `{parameter}`, the name a carry size parameter needs")
    converter.graph_sizes[parameter] = 0
    return open_shape(Size(parameter))


def carry_input_size(parameter: str, shape: Shape) -> Optional[Size]:
    """What a parent passes for a cell's carry size parameter, given the carry it passes."""
    match = _CARRY_SIZE.fullmatch(parameter)
    if match is None:
        return None
    for index in (int(step) for step in match["path"].strip("_").split("_")):
        if not isinstance(shape, Several) or index >= len(shape.parts):
            return None
        shape = shape.parts[index]
    return shape[-1] if shape and not isinstance(shape, Several) else None


def stepped_cell(converter: ClassConverter, slot: Slot, mapping, inputs: list[Shape],
                 shapes: dict[str, Shape]) -> Optional[tuple[str, Shape]]:
    """``nn.LSTMCell(f)(carry, x)``: the NNX cell sized by ``x`` and the carry's hidden state,
    and its ``((c, h), h)`` (a GRU's carry is ``h``: ``(h, h)``); None for any other call."""
    if mapping.linen not in RNN_CELLS or len(inputs) != 2:
        return None
    carry, step = inputs
    gru = mapping.linen == "GRUCell"
    if gru:
        hidden = carry if not isinstance(carry, Several) else None
    else:
        hidden = carry.parts[1] if isinstance(carry, Several) and len(carry.parts) == 2 else None
    if not hidden or isinstance(hidden, Several) or hidden[-1] is None or not step or isinstance(step, Several):
        raise Unconvertible(f"`nn.{mapping.linen}(...)(carry, x)` with a carry or input of unknown size "
                            "(Linen sizes the cell by its carry's hidden state)")
    hidden_size = cst.parse_expression(hidden[-1].code)
    args = [cst.Arg(hidden_size, keyword=cst.Name("features"))] + [
        arg for arg in slot.construction.args if arg_keyword(arg) not in (None, "features", "name")]
    if len([arg for arg in slot.construction.args if arg.keyword is None]) > 1:
        raise Unconvertible(f"`nn.{mapping.linen}` with positional arguments after `features`")
    sized = Slot(slot.attribute, slot.construction.with_changes(args=args))
    code = converter._layer_init(sized, mapping, step[-1], shapes)
    output = step[:-1] + (hidden[-1],)
    return code, Several((output if gru else Carry((output, output)), output))


# -- the parent ------------------------------------------------------------------------
def bind_rnn(rewriter: CallRewriter, node: cst.Assign) -> bool:
    """``encoder = nn.RNN(cell, ...)``: the cell becomes an attribute, the binding an
    ``nnx.RNN`` over it; True when the statement was one."""
    converter = rewriter.converter
    value = node.value
    if not isinstance(value, cst.Call) or not converter._compact:
        return False
    layer = converter.layer(value.func)
    if layer is None or layer.factory is None or layer.factory.name != "RNN":
        return False
    target = node.targets[0].target if len(node.targets) == 1 else None
    with _at_line(converter, node):
        if not isinstance(target, cst.Name) or rewriter.depth or converter._assignments.get(target.value) != 1:
            raise Unconvertible("an `nn.RNN` bound to something other than a name assigned once outside loops "
                                "and branches")
        cells = [arg.value for arg in value.args if arg_keyword(arg) in (None, "cell")]
        cell_layer = converter.layer(cells[0].func) if len(cells) == 1 and isinstance(cells[0], cst.Call) else None
        custom = cell_layer is not None and cell_layer.user_class is not None and _is_cell(converter, cell_layer)
        if cell_layer is None or not (custom or getattr(cell_layer.mapping, "linen", None) in RNN_CELLS):
            raise Unconvertible(f"`nn.RNN` of a cell other than {', '.join(RNN_CELLS)} or an `nn.RNNCellBase` "
                                "subclass of the file, created in place")
        options = {arg_keyword(arg): arg.value for arg in value.args
                   if arg_keyword(arg) not in (None, "cell", "name")}
        _check_split(converter, options.pop("split_rngs", None), cells[0] if custom else None)
        other = sorted(set(options) - set(_SAME_OPTIONS))
        if other:
            raise Unconvertible(f"`nn.RNN({other[0]}=...)` is not converted (`nnx.RNN` scans its cell's state "
                                "as a carry)")
    slot = converter.construct(cells[0], None)  # Linen names the cell in the parent (``LSTMCell_0``)
    rewriter.local_modules[target.value] = slot  # its reads: calls only
    rewriter.recurrent[target.value] = BoundRnn(slot, options, custom)
    kept = "".join(f", {name}={converter.env.code(option)}" for name, option in options.items())
    rewriter.graph_statements[id(node)] = cst.parse_expression(
        f"{converter.env.nnx}.RNN(self.{slot.attribute}{kept})")
    return True


@contextmanager
def _at_line(converter: ClassConverter, node: cst.CSTNode):
    """The refusals raised inside name the line of ``node``."""
    try:
        yield
    except Unconvertible as error:
        raise type(error)(f"{error} (line {line_of(converter.env.module, node)})") from None


def _is_cell(converter: ClassConverter, layer) -> bool:
    node = converter.env.class_node(layer.user_class)
    return any(converter.env.resolve(base.value) == LINEN_CELL_BASE for base in node.bases)


def _check_split(converter: ClassConverter, split: Optional[cst.BaseExpression], cell: Optional[cst.Call]) -> None:
    """Linen splits the streams ``split_rngs`` names True at each step and gives the others'
    one key to every step; NNX's stream counter gives a new key at each step."""
    streams: dict[str, bool] = {"params": False}
    if split is not None:
        if not isinstance(split, cst.Dict):
            raise Unconvertible("`nn.RNN(split_rngs=...)` other than a dict literal is not converted")
        streams = {}
        for element in split.elements:
            key = string_literal(getattr(element, "key", None))
            flag = getattr(element, "value", None)
            if key is None or not (isinstance(flag, cst.Name) and flag.value in ("True", "False")):
                raise Unconvertible("`nn.RNN(split_rngs=...)` with keys other than stream names or values other "
                                    "than True/False is not converted")
            streams[key] = flag.value == "True"
    if streams.get("params", False):
        raise Unconvertible("`nn.RNN(split_rngs={'params': True})` is not converted")
    drawn = _drawn_streams(converter, cell) if cell is not None else set()
    unsplit = sorted(stream for stream in drawn if not streams.get(stream, False))
    if unsplit:
        raise Unconvertible(f"the cell draws `self.make_rng({unsplit[0]!r})`, which `nn.RNN(split_rngs=...)` does not "
                            "split: Linen gives every step one key, NNX's stream a new one per step")


def _drawn_streams(converter: ClassConverter, cell: cst.Call) -> set[str]:
    node = converter.env.class_node(converter.layer(cell.func).user_class)  # type: ignore[union-attr]
    streams = set()
    for child in walk(node):
        if isinstance(child, cst.Call) and isinstance(child.func, cst.Attribute) \
                and child.func.attr.value == "make_rng" and child.args:
            stream = string_literal(child.args[0].value)
            if stream is None:
                raise Unconvertible("a cell's `self.make_rng` with a stream name that is not a literal")
            streams.add(stream)
    return streams


def rnn_call(rewriter: CallRewriter, original: cst.Call, updated: cst.Call) -> Optional[cst.BaseExpression]:
    """``encoder(x, seq_lengths=...)``: the call stays as written; the cell is sized by the
    step it is given (and the carry); None for any other call."""
    func = original.func
    owner = func.value if isinstance(func, cst.Attribute) else func
    if not isinstance(owner, cst.Name) or owner.value not in rewriter.recurrent:
        return None
    if func is not owner:
        raise Unconvertible(f"`{owner.value}.{func.attr.value}` of an `nn.RNN` is not converted")  # type: ignore
    bound = rewriter.recurrent[owner.value]
    positional = [arg for arg in original.args if arg.keyword is None and not arg.star]
    keywords = {arg_keyword(arg): arg.value for arg in original.args if arg.keyword is not None}
    with _at_line(rewriter.converter, original):
        if len(positional) != 1 or len(positional) + len(keywords) != len(original.args) \
                or not set(keywords) <= set(_SAME_CALL_KEYWORDS):
            raise Unconvertible(f"`{owner.value}(...)`: an `nn.RNN` called with other than its input and "
                                f"{', '.join(f'`{k}=`' for k in _SAME_CALL_KEYWORDS)}")
        if bound.custom and "initial_carry" not in keywords:
            raise Unconvertible(f"`{owner.value}(...)` without `initial_carry=`: the cell's carry would come from "
                                "its `initialize_carry`, whose signature differs between Linen and NNX")
    time_major = _flag(keywords.get("time_major", bound.options.get("time_major")))
    return_carry = _flag(keywords.get("return_carry", bound.options.get("return_carry")))
    sequence = rewriter.shape_of(positional[0].value)
    step = _step(sequence, time_major)
    carry = _carry_shape(rewriter, keywords["initial_carry"]) if "initial_carry" in keywords else None
    inputs = [step] if carry is None and not bound.custom else [carry, step]
    output, _ = rewriter.converter.call_slot(bound.cell, inputs, rewriter.shapes)
    if bound.cell.init_code is None:
        raise Unconvertible(f"the cell of `{owner.value}` could not be sized")
    if not bound.custom and carry is None:  # Linen's zero carry of the cell's features
        output = _feature_output(rewriter, bound.cell, step)
    new_carry, outputs = output.parts if isinstance(output, Several) and len(output.parts) == 2 else (None, None)
    outputs = _with_time(outputs, time_major, sequence)
    rewriter.call_shapes[id(original)] = None if return_carry is None else \
        Several((as_carry(new_carry), outputs)) if return_carry else outputs
    return updated


def _carry_shape(rewriter: CallRewriter, node: cst.BaseExpression) -> Shape:
    """``(state, x[:, 0])``: a tuple's arrays and carries, at any depth."""
    if isinstance(node, cst.Tuple) and all(isinstance(element, cst.Element) for element in node.elements):
        return Carry(tuple(_carry_shape(rewriter, element.value) for element in node.elements))
    return rewriter.shape_of(node, several=True)


def _feature_output(rewriter: CallRewriter, cell: Slot, step: Shape) -> Shape:
    converter = rewriter.converter
    mapping = converter.layer(cell.construction.func).mapping  # type: ignore[union-attr]
    features = converter.size_of(converter.construction_args(cell.construction, mapping)[0]["features"],
                                 rewriter.shapes)
    if not step or isinstance(step, Several):
        return Several((None, None))
    output = step[:-1] + (features,)
    return Several((Carry((output, output)), output))


def _flag(node: Optional[cst.BaseExpression]) -> Optional[bool]:
    if node is None:
        return False
    return {"True": True, "False": False}.get(node.value) if isinstance(node, cst.Name) else None


def _step(sequence: Shape, time_major: Optional[bool]) -> Shape:
    """One step of the sequence (the cells here have one feature axis)."""
    if not sequence or isinstance(sequence, Several) or time_major is None:
        return None
    if is_open(sequence):
        return sequence if sequence[0] == ANY_AXES and len(sequence) == 2 else None
    axis = 0 if time_major else len(sequence) - 2
    return sequence[:axis] + sequence[axis + 1:] if axis >= 0 else None


def _with_time(shape: Shape, time_major: Optional[bool], sequence: Shape) -> Shape:
    """The outputs over the sequence: each array of one step's output with the time axis."""
    if isinstance(shape, Several):
        return Several(tuple(_with_time(part, time_major, sequence) for part in shape.parts))
    if not shape or time_major is None or not sequence or isinstance(sequence, Several):
        return None
    if is_open(shape):
        return shape
    time = sequence[0] if time_major else sequence[-2]
    return (time,) + shape if time_major else shape[:-1] + (time,) + shape[-1:]
