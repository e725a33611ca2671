"""The Linen classes of one file, converted one by one.

Each class is first converted on its own terms: its inputs of unknown rank, the
last axis of each a constructor parameter (``in_features``) that whoever builds
it passes -- a parent module the size it computed, an init site the example
input's.  So a block used at several input sizes is one class.  Only a class
whose conversion needs more than the last axis (a flatten, ``x.shape[1]``) is
converted for the concrete shapes it is called with, and then it must always be
called with the same ones.

A class that cannot be converted stays Linen, and so does everything tied to
it: a class that uses it, and a class it uses (a Linen module cannot hold an NNX
one).  Every class that stays gets its own reason.
"""

from __future__ import annotations

from typing import Optional, Sequence

import libcst as cst

from nnxlint.context import walk

from nnxlint.conversion.base import CarryUnknown, ConvertedClass, FactoryUnknown, FileEnv, Unconvertible
from nnxlint.conversion.constructs.layer_factory import LayerFactory
from nnxlint.conversion.classes import ClassConverter
from nnxlint.conversion.constructs.input_axes import convolution_rank, on_its_own
from nnxlint.conversion.shapes import is_open
from nnxlint.conversion.shapes import Several, Shape, Size, open_shape

_ANY_INPUTS = [open_shape(Size("?"))] * 16  # more than any ``__call__`` has


