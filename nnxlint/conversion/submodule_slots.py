"""Submodules as attributes (slots): the name each gets (``name=``, else Linen's
automatic name, numbered in the order Python creates the modules), the slot itself,
and its NNX construction once a call gives the shapes of its inputs (a Flax layer,
``layers.py``; a class of the file, converted for those inputs, its output shape
in the parent's terms).  A mixin of ``classes.ClassConverter``, whose state it reads.
"""

from __future__ import annotations

from typing import Optional, Sequence

import libcst as cst

from nnxlint.conversion.base import Mode, Slot, Unconvertible, arg_keyword, input_sizes, substitute
from nnxlint.conversion.constructs.branch_names import twin_slot
from nnxlint.conversion.constructs.built_output_size import BUILT
from nnxlint.conversion.constructs.class_field import choice_init
from nnxlint.conversion.constructs.input_axes import with_axis_parameters, with_input_axes
from nnxlint.conversion.constructs.layer_factory import factories_passed, factory_of
from nnxlint.conversion.constructs.linen_bridge import keep_bridged
from nnxlint.conversion.constructs.recurrent_later import stepped_cell
from nnxlint.conversion.naming import identifier_name, nnx_attribute_name
from nnxlint.conversion.shapes import ANY_AXES, Several, Shape, is_open, keeps_input_rank, string_literal


class SubmoduleSlots:
    """``ClassConverter``'s submodules: their names, slots and constructions."""

    def _add_slot(self, attribute: str, construction: cst.Call) -> Slot:
        if attribute in self.slots or attribute in self.params:
            raise Unconvertible(f"submodule name `{attribute}` is used twice")
        for arg in construction.args:
            if arg_keyword(arg) == "parent":
                raise Unconvertible("`parent=` is not converted")
        slot = Slot(attribute, construction)
        self.slots[attribute] = slot
        self.slot_order.append(attribute)
        return slot

    # -- called by the rewriter ----------------------------------------------
    def construct(self, construction: cst.Call, attribute: Optional[str], guard: Optional[str] = None) -> Slot:
        """An inline ``@nn.compact`` construction becomes an attribute (built under
        ``guard``, a test on fields, when made in a branch)."""
        layer = self.layer(construction.func)
        assert layer is not None
        if len(layer.choices) > 1:
            raise Unconvertible(f"`{self.env.code(construction.func)}(...)(...)` outside a loop: a field that may hold "
                                f"{', '.join(layer.choices)}, whose Linen name depends on the class")
        attribute = self.reserved_names.pop(id(construction), None) \
            or self.module_name(construction, _type_name(layer))
        if attribute in self.field_names or attribute in self.params or attribute in self.variables:
            raise Unconvertible(f"the submodule name `{attribute}` collides with a field")
        if attribute in self.slots and guard is not None:  # ``constructs/branch_names.py``
            return twin_slot(self, attribute, construction, guard)
        slot = self._add_slot(attribute, construction)
        if guard is not None:
            self.slot_guards[attribute] = guard
        return slot

    def reserve_name(self, construction: cst.Call) -> None:
        """Linen numbers modules as Python creates them: in ``nn.Dense(4)(nn.Dense(8)(x))``
        the outer one first (the callee is evaluated before its argument), so its
        auto-name is taken when the rewriter reaches it, before the inner one's."""
        layer = self.layer(construction.func)
        if layer is not None and layer.factory is None and id(construction) not in self.reserved_names \
                and not any(arg_keyword(arg) == "name" for arg in construction.args):
            self.reserved_names[id(construction)] = self.auto_name(_type_name(layer))

    def auto_name(self, type_name: str) -> str:
        """The attribute for Linen's next automatic name of ``type_name`` (``Dense_2`` -> ``dense_2``)."""
        self.unsettled_names.check(self.env.module, type_name)
        count = self.auto_counters.get(type_name, 0)
        self.auto_counters[type_name] = count + 1
        return nnx_attribute_name(f"{type_name}_{count}")

    def module_name(self, construction: cst.Call, type_name: str) -> str:
        """Linen's name for a module built by ``construction``: its literal ``name=``,
        else the next automatic name of ``type_name``."""
        given = next((arg.value for arg in construction.args if arg_keyword(arg) == "name"), None)
        if given is None:
            return self.auto_name(type_name)
        name = string_literal(given)
        if not name:
            raise Unconvertible("`name=` must be a literal string")
        return identifier_name(name)  # ``norm-pre-head`` -> ``norm_pre_head``: the transplant maps it back

    def call_slot(self, slot: Slot, inputs: list[Shape], shapes: dict[str, Shape]) -> tuple[Shape, Optional[Mode]]:
        """Fixes the slot's NNX construction from the shapes it is called with;
        returns the output shape and, for user classes, the child's mode."""
        layer = self.layer(slot.construction.func)
        assert layer is not None
        first = inputs[0] if inputs else None
        mode = None
        stepped = stepped_cell(self, slot, layer.mapping, inputs, shapes) if layer.mapping is not None else None
        if stepped is not None:  # ``nn.LSTMCell(f)(carry, x)``: sized by both
            code, output = stepped
        elif layer.mapping is not None:
            input_size = self._input_size(layer.mapping, slot, first, shapes)
            code = self._layer_init(slot, layer.mapping, input_size, shapes)
            output = self._layer_output(layer.mapping, slot, first, shapes)
        elif layer.factory is not None:
            code, output = layer.factory.build(self, slot, inputs, shapes)
        elif layer.choices:
            code, output, mode = choice_init(self, slot, layer.choices, inputs, shapes)
        else:
            code, output, mode = self._child_init(slot, layer.user_class, inputs, shapes)  # type: ignore[arg-type]
        if slot.init_code is not None and slot.init_code != f"self.{slot.attribute} = {code}":
            raise Unconvertible(f"`self.{slot.attribute}` is called with inputs of different sizes")
        slot.init_code = f"self.{slot.attribute} = {code}"
        return output, mode

    def _child_init(self, slot: Slot, class_name: str, inputs: list[Shape], shapes: dict[str, Shape],
                    transform: Optional[str] = None) -> tuple[str, Shape, Optional[Mode]]:
        """The child's construction; ``transform``: the Linen lifted transform it is built under."""
        child_fields = [statement.body[0].target.value for statement in self.env.class_node(class_name).body.body
                        if self._is_field(statement)]  # type: ignore[union-attr]
        factories = factories_passed(self, slot.construction, child_fields)
        child = self.env.convert_class(class_name, inputs, factories)
        if child.layer_size_params:
            raise Unconvertible(f"uses `{class_name}`, whose input size `{child.layer_size_params[0]}` cannot be "
                                "worked out here")
        self.constant_flags |= child.constant_flags
        keep_bridged(self, class_name, child.bridged, transform)
        args = []
        values: dict[str, str] = {}
        inputs = with_axis_parameters(self, slot, child, inputs)  # sizes nothing here gives (last resort)
        for parameter, size in input_sizes(child, inputs, f"`{slot.attribute}` ({class_name})").items():
            args.append(size.code)
            values[parameter] = size.code
        field_values = {f.name: f.factory or f.default for f in child.fields}
        for index, arg in enumerate(slot.construction.args):
            keyword = arg_keyword(arg)
            if keyword == "name":
                continue
            if arg.star:
                raise Unconvertible(f"starred arguments to `{class_name}`")
            field_name = keyword or (child_fields[index] if index < len(child_fields) else None)
            factory = factory_of(self, arg.value) if field_name in factories else None
            code = factory.code if factory is not None else self.init_code(arg.value, shapes)
            if keyword is None:
                if index >= len(child.fields):
                    raise Unconvertible(f"too many arguments to `{class_name}`")
                field_values[child.fields[index].name] = code
                args.append(code)
            else:
                field_values[keyword] = code
                args.append(f"{keyword}={code}")
        if child.uses_rngs:
            args.append("rngs=rngs")
            self.uses_rngs = True
        values.update({name: code for name, code in field_values.items() if code is not None})
        values[BUILT] = f"self.{slot.attribute}"  # the size it stores (``constructs/built_output_size.py``)
        return f"{class_name}({', '.join(args)})", _in_parent_terms(child.output, values, inputs), child.mode


