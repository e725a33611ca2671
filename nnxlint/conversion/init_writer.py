"""Writing a converted class's ``__init__``: the code of its layer arguments in
``__init__`` terms (``self.width`` -> ``width``, ``x.shape[-1]`` -> the size, Linen
functions -> NNX ones) and the ``__init__`` itself (fields, submodules in creation
order, parameters, its signature with the input sizes it takes).  A mixin of
``classes.ClassConverter``, whose state it reads.
"""

from __future__ import annotations

import re
from typing import Optional

import libcst as cst

from nnxlint.conversion.base import IDENTIFIER, Slot, Unconvertible, self_attribute, size_name
from nnxlint.conversion.constructs import FACTORIES
from nnxlint.conversion.constructs.branch_module import guarded
from nnxlint.conversion.constructs.built_output_size import ATTRIBUTE as STORED_ATTRIBUTE, stored_output_size
from nnxlint.conversion.constructs.dataclass_field import factory_lines
from nnxlint.conversion.constructs.input_axes import unranked_note
from nnxlint.conversion.constructs.partitioning import is_partitioning, partitioned_init
from nnxlint.conversion.constructs.loop_stack import without_unread_sizes
from nnxlint.conversion.linen_map import LAYERS, PARTITIONING, STATELESS_FUNCTIONS
from nnxlint.conversion.constructs.value_dtype import dtype_read
from nnxlint.conversion.shapes import ANY_AXES, SIMPLE_CODE, Bindings, Several, Shape, Size, int_literal, is_open

# Linen names the conversion handles where they appear (decorators, initializers)
_CONVERTED_ELSEWHERE = ("compact", "initializers")


