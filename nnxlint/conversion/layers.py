"""Flax layers of the table in ``linen_map.py``: their NNX construction (with the
input size Linen infers) and the shape they return.  A mixin of ``ClassConverter``."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.conversion.base import Layer, Slot, Unconvertible, arg_keyword, self_attribute
from nnxlint.conversion.constructs import FACTORIES
from nnxlint.conversion.constructs.class_field import class_choices
from nnxlint.conversion.constructs.layer_factory import layer_call_values
from nnxlint.conversion.constructs.keyword_dict import spread
from nnxlint.conversion.constructs.gru import nnx_layer
from nnxlint.conversion.constructs.linen_bridge import bridged_construction
from nnxlint.conversion.constructs.param_override import check_construction, param_override
from nnxlint.conversion.constructs.input_axes import resized
from nnxlint.conversion.linen_map import BRIDGED_LAYERS, LAYERS, LayerMapping
from nnxlint.conversion.shapes import ANY_AXES, Shape, Size, open_shape, int_literal, int_tuple, string_literal, varying_window_output, \
    window_output


_LAST_AXIS_IS_FEATURES = ("Dense", "Conv", "Embed")


class LayerConstruction:
    """Flax layers: which one a construction call makes, its NNX construction and its output shape."""

    # -- layers ----------------------------------------------------------------
    def layer(self, func: cst.BaseExpression) -> Optional[Layer]:
        attribute = self_attribute(func)
        made_by = self.layer_factories.get(func.value if isinstance(func, cst.Name) else f"self.{attribute}") \
            if isinstance(func, cst.Name) or attribute is not None else None
        if made_by is not None:
            return Layer(made_by.mapping, None, made_by=made_by, subclass=made_by.subclass)  # ``StdConv_0``
        if attribute is not None and attribute in self.field_names:
            if attribute not in self.class_choices:  # the file's module classes the field may hold
                self.class_choices[attribute] = class_choices(self, func)
            if self.class_choices[attribute]:
                return Layer(None, self.class_choices[attribute][0], choices=self.class_choices[attribute])
        member = self.env.linen_member(func)
        if member is not None:
            if member in LAYERS:
                return Layer(LAYERS[member], None)
            if member in FACTORIES:
                return Layer(None, None, factory=FACTORIES[member])
            if member in BRIDGED_LAYERS:
                return Layer(LAYERS[BRIDGED_LAYERS[member]], None, bridged=member)
            if member[:1].isupper():
                raise Unconvertible(f"`nn.{member}` has no conversion yet")
            return None
        if isinstance(func, cst.Name) and func.value in self.env.linen_classes:
            binding = self.env.scope.lookup(func.value)
            if binding is not None and binding.node is self.env.linen_classes[func.value]:
                return Layer(None, func.value)
        if self.env.foreign_classes and isinstance(func, (cst.Name, cst.Attribute)) \
                and self.env.code(func) in self.env.foreign_classes:
            return Layer(None, self.env.code(func))
        override = param_override(self.env, func)  # ``class StdConv(nn.Conv)`` overriding ``param``
        if override is not None:
            return Layer(LAYERS[override.layer], None, subclass=override.name)
        return None

    def construction_args(self, construction: cst.Call,
                          mapping: LayerMapping) -> tuple[dict[str, cst.BaseExpression], list[str]]:
        """Linen constructor arguments by Linen name, and which were positional; a ``**``
        of a choice of dicts is checked here and given by ``passed_sometimes``."""
        values: dict[str, cst.BaseExpression] = {}
        positional: list[str] = []
        for index, arg in enumerate(construction.args):
            if arg.star:
                spread(arg, mapping)
                continue
            keyword = arg_keyword(arg)
            if keyword is None:
                if index >= len(mapping.linen_positional):
                    raise Unconvertible(f"too many positional arguments to `nn.{mapping.linen}`")
                keyword = mapping.linen_positional[index]
                positional.append(keyword)
            values[keyword] = arg.value
        return values, positional

    @staticmethod
    def passed_sometimes(construction: cst.Call, mapping: LayerMapping) -> Optional[cst.BaseExpression]:
        """``({...} if self.flag else {})`` of a ``**`` in the call: the keywords it passes
        only sometimes (``constructs/keyword_dict.py``)."""
        return next((spread(arg, mapping) for arg in construction.args if arg.star), None)

    def _layer_init(self, slot: Slot, mapping: LayerMapping, input_size: Optional[Size],
                    shapes: dict[str, Shape]) -> str:
        values, positional = self.construction_args(slot.construction, mapping)
        values.pop("name", None)
        starred = self.passed_sometimes(slot.construction, mapping)
        layer = self.layer(slot.construction.func)
        if layer.bridged:  # type: ignore[union-attr]
            return bridged_construction(self, slot, layer.bridged, shapes)  # type: ignore[union-attr]
        made_by = layer.made_by  # type: ignore[union-attr]
        if made_by is not None:
            layer_call_values(made_by, values)
        for keyword in values:
            self.check_layer_keyword(mapping, keyword)
        subclass = layer.subclass or (made_by.subclass if made_by is not None else None)  # type: ignore[union-attr]
        if subclass:
            check_construction(subclass, {**values, **(made_by.preset if made_by is not None else {})})
        flag = values.pop(mapping.mode_flag, None) if mapping.mode_flag else None
        if flag is not None:
            constant = self.mode_use(flag, True)
            if constant is None:
                self.mode_consumed += 1
            else:
                values[mapping.mode_flag] = flag  # a constant stays as it was
                self.constant_flags = True
        for keyword in ("axis", "feature_axes"):  # the input size is read from the last axis
            if mapping.linen == "DenseGeneral":
                break  # its contracted axes give its input size (``_input_size``)
            if keyword in values and int_literal(values[keyword]) != -1 and mapping.input_size:
                raise Unconvertible(f"`nn.{mapping.linen}({keyword}=...)` on an axis other than the last")
        nnx_values: dict[str, str] = {}
        nnx_positional: set[str] = set()
        if mapping.input_size:
            if input_size is None:
                input_size = self.layer_size_parameter(slot)  # type: ignore[attr-defined]
            if input_size is None:
                raise Unconvertible(f"the input size of `{slot.attribute}` ({mapping.linen}) "
                                    "cannot be determined statically")
            nnx_values[mapping.input_size] = input_size.code
            nnx_positional.add(mapping.input_size)
        for linen_name, value in values.items():
            nnx_name = mapping.renamed.get(linen_name, linen_name)
            nnx_values[nnx_name] = self.init_code(value, shapes)
            if linen_name in positional or linen_name == mapping.output_size:
                nnx_positional.add(nnx_name)
        for name, code in mapping.added.items():
            nnx_values.setdefault(name, code)
        sizes = [mapping.input_size, mapping.renamed.get(mapping.output_size or "", mapping.output_size)]
        last_size = max((mapping.nnx_positional.index(n) for n in sizes if n in mapping.nnx_positional), default=-1)
        nnx_positional.update(mapping.nnx_positional[:last_size + 1])  # ``(num_heads, in_features, ...)``
        parts: list[str] = []
        for name in mapping.nnx_positional:  # positional while contiguous
            if name not in nnx_values or name not in nnx_positional:
                break
            parts.append(nnx_values.pop(name))
        parts += [f"{name}={code}" for name, code in nnx_values.items()]
        if starred is not None:
            parts.append(f"**{self.init_code(starred, shapes)}")
        parts.append("rngs=rngs")
        self.uses_rngs = True
        function = made_by.code if made_by is not None else layer.subclass or nnx_layer(self.env, mapping.linen, mapping.nnx)
        return f"{function}({', '.join(parts)})"

    def check_layer_keyword(self, mapping: LayerMapping, keyword: str) -> None:
        """A Linen layer argument that NNX has no exact form for gets no fix."""
        if keyword in mapping.no_equivalent:
            raise Unconvertible(f"`nn.{mapping.linen}({keyword}=...)` has no NNX equivalent")

    def _layer_output(self, mapping: LayerMapping, slot: Slot, input_shape: Shape,
                      shapes: dict[str, Shape]) -> Shape:
        values, _ = self.construction_args(slot.construction, mapping)
        made_by = self.layer(slot.construction.func).made_by  # type: ignore[union-attr]
        for keyword, value in (made_by.preset.items() if made_by is not None else ()):
            values.setdefault(keyword, value if value is not None else cst.Name("unknown"))  # a parent's value
        if input_shape is None:  # Dense, Conv and Embed keep the leading axes, whatever they are
            if mapping.linen in _LAST_AXIS_IS_FEATURES and "features" in values:
                return open_shape(self.size_of(values["features"], shapes))
            return None
        if mapping.linen == "Embed":
            return input_shape + (self.size_of(values["features"], shapes),)
        if mapping.linen == "DenseGeneral":  # the contracted axes give way to the features
            return input_shape[:len(input_shape) - len(self._contracted_axes(values))] + self._features(values)
        last: Optional[Size] = input_shape[-1]
        if mapping.output_size and mapping.output_size in values:
            last = self.size_of(values[mapping.output_size], shapes)
        leading = input_shape[:-1]
        if mapping.linen in ("Conv",):
            leading = self._conv_spatial(values, leading, shapes)
        elif mapping.linen in ("ConvTranspose", "LSTMCell", "GRUCell"):
            return tuple(resized(axis) for axis in leading) + (last,) \
                if ANY_AXES in leading and mapping.linen == "ConvTranspose" else None
        return tuple(leading) + (last,)

    def _input_size(self, mapping: LayerMapping, slot: Slot, shape: Shape,
                    shapes: dict[str, Shape]) -> Optional[Size]:
        """The size a layer reads from its input: the last axis, or DenseGeneral's
        contracted axes (their sizes as a tuple when there are several)."""
        size = self._read_input_size(mapping, slot, shape)
        if size is None:
            return slot.input_size  # type: ignore[return-value]
        slot.input_size = size
        return size

    def _read_input_size(self, mapping: LayerMapping, slot: Slot, shape: Shape) -> Optional[Size]:
        if not shape:
            return None
        if mapping.linen != "DenseGeneral":
            return shape[-1]
        axes = self._contracted_axes(self.construction_args(slot.construction, mapping)[0])
        if len(axes) >= len(shape):
            raise Unconvertible(f"`{slot.attribute}` (DenseGeneral) contracts the batch axis")
        sizes = [shape[axis] for axis in axes]
        if any(size is None or size == ANY_AXES for size in sizes):
            return None
        return sizes[0] if len(sizes) == 1 else Size(f"({', '.join(size.code for size in sizes)})")  # type: ignore

    @staticmethod
    def _contracted_axes(values: dict[str, cst.BaseExpression]) -> tuple[int, ...]:
        """DenseGeneral's ``axis``: the last axes, counted from the end."""
        node = values.get("axis")
        axes = (-1,) if node is None else int_tuple(node, 1) if int_literal(node) is not None else int_tuple(node, 0)
        if not axes or tuple(sorted(axes)) != tuple(range(-len(axes), 0)):
            raise Unconvertible("`nn.DenseGeneral(axis=...)` other than the last axes counted from the end "
                                "(`-1`, `(-2, -1)`, ...)")
        return axes

    def _features(self, values: dict[str, cst.BaseExpression]) -> tuple[Size, ...]:
        """DenseGeneral's ``features``: an int or a tuple of ints, known to be ints
        (a field holding a tuple would pass for one size)."""
        node = values.get("features")
        elements = [element.value for element in node.elements] if isinstance(node, (cst.Tuple, cst.List)) \
            else [node]
        sizes = []
        for element in elements:
            attribute = self_attribute(element) if element is not None else None
            if element is not None and int_literal(element) is not None:
                sizes.append(Size.number(int_literal(element)))  # type: ignore[arg-type]
            elif attribute and any(f.name == attribute and f.annotation == "int" for f in self.fields):
                sizes.append(Size(attribute))
            else:
                raise Unconvertible("`nn.DenseGeneral(features=...)` that is not an int or a tuple of ints "
                                    "(literals or `int` fields)")
        return tuple(sizes)

    def size_of(self, node: cst.BaseExpression, shapes: dict[str, Shape]) -> Size:
        code = self.init_code(node, shapes)
        value = int_literal(node)
        return Size(code, value)

    def _conv_spatial(self, values: dict[str, cst.BaseExpression], leading: tuple, shapes: dict[str, Shape]) -> tuple:
        """The axes before the features after a Conv: the kernel's rank decides how
        many of the last ones are convolved (an int kernel size is a 1-D kernel),
        the ones before them are batch axes."""
        if ANY_AXES in leading:  # spatial axes of unknown number stay so, of other sizes than the input's
            return tuple(resized(axis) for axis in leading)
        kernel_node = values.get("kernel_size")
        kernel = int_tuple(kernel_node, 1) if int_literal(kernel_node or cst.Name("x")) is not None \
            else int_tuple(kernel_node, 0)
        if kernel is None or not 0 < len(kernel) < len(leading):
            return (None,) * len(leading)
        rank = len(kernel)
        strides = int_tuple(values.get("strides", cst.Integer("1")), rank)
        padding = string_literal(values.get("padding", cst.SimpleString("'SAME'")))
        batch, spatial = leading[:-rank], leading[-rank:]
        if any(name in values for name in ("input_dilation", "kernel_dilation")):
            return batch + (None,) * rank
        if strides is None or len(strides) != rank or padding is None:
            varying = self._varying_window(values, rank, shapes)
            if varying is None:
                return batch + (None,) * rank
            strides_by_name, padding_by_name = varying
            return batch + tuple(varying_window_output(size, k, s, padding_by_name)
                                 for size, k, s in zip(spatial, kernel, strides_by_name))
        return batch + tuple(window_output(size, k, s, padding) for size, k, s in zip(spatial, kernel, strides))

    def _varying_window(self, values: dict[str, cst.BaseExpression], rank: int,
                        shapes: dict[str, Shape]) -> Optional[tuple[tuple[Size, ...], object]]:
        """Strides and padding that ``__init__`` knows by name (``strides=(stride, stride)``
        in a loop over a field, ``padding=self.padding`` of a field annotated ``str``), in its
        terms; None when they are anything else."""
        node = values.get("strides", cst.Integer("1"))
        elements = [element.value for element in node.elements] if isinstance(node, (cst.Tuple, cst.List)) \
            else None
        numbers = int_tuple(node, rank)
        padding_node = values.get("padding", cst.SimpleString("'SAME'"))
        padding: object = string_literal(padding_node)
        field = self_attribute(padding_node)
        try:
            if numbers is not None and len(numbers) == rank:
                strides = tuple(Size.number(number) for number in numbers)
            elif elements is not None and len(elements) == rank:
                strides = tuple(self.size_of(element, shapes) for element in elements)
            else:
                return None
            if padding is None:
                if not (field and any(f.name == field and f.annotation == "str" for f in self.fields)):
                    return None
                padding = self.size_of(padding_node, shapes)
        except Unconvertible:
            return None
        return strides, padding