def _in_parent_terms(shape, values: dict[str, str], inputs: Sequence[Shape]):
    """A child's output shape, its own parameters replaced by what the parent passes.
    The child saw inputs of unknown rank: where the parent's inputs all have one
    known rank, its output keeps that rank (layers keep the leading axes; a flatten
    would have left the child's output unknown), with sizes unknown."""
    if isinstance(shape, Several):
        return Several(tuple(_in_parent_terms(part, values, inputs) for part in shape.parts))
    if shape is None:
        return None
    ranks = {len(given) for given in inputs if isinstance(given, tuple) and not is_open(given)}
    parent_terms = with_input_axes(shape, inputs, values)  # ``constructs/input_axes.py``
    if parent_terms is not None:
        return parent_terms
    if ANY_AXES in shape and len(ranks) == 1 and not any(is_open(given) for given in inputs
                                                          if isinstance(given, tuple)) \
            and keeps_input_rank(shape):
        leading = (None,) * (ranks.pop() - 1)
        shape = tuple(axis for part in shape for axis in (leading if part == ANY_AXES else (part,)))
    sizes = tuple(axis if axis is None or axis == ANY_AXES else substitute(axis.code, values) for axis in shape)
    return tuple(None if axis is not None and axis != ANY_AXES and BUILT in axis.code else axis for axis in sizes)


def _type_name(layer) -> str:
    """The type name Linen numbers a layer's modules by (``Dense`` for ``nn.Dense``, the class's
    name for a class of the file or, spelled ``layers.Block``, of another)."""
    if layer.bridged:  # Linen numbers it as its own class (``ConvLocal_0``)
        return layer.bridged
    if layer.subclass:  # ``StdConv_0``, spelled ``StdConv`` or ``models_resnet.StdConv``
        return layer.subclass.rpartition(".")[2]
    return layer.mapping.linen if layer.mapping else layer.user_class and layer.user_class.rpartition(".")[2]