class InitWriter:
    """``ClassConverter``'s ``__init__`` code."""

    def init_code(self, node: cst.BaseExpression, shapes: dict[str, Shape]) -> str:
        """``node`` rewritten for ``__init__``: ``self.field`` -> ``field``,
        ``x.shape[-1]`` -> its size, Linen functions -> NNX ones."""
        converter = self
        sizes: dict[int, Size] = {}
        partitioning: set[int] = set()  # ``nn.with_logical_partitioning`` called: converted with its call
        dtypes: dict[int, str] = {}  # ``x.dtype`` known in ``__init__`` (``constructs/value_dtype.py``)
        known_dtypes = shapes.dtypes if isinstance(shapes, Bindings) else {}

        class Translate(cst.CSTTransformer):
            def visit_Attribute(self, node: cst.Attribute) -> bool:
                dtype = dtype_read(known_dtypes, node)
                if dtype is not None:
                    dtypes[id(node)] = dtype
                return dtype is None  # ``x.dtype`` reads no value of ``x``

            def leave_Attribute(self, original_node, updated_node):
                if id(original_node) in dtypes:
                    return cst.parse_expression(dtypes[id(original_node)])
                if id(original_node) in partitioning:
                    return updated_node
                attribute = self_attribute(original_node)
                if attribute in converter.slots or attribute in converter.class_attributes \
                        or attribute in converter.setup_values:
                    return updated_node  # a submodule passed on, built before (``setup_code.py``); a class
                    # attribute; a plain value ``setup`` set (``setup_values.py``)
                if attribute is not None:
                    if attribute not in converter.field_names:
                        raise Unconvertible(f"`self.{attribute}` is used where the NNX `__init__` needs it")
                    return cst.Name(attribute)
                return converter.nnx_reference(original_node, updated_node)

            def leave_Name(self, original_node, updated_node):
                if original_node.value in converter.aliases:  # ``config = self.config`` in ``__call__``
                    alias = converter.aliases[original_node.value]
                    value = cst.parse_expression(alias)
                    wrapped = SIMPLE_CODE.fullmatch(alias) or value.lpar or isinstance(
                        value, (cst.Attribute, cst.Subscript, cst.Call))
                    return value if wrapped else cst.parse_expression(f"({alias})")
                if original_node.value in shapes:
                    raise Unconvertible(f"a layer argument depends on `{original_node.value}`, "
                                        f"a value computed in `__call__`{unranked_note(converter)}")
                return converter.nnx_reference(original_node, updated_node)

            def visit_Call(self, node: cst.Call) -> None:
                if converter.layer(node.func) is not None:
                    raise Unconvertible("a submodule inside a list, dict or expression is not converted")
                if is_partitioning(converter, node):
                    partitioning.add(id(node.func))

            def leave_Call(self, original_node, updated_node):
                return partitioned_init(converter, original_node, updated_node)

            def visit_Subscript(self, node) -> bool:
                size = converter._shape_axis(node, shapes)
                if size is not None:
                    sizes[id(node)] = size
                return size is None  # ``x.shape[-1]`` reads no value of ``x``

            def leave_Subscript(self, original_node, updated_node):
                if id(original_node) in sizes:
                    return cst.parse_expression(sizes[id(original_node)].operand())
                return updated_node

        return self.env.code(node.visit(Translate()))

    def nnx_reference(self, original, updated):
        replacement = self.env.nnx_function(original)
        if replacement is not None:
            return cst.parse_expression(replacement)
        member = self.env.linen_member(original)
        known = member in LAYERS or member in FACTORIES or member in _CONVERTED_ELSEWHERE or member in PARTITIONING \
            or member in STATELESS_FUNCTIONS or id(original) in self.bridged_names
        if member is not None and not known and "." not in member:
            raise Unconvertible(f"`nn.{member}` has no conversion")
        return updated

    def _shape_axis(self, node: cst.Subscript, shapes: dict[str, Shape]) -> Optional[Size]:
        """The size for ``x.shape[i]`` (or ``input_shape[i]`` after ``input_shape = x.shape``)
        when ``x``'s shape is known."""
        value = node.value
        if not (len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index)):
            return None
        if isinstance(value, cst.Name) and value.value in self.shape_aliases:  # ``constructs/input_axes.py``
            shape = self.shape_aliases[value.value]
        elif isinstance(value, cst.Attribute) and value.attr.value == "shape" and isinstance(value.value, cst.Name):
            shape = shapes.get(value.value.value)
        else:
            return None
        index = int_literal(node.slice[0].slice.value)
        if isinstance(shape, tuple) and is_open(shape) and index is not None and index >= 0:
            self.unranked_read = self.env.code(node)  # from the front of axes of unknown number (``input_axes.py``)
        if shape is None or isinstance(shape, Several) or index is None or not -len(shape) <= index < len(shape):
            return None
        if is_open(shape) and (index >= 0 or ANY_AXES in shape[index:]):
            return None  # counted across axes of unknown number
        return shape[index]

    def _build_init(self, methods: dict[str, cst.FunctionDef]) -> cst.FunctionDef:
        read_fields = set()

        class Reads(cst.CSTVisitor):
            def visit_Attribute(inner, node: cst.Attribute) -> None:
                attribute = self_attribute(node)
                if attribute is not None:
                    read_fields.add(attribute)

        for method in methods.values():
            method.visit(Reads())
        known = self.field_names | set(self.slots) | set(self.params) | set(self.variables) | set(methods) \
            | set(self.class_attributes) | self.setup_values | set(self.rng_streams) | set(self.param_aliases) | {"sow"}  # a ``self.sow`` left in a method is NNX's (constructs/sow.py)
        unknown = sorted(read_fields - known)
        if unknown:  # Linen's own API (`self.is_initializing()`, `self.scope`, ...) has no NNX twin
            raise Unconvertible(f"`self.{unknown[0]}` is Linen Module API the conversion does not know")
        lines = factory_lines(self.fields, self.env.module.default_indent)
        lines += [f"self.{f.name} = {f.name}" for f in self.fields if f.name in read_fields]
        lines += self.init_lines
        lines += [guarded(self.slots[attribute].init_code, self.slot_guards.get(attribute),  # type: ignore[arg-type]
                          self.env.module.default_indent, self.slot_alternatives.get(attribute)
                          or getattr(self.slot_twins.get(attribute), "init_code", None))
                  for attribute in self.slot_order]
        lines += list(self.params.values())
        lines += list(self.variables.values())
        lines += list(self.rng_streams.values())
        lines += self.display_lines
        self.stored_output = stored_output_size(self)
        if self.stored_output is not None:
            lines.append(f"self.{STORED_ATTRIBUTE} = {self.stored_output}")
        lines = without_unread_sizes(lines, self.running_axes)  # ``constructs/loop_stack.py``
        used_text = "\n".join(lines)
        self.size_params = {name: index for name, index in self._size_names().items()
                            if re.search(rf"\b{name}\b(?!\s*=[^=])", used_text)}  # not a keyword
        signature = ["self"] + [f"{name}: int" for name in [*self.size_params, *self.layer_size_params]]
        for param in self.fields:
            text = param.name + (f": {param.annotation}" if param.annotation else "")
            signature.append(text + (f" = {param.default}" if param.default is not None else ""))
        if self.uses_rngs:
            signature += ["*", f"rngs: {self.env.nnx}.Rngs"]
        indent = self.env.module.default_indent
        newline = self.env.module.default_newline
        body = "".join(f"{indent}{physical}{newline}" for line in lines for physical in line.split("\n")) \
            or f"{indent}pass{newline}"
        text = f"def __init__({', '.join(signature)}):{newline}{body}"
        return cst.parse_statement(text, config=self.env.module.config_for_parsing)  # type: ignore[return-value]

    def layer_size_parameter(self, slot: Slot) -> Optional[Size]:
        """``hidden_in_features`` for the layer ``self.hidden`` whose input size is unknown,
        when the class may take it as a constructor parameter."""
        name = f"{slot.attribute}_in_features"
        if not self.layer_sizes or not IDENTIFIER.fullmatch(name) or name in self.field_names:
            return None
        if name not in self.layer_size_params:
            self.layer_size_params.append(name)
        return Size(name)

    def _size_names(self) -> dict[str, int]:
        return {**{size_name(name, index, self.field_names): index for name, index in self._call_param_index.items()}, **self.graph_sizes,
                **{name: index for name, (index, _, _) in self.axis_sizes.items()}}