class ClassSet:
    def __init__(self, env: FileEnv) -> None:
        self.env = env
        self.converted: dict[str, ConvertedClass] = {}
        self.concrete_keys: dict[str, tuple] = {}  # classes converted for concrete shapes
        self.reasons: dict[str, str] = {}  # classes that stay Linen -> why
        self._open_failures: dict[str, str] = {}
        self._carry_cells: set[str] = set()  # cells whose carry only the RNN stepping them tells
        self._in_progress: list[str] = []
        self.factory_keys: dict[str, tuple] = {}  # classes converted for the layer factories a parent passes
        self._waiting: dict[str, str] = {}  # classes whose factories only a parent can tell -> why
        env.convert_class = self.child

    def on_their_own(self) -> "ClassSet":
        """A new set that keeps the conversions made on the classes' own terms (they do
        not depend on any init site) and forgets the rest."""
        fresh = ClassSet(self.env)
        own = [name for name in self.converted if name not in self.concrete_keys]
        fresh.converted = {name: self.converted[name] for name in own}
        fresh._open_failures = dict(self._open_failures)
        fresh._carry_cells = set(self._carry_cells)
        fresh.factory_keys = {name: key for name, key in self.factory_keys.items() if name in fresh.converted}
        self.env.custom_collections = {collection: type_name for collection, type_name
                                       in self.env.custom_collections.items()
                                       if any(type_name in self.env.code(fresh.converted[name].node)
                                              for name in own)}
        return fresh

    def convert(self, name: str, inputs: Optional[Sequence[Shape]] = None,
                factories: Optional[dict[str, LayerFactory]] = None) -> ConvertedClass:
        """The converted class; ``inputs``: the shapes it is called with, when known;
        ``factories``: the layers its parent passes to its module-valued fields."""
        if name in self.env.foreign_classes:  # another file's class: converted there
            return self.env.foreign_classes[name].convert(inputs, factories)
        key = _factory_key(factories)
        if name in self.converted:
            if self.factory_keys.get(name, ()) != key:
                raise Unconvertible(f"`{name}` is given layer factories of different kinds by its builders")
            return self._check_key(name, inputs)
        if name in self._in_progress:
            raise Unconvertible(f"`{name}` contains itself")
        self._in_progress.append(name)
        try:
            if not key:
                return self._convert(name, inputs)
            converted = self._convert_for_factories(name, inputs, factories)  # type: ignore[arg-type]
            self.factory_keys[name] = key
            return converted
        finally:
            self._in_progress.pop()

    def _convert_for_factories(self, name: str, inputs: Optional[Sequence[Shape]],
                               factories: dict[str, LayerFactory]) -> ConvertedClass:
        node = self.env.linen_classes[name]
        try:
            self.converted[name] = ClassConverter(self.env, node, _ANY_INPUTS, factories=factories).run()
        except Unconvertible:
            if not inputs or not any(inputs):
                raise
            inputs = _array_inputs(inputs)
            self.converted[name] = ClassConverter(self.env, node, inputs, factories=factories).run()
            self.concrete_keys[name] = _key(inputs)
        self._waiting.pop(name, None)
        return self.converted[name]

    def _convert(self, name: str, inputs: Optional[Sequence[Shape]]) -> ConvertedClass:
        node = self.env.linen_classes[name]
        if name not in self._open_failures:
            custom = dict(self.env.custom_collections)
            try:
                self.converted[name] = on_its_own(self.env, node, _ANY_INPUTS)  # (``constructs/input_axes.py``)
                if _unknown_output(self.converted[name].output):
                    self.converted[name] = self._with_convolution_rank(node, known_output=True) \
                        or self.converted[name]
                return self.converted[name]
            except Unconvertible as error:
                self._open_failures[name] = str(error)
                self.env.custom_collections = custom
                if isinstance(error, CarryUnknown):
                    self._carry_cells.add(name)
                elif isinstance(error, FactoryUnknown):
                    raise  # no input shape tells what a field builds
        # (a builder giving shapes of any rank gives what the class has on its own)
        if not inputs or not any(inputs) or all(isinstance(shape, tuple) and is_open(shape) for shape in inputs if shape):
            if name in self._carry_cells:  # waits for the RNN that steps it
                raise CarryUnknown(self._open_failures[name])
            if "input size" not in self._open_failures[name]:
                raise Unconvertible(self._open_failures[name])
            # nobody here gives its input: the sizes are the builder's to pass
            self.converted[name] = self._with_convolution_rank(node) or self._with_layer_sizes(name, node)
            return self.converted[name]
        inputs = _array_inputs(inputs)
        self.converted[name] = ClassConverter(self.env, node, inputs).run()
        self.concrete_keys[name] = self._key(name, inputs)
        return self.converted[name]

    def _key(self, name: str, inputs: Sequence[Shape]) -> tuple:
        """What a concrete conversion depends on: the shapes, or a cell's carry structure
        alone (its sizes are parameters every builder passes)."""
        return _carry_structure(inputs) if name in self._carry_cells else _key(inputs)

    def _with_convolution_rank(self, node: cst.ClassDef, known_output: bool = False) -> Optional[ConvertedClass]:
        """A class on its own whose first input goes through convolutions of ``k`` spatial
        axes (``constructs/input_axes.py``): converted for that input with ``k + 2`` axes
        (a batch, the spatial axes, the features), the rank its convolutions read, when
        that gives every layer its input size (a flatten after them) or, with
        ``known_output``, the size of its output, which it flattens (jaxrl's DrQ
        ``Encoder``: its builders size their next layer from it)."""
        ranked = convolution_rank(self.env, node)
        if ranked is None:
            return None
        index, rank = ranked
        inputs = list(_ANY_INPUTS)
        inputs[index] = (None,) * (rank - 1) + (Size("?"),)
        converted = self._on_its_own_or_none(node, inputs)
        if converted is None or known_output and _unknown_output(converted.output):
            return None
        converted.assumed_rank, converted.assumed_input = rank, index
        return converted

    def _with_layer_sizes(self, name: str, node: cst.ClassDef) -> ConvertedClass:
        """Last resort for a class on its own: a layer input size nothing inside it gives
        (a flatten after convolutions) becomes a constructor parameter (``hidden_in_features``)."""
        converted = self._on_its_own_or_none(node, _ANY_INPUTS, layer_sizes=True)
        if converted is None:
            raise Unconvertible(self._open_failures[name])
        return converted

    def _on_its_own_or_none(self, node: cst.ClassDef, inputs: list,
                            layer_sizes: bool = False) -> Optional[ConvertedClass]:
        """``on_its_own``, or None when it fails (the collections it registered forgotten)."""
        custom = dict(self.env.custom_collections)
        try:
            return on_its_own(self.env, node, inputs, layer_sizes=layer_sizes)
        except Unconvertible:
            self.env.custom_collections = custom
            return None

    def _check_key(self, name: str, inputs: Optional[Sequence[Shape]]) -> ConvertedClass:
        if name in self.concrete_keys and (inputs is None or self._key(name, _array_inputs(inputs))
                                           != self.concrete_keys[name]):
            raise Unconvertible(f"`{name}` is used with inputs of different shapes "
                                f"(on its own: {self._open_failures[name]})")
        return self.converted[name]

    def child(self, name: str, inputs: Sequence[Shape],
              factories: Optional[dict[str, LayerFactory]] = None) -> ConvertedClass:
        """A class a parent builds: its failure is the parent's, named."""
        try:
            return self.convert(name, inputs, factories)
        except Unconvertible as error:
            if str(error).startswith("uses `"):
                raise
            raise Unconvertible(f"uses `{name}`, which cannot be converted: {error}") from None

    def try_convert(self, name: str, inputs: Optional[Sequence[Shape]] = None) -> bool:
        try:
            self.convert(name, inputs)
            return True
        except FactoryUnknown as error:  # a parent tried later may tell
            self._waiting[name] = str(error)
            return False
        except Unconvertible as error:
            self.reasons.setdefault(name, str(error))
            return False

    def builders_first(self, names) -> list[str]:
        """``names`` with the classes no other class of the file builds first: a block whose
        input rank only its builder tells (``constructs/input_axes.py``) is converted for
        the shapes the builder gives it, before it is tried on its own."""
        built = {child for name, node in self.env.linen_classes.items()
                 for child in _class_names_in(node, set(self.env.linen_classes) - {name})}
        return sorted(names, key=lambda name: name in built)

    def keep_linen(self, name: str, reason: str) -> None:
        self.reasons.setdefault(name, reason)
        self.converted.pop(name, None)

    def _linen_builder(self, name: str) -> Optional[tuple[str, str]]:
        """A class staying Linen that the file gives ``name`` through a field
        (``partial(ResNet, block_cls=ResNetBlock)``): (that class, the field)."""
        for node in walk(self.env.module):
            if isinstance(node, cst.Call) and node.args and isinstance(node.args[0].value, cst.Name) \
                    and node.args[0].value.value in self.reasons:
                for arg in node.args[1:]:
                    if arg.keyword is not None and isinstance(arg.value, cst.Name) and arg.value.value == name:
                        return node.args[0].value.value, arg.keyword.value
        return None

    def close_over_uses(self) -> None:
        """A class that stays Linen keeps the classes it uses, and those that use it, Linen."""
        uses = {name: _class_names_in(node, set(self.env.linen_classes) - {name})
                for name, node in self.env.linen_classes.items()}
        changed = True
        while changed:
            changed = False
            for name in list(self.env.linen_classes):
                if name in self.reasons:
                    continue
                kept_child = next((c for c in sorted(uses[name]) if c in self.reasons), None)
                kept_parent = next((p for p in sorted(self.reasons) if name in uses[p]), None)
                if kept_child is not None:
                    self.keep_linen(name, f"uses `{kept_child}`, which stays Linen: {self.reasons[kept_child]}")
                    changed = True
                elif kept_parent is not None:
                    self.keep_linen(name, f"`{kept_parent}` uses it and stays Linen: {self.reasons[kept_parent]}")
                    changed = True
        for name, reason in self._waiting.items():  # no parent told what their fields build
            if name not in self.converted:
                builder = self._linen_builder(name)
                self.reasons.setdefault(name, reason if builder is None else (
                    f"`{builder[0]}` builds it (`{builder[1]}={name}`) and stays Linen: {self.reasons[builder[0]]}"))


