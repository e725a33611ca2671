"""A submodule's call in a Linen ``__call__``: the shapes of its inputs fix its
construction (``submodule_slots.py``), and its arguments are rewritten for NNX (a
layer's renamed keywords; the train/eval flag dropped where the module's mode
carries it, or the child pinned to eval mode, ``constructs/pinned_mode.py``).
A mixin of ``calls.CallRewriter``, whose state it reads.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.conversion.base import Mode, Slot, Unconvertible, arg_keyword, drop_args
from nnxlint.conversion.constructs.branch_sizes import explain_unknown
from nnxlint.conversion.constructs.pinned_mode import pinned_eval_call
from nnxlint.conversion.constructs.rnn import RNN_CELLS
from nnxlint.conversion.constructs.value_dtype import layer_output_dtype
from nnxlint.conversion.linen_map import LayerMapping


class SubmoduleCalls:
    """``CallRewriter``'s calls of submodules: their slots sized, their arguments rewritten."""

    def _call_slot(self, slot: Slot, original: cst.Call, updated: cst.Call) -> cst.Call:
        converter = self.converter
        layer = converter.layer(slot.construction.func)
        assert layer is not None
        positional = [arg for arg in original.args if arg.keyword is None]
        inputs = [self.shape_of(arg.value) for arg in positional]
        stepped = layer.mapping is not None and len(positional) == 2 and layer.mapping.linen in RNN_CELLS
        if stepped:  # ``cell(carry, x)``: the carry's arrays size the cell (``constructs/recurrent_later.py``)
            inputs[0] = self.shape_of(positional[0].value, several=True)
        try:
            output, child_mode = converter.call_slot(slot, inputs, self.shapes)
        except Unconvertible as error:
            raise explain_unknown(self, positional, error) from None
        self.call_shapes[id(original)] = output
        dtype = layer_output_dtype(self, slot)
        if dtype is not None:
            self.call_dtypes[id(original)] = dtype
        call = updated.with_changes(func=cst.parse_expression(f"self.{slot.attribute}"))
        if stepped:
            if len(original.args) != 2:
                raise Unconvertible(f"`nn.{layer.mapping.linen}` called with keyword arguments")
        elif layer.mapping is not None:
            call = self._layer_call_args(layer.mapping, original, call)
        elif layer.factory is not None and (len(original.args) != 1 or original.args[0].keyword is not None):
            raise Unconvertible(f"an `nn.{layer.factory.name}` called with more than its input")
        elif child_mode is not None:
            call = self._child_call_args(child_mode, original, call)
        return call

    def _layer_call_args(self, mapping: LayerMapping, original: cst.Call, call: cst.Call) -> cst.Call:
        names_by_position = ("inputs",) + mapping.call_positional
        args = []
        for index, (arg, new_arg) in enumerate(zip(original.args, call.args)):
            keyword = arg_keyword(arg)
            if keyword is None and index >= len(names_by_position):
                raise Unconvertible(f"too many positional arguments in a call of `{mapping.linen}`")
            name = keyword or names_by_position[index]
            if name == mapping.mode_flag:
                if self._consume_mode(arg.value) is None:
                    continue  # the flag is the module's mode: model.train()/eval() sets it
                new_arg = new_arg.with_changes(keyword=cst.Name(name), equal=cst.AssignEqual(
                    cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
            elif name in mapping.call_renamed:
                new_arg = new_arg.with_changes(keyword=cst.Name(mapping.call_renamed[name]), equal=cst.AssignEqual(
                    cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
            elif keyword is None and index > 0 and mapping.linen == "SelfAttention":
                new_arg = new_arg.with_changes(keyword=cst.Name(name), equal=cst.AssignEqual(
                    cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
            elif name == "inputs_kv":
                raise Unconvertible("`inputs_kv=` has no NNX equivalent: pass `inputs_k` and `inputs_v`")
            args.append(new_arg)
        if args and len(args) < len(call.args):
            args[-1] = args[-1].with_changes(comma=call.args[-1].comma)
        return call.with_changes(args=args)

    def _consume_mode(self, value: cst.BaseExpression) -> Optional[bool]:
        constant = self.converter.mode_use(value, True)
        if constant is None:
            self.converter.mode_consumed += 1
        else:
            self.converter.constant_flags = True
        return constant

    def _child_call_args(self, child_mode: Mode, original: cst.Call, call: cst.Call) -> cst.Call:
        def is_mode(index: int, keyword: Optional[str]) -> bool:
            return keyword == child_mode.name or (keyword is None and index == child_mode.index)

        found = [arg for index, arg in enumerate(original.args) if is_mode(index, arg_keyword(arg))]
        if len(found) > 1:
            raise Unconvertible("a submodule is given its train/eval argument twice")
        if not found or self.converter.mode_use(found[0].value, child_mode.eval_value) is not None:
            return pinned_eval_call(self, child_mode, found[0] if found else None, call, is_mode)
        self.converter.mode_consumed += 1
        return drop_args(call, is_mode)
