"""Layer factories: ``functools.partial`` of a Flax layer, and module-valued fields.

Linen code often fixes some arguments of a layer once and builds several
layers from the result, in the module itself or in the blocks it builds::

    class Block(nn.Module):
        conv: ModuleDef          # filled by the parent
        norm: ModuleDef

        @nn.compact
        def __call__(self, x):
            return self.norm()(self.conv(self.filters, (3, 3))(x))

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            conv = partial(nn.Conv, use_bias=False)
            norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
            x = conv(8, (3, 3), name='stem')(x)
            return Block(8, conv=conv, norm=norm)(x)

NNX builds layers in ``__init__`` with their input size first, so the partial
moves there, over the NNX layer, and every layer built from it gets the input
size Linen inferred::

    conv = partial(nnx.Conv, use_bias=False)
    norm = partial(nnx.BatchNorm, momentum=0.9)      # the train flag: model.train()/eval()
    self.stem = conv(in_features, 8, (3, 3), rngs=rngs)
    self.block_0 = Block(8, 8, conv=conv, norm=norm, rngs=rngs)

and the block calls what it is given the same way
(``self.conv_0 = conv(in_features, filters, (3, 3), rngs=rngs)``).  Linen names
a module built through a factory by the layer's class (``Conv_0``,
``BatchNorm_1``), so the attributes are named as for the layer itself and
``nnxlint.transplant`` needs no name map.

Converted where the conversion knows which layer a factory builds: a partial
of a Flax layer of the table, of a subclass overriding its ``param`` (BiT's
``partial(StdConv, use_bias=False)``, converted as the NNX subclass) or of a factory it knows, with keyword arguments
only, bound once under ``@nn.compact`` outside loops and branches; a field whose
default is a Flax layer (``conv: ModuleDef = nn.Conv``); a field the parent
fills with one of those (the class is then converted for the layers its parent
passes, and every parent must pass the same kinds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible, self_attribute
from nnxlint.conversion.constructs.gru import nnx_layer
from nnxlint.conversion.constructs.param_override import param_override
from nnxlint.conversion.linen_map import LAYERS, LayerMapping

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter

_PARTIAL = "functools.partial"


@dataclass(frozen=True)
class LayerFactory:
    """What a factory builds: the layer, the keywords it fixes, and how ``__init__`` calls it."""

    mapping: LayerMapping
    code: str  # ``conv``: the ``__init__`` local or parameter holding the NNX factory
    # Linen keyword -> value the factory fixes; values of a factory made in another
    # class are None (not in this class's terms)
    preset: Mapping[str, Optional[cst.BaseExpression]] = field(default_factory=dict)
    subclass: Optional[str] = None  # a ``param``-overriding subclass of the layer (``constructs/param_override.py``)

    def key(self) -> tuple:
        """What a class converted for this factory depends on (the keywords it fixes, and
        the literal values among them)."""
        return self.mapping.linen, tuple(sorted(
            (keyword, cst.Module([]).code_for_node(value) if _literal(value) else "")  # type: ignore[arg-type]
            for keyword, value in self.preset.items()))

    def passed_on(self, code: str) -> "LayerFactory":
        """The same factory as another class receives it, through its field ``code``: the
        fixed values that read nothing (``padding='SAME'``) keep their meaning there."""
        return LayerFactory(self.mapping, code, {keyword: value if _literal(value) else None
                                                 for keyword, value in self.preset.items()}, self.subclass)


def _literal(node: Optional[cst.BaseExpression]) -> bool:
    """A string, a number or a tuple/list of them: the same value in any class."""
    if isinstance(node, (cst.Tuple, cst.List)):
        return all(_literal(element.value) for element in node.elements)
    return isinstance(node, (cst.SimpleString, cst.Integer, cst.Float))


def factory_of(converter: "ClassConverter", node: cst.BaseExpression) -> Optional[LayerFactory]:
    """The factory ``node`` names: a local partial, a factory field, or a Flax layer class."""
    if isinstance(node, cst.Name) and node.value in converter.layer_factories:
        return converter.layer_factories[node.value]
    attribute = self_attribute(node)
    if attribute is not None:
        return converter.layer_factories.get(f"self.{attribute}")
    member = converter.env.linen_member(node)
    if member in LAYERS:
        return LayerFactory(LAYERS[member], nnx_layer(converter.env, member, LAYERS[member].nnx))
    override = param_override(converter.env, node)  # ``partial(StdConv, use_bias=False)``
    if override is not None:
        return LayerFactory(LAYERS[override.layer], override.name, subclass=override.name)
    return None


def field_default_factory(converter: "ClassConverter", name: str, value: cst.BaseExpression) -> Optional[str]:
    """``conv: ModuleDef = nn.Conv``: the field is a factory of that layer; its NNX default."""
    member = converter.env.linen_member(value)
    if member not in LAYERS:
        return None
    converter.layer_factories.setdefault(f"self.{name}", LayerFactory(LAYERS[member], name))
    return nnx_layer(converter.env, member, LAYERS[member].nnx)


def bind_layer_factory(rewriter: "CallRewriter", node: cst.Assign) -> bool:
    """``conv = partial(nn.Conv, use_bias=False)`` under ``@nn.compact``: the partial,
    over the NNX layer, becomes a line of ``__init__``; True when it was one."""
    converter = rewriter.converter
    value = node.value
    if not (isinstance(value, cst.Call) and converter.env.resolve(value.func) == _PARTIAL and value.args
            and value.args[0].keyword is None and not value.args[0].star):
        return False
    base = factory_of(converter, value.args[0].value)
    if base is None:
        return False
    target = node.targets[0].target if len(node.targets) == 1 else None
    if not converter._compact or not isinstance(target, cst.Name) or rewriter.depth \
            or converter._assignments.get(target.value) != 1:
        raise Unconvertible("a `partial` of a layer bound to something other than a name assigned once, "
                            "outside loops and branches, in a compact `__call__`")
    mapping = base.mapping
    preset = dict(base.preset)
    parts = [converter.env.code(value.func) + "(" + base.code]
    for arg in value.args[1:]:
        if arg.keyword is None or arg.star:
            raise Unconvertible(f"a `partial` of `nn.{mapping.linen}` with positional or starred arguments")
        keyword = arg.keyword.value
        if keyword in ("name", "parent") or keyword == mapping.output_size:
            raise Unconvertible(f"a `partial` of `nn.{mapping.linen}` fixing `{keyword}`")
        converter.check_layer_keyword(mapping, keyword)
        preset[keyword] = arg.value
        if keyword == mapping.mode_flag:
            if converter.mode_use(arg.value, True) is None:
                continue  # the module's mode: model.train()/eval() sets it
            converter.constant_flags = True
        parts.append(f"{mapping.renamed.get(keyword, keyword)}={converter.init_code(arg.value, rewriter.shapes)}")
    # ``conv = partial(self.conv, ...)``: the field ``conv`` is an ``__init__`` parameter that keeps its name
    local = f"{target.value}_factory" if target.value in converter.field_names else target.value
    converter.init_lines.append(f"{local} = {', '.join(parts)})")
    converter.layer_factories[target.value] = LayerFactory(mapping, local, preset, base.subclass)
    rewriter.removed_statements.add(id(node))
    rewriter.factory_reads.add(id(target))
    return True


def mark_factory_use(rewriter: "CallRewriter", node: cst.Call) -> None:
    """``conv(...)(x)`` and ``Block(conv=conv)``: the reads of a partial that the conversion
    rewrites (``check_factory_read`` refuses any other, which would read a removed name)."""
    factories = rewriter.converter.layer_factories
    construction = node.func
    if not isinstance(construction, cst.Call):
        return  # (a module built and not called at once is refused where it is built)
    if isinstance(construction.func, cst.Name) and construction.func.value in factories:
        rewriter.factory_reads.add(id(construction.func))
    rewriter.factory_reads.update(id(arg.value) for arg in construction.args
                                  if isinstance(arg.value, cst.Name) and arg.value.value in factories)


def check_factory_read(rewriter: "CallRewriter", node: cst.Name) -> None:
    if node.value in rewriter.converter.layer_factories and id(node) not in rewriter.factory_reads \
            and id(node) not in rewriter.keyword_names:
        raise Unconvertible(f"the layer factory `{node.value}` is used other than to build layers or to be "
                            "passed to a module")


def factories_passed(converter: "ClassConverter", construction: cst.Call,
                     fields: list[str]) -> dict[str, LayerFactory]:
    """The factories a parent passes to a child class's fields (``Block(conv=conv)``)."""
    passed = {}
    for index, arg in enumerate(construction.args):
        name = arg.keyword.value if arg.keyword is not None else fields[index] if index < len(fields) else None
        factory = factory_of(converter, arg.value) if name is not None else None
        if factory is not None:
            passed[name] = factory.passed_on(name)  # type: ignore[index]
    return passed


def layer_call_values(factory: LayerFactory, values: dict[str, cst.BaseExpression]) -> None:
    """A layer built through ``factory``: the keywords the call itself gives must not
    repeat the fixed ones (their NNX text is the factory's)."""
    for keyword in factory.preset:
        if keyword in values:
            raise Unconvertible(f"a layer built by `{factory.code}` sets `{keyword}`, which the partial fixes")