def _array_inputs(inputs: Sequence[Shape]) -> list[Shape]:
    inputs = list(inputs)
    while inputs and inputs[-1] is None:  # flags and other non-array arguments
        inputs.pop()
    return inputs


def _factory_key(factories: Optional[dict[str, LayerFactory]]) -> tuple:
    return tuple(sorted((name, factory.key()) for name, factory in (factories or {}).items()))


def _unknown_output(shape) -> bool:
    """Whether a class's output (one array) has no known feature size."""
    return shape is None or (isinstance(shape, tuple) and (not shape or shape[-1] is None))


def _key(inputs: Sequence[Shape]) -> tuple:
    return tuple(_shape_key(shape) for shape in inputs)


def _carry_structure(inputs: Sequence[Shape]) -> tuple:
    return tuple(_carry_structure(shape.parts) if isinstance(shape, Several) else None for shape in inputs)


def _shape_key(shape: Shape) -> Optional[tuple]:
    if isinstance(shape, Several):  # a cell's carry
        return tuple(_shape_key(part) for part in shape.parts)
    return None if shape is None else tuple(axis.value if axis else None for axis in shape[1:-1])


def _class_names_in(node: cst.CSTNode, candidates: set[str]) -> set[str]:
    """The candidates named in ``node`` (not as an attribute: ``x.Block`` is not ``Block``)."""
    attributes = {id(child.attr) for child in walk(node) if isinstance(child, cst.Attribute)}
    return {child.value for child in walk(node)
            if isinstance(child, cst.Name) and child.value in candidates and id(child) not in attributes}
