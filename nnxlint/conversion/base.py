"""What every part of the conversion shares: the error that carries a reason,
the converted-class summary, the file environment, and small syntax helpers."""

from __future__ import annotations

from collections import Counter

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection, Iterator, Optional, Sequence

import libcst as cst

from nnxlint import names
from nnxlint.context import walk
from nnxlint.positions import Positions
from nnxlint.flax_api import FLAX_LINEN, linen_member
from nnxlint.conversion.linen_map import SAME_FUNCTIONS, TWIN_FUNCTIONS, LayerMapping
from nnxlint.conversion.shapes import Several, Shape, Size, fold_integers, tidy_code

if TYPE_CHECKING:
    from nnxlint.conversion.constructs import Factory
    from nnxlint.conversion.constructs.layer_factory import LayerFactory

LINEN_COMPACT = f"{FLAX_LINEN}.compact"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INTEGER_ARITHMETIC = re.compile(r"[0-9 ()*+\-/]+")


class Unconvertible(Exception):
    """The reason a piece of Linen code gets no fix."""


class FactoryUnknown(Unconvertible):
    """A class calls a module-valued field whose layer only the class building it tells."""


class CarryUnknown(FactoryUnknown):
    """A recurrent cell whose carry only the ``nn.RNN`` stepping it tells (``constructs/recurrent_later.py``)."""


@dataclass(frozen=True)
class Mode:
    """``__call__``'s train/eval parameter: its name, position and value in eval mode."""

    name: str
    index: int  # among the parameters after ``self``
    eval_value: bool
    default: Optional[bool] = None  # the parameter's default, when it has one


@dataclass
class InitParam:
    name: str
    annotation: Optional[str]
    default: Optional[str]  # source text
    factory: Optional[str] = None  # a dataclass default_factory's call, made in ``__init__`` when left None


@dataclass
class ConvertedClass:
    name: str
    node: cst.ClassDef
    size_params: dict[str, int]  # input size parameter -> the __call__ argument it sizes
    fields: list[InitParam]
    output: Shape  # in the terms of the class's own ``__init__``
    mode: Optional[Mode]
    uses_rngs: bool
    # a layer keeps a constant train/eval flag, which model.train()/eval() would override
    constant_flags: bool = False
    # layer input sizes nothing inside the class can give (``hidden_in_features`` after a
    # flatten): constructor parameters that the code building the class must pass
    layer_size_params: list[str] = field(default_factory=list)
    # what the conversion leaves out because Linen ignores it in this run (``constructs/sow.py``)
    dropped: list[str] = field(default_factory=list)
    # size parameters of an axis other than the last (``inputs_shape_1``) -> (argument, axis, rank)
    # (``constructs/input_axes.py``); the others in ``size_params`` size the last axis
    size_axes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # Linen layers kept through ``nnx.bridge.ToNNX`` in it or its submodules (``constructs/linen_bridge.py``):
    # a model holding one needs ``nnx.bridge.lazy_init`` before use
    bridged: list[str] = field(default_factory=list)
    # converted on its own for a first input of this many axes, as its convolutions read it
    # (``constructs/input_axes.py``: ``convolution_rank``), where no code states the rank
    assumed_rank: Optional[int] = None
    assumed_input: int = 0  # which input of ``__call__`` has that rank


@dataclass
class FileEnv:
    """What a class conversion needs from the file around it."""

    module: cst.Module
    scope: names.Scope  # the module scope: import resolution
    nnx: str  # how the converted file spells flax.nnx
    linen_classes: dict[str, cst.ClassDef]
    # converts a user Linen class for the given input shapes and the layer factories its parent
    # passes to its fields (cached by the caller)
    convert_class: Callable[..., ConvertedClass] = None  # type: ignore[assignment]
    # the file's top-level functions, whose returned shapes the conversion follows
    functions: dict[str, cst.FunctionDef] = field(default_factory=dict)
    # collections of ``self.variable`` other than params/batch_stats -> the Variable subclass defined for each
    custom_collections: dict[str, str] = field(default_factory=dict)
    # Linen classes of another file of the run, as this file spells them (``models.CNN``) -> class name
    imported_classes: dict[str, str] = field(default_factory=dict)
    # Linen classes of another file of the run that this file's classes build, as this file spells
    # them (``Block``, ``layers.Block``) -> ``linen_users.ForeignClass`` (converted by that file's ``ClassSet``)
    foreign_classes: dict = field(default_factory=dict)
    # ``param``-overriding subclasses of a Flax layer in another file of the run, which that file's fix
    # converts, as this file spells them (``models_resnet.StdConv``) -> ``param_override.ParamOverride``
    foreign_overrides: dict = field(default_factory=dict)
    # the run (``nnxlint.project.ProjectView``) when the conversion knows it; None: the file on its own
    project: Optional[object] = None

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def class_node(self, name: str) -> cst.ClassDef:
        """The definition of a Linen class this file builds: its own, or another file's."""
        return self.linen_classes[name] if name in self.linen_classes else self.foreign_classes[name].node

    def resolve(self, node: cst.BaseExpression) -> Optional[str]:
        return names.resolve(self.scope, node)

    def linen_member(self, node: cst.BaseExpression) -> Optional[str]:
        return linen_member(self.resolve(node))

    def nnx_function(self, node: cst.BaseExpression) -> Optional[str]:
        """``nnx.relu`` for ``nn.relu`` (and ``nnx.initializers.x`` for
        ``nn.initializers.x``): the same functions under flax.nnx."""
        member = self.linen_member(node)
        if member in SAME_FUNCTIONS or member in TWIN_FUNCTIONS:
            return f"{self.nnx}.{member}"
        if member and member.startswith("initializers."):
            return f"{self.nnx}.{member}"
        return None


def substitute(code: str, values: dict[str, str]) -> Size:
    """``code`` with each name in ``values`` replaced by its text, folded to a
    number when only integer arithmetic is left."""
    expression = cst.parse_expression(code)

    class Replace(cst.CSTTransformer):
        def leave_Name(self, original_node, updated_node):
            if original_node.value in values:
                value = cst.parse_expression(values[original_node.value])
                atomic = isinstance(value, (cst.Name, cst.Attribute, cst.Subscript, cst.Call, cst.Integer))
                return value if atomic else cst.parse_expression(f"({values[original_node.value]})")
            return updated_node

        def leave_IfExp(self, original_node, updated_node):
            """``d if None is None else out_dim``: a default of ``None`` decides the branch;
            ``([d] * n)[-1] if [d] * n else d`` (a last size or the one before) is ``d``."""
            last = _last_element(updated_node.body, updated_node.test, updated_node.orelse)
            if last is not None:  # (the parentheses around the whole stay: ``2 * (...)``)
                return last.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar)
            test = updated_node.test
            if isinstance(test, cst.Comparison) and len(test.comparisons) == 1 and _is_none(test.left) \
                    and _is_none(test.comparisons[0].comparator):
                operator = test.comparisons[0].operator
                if isinstance(operator, (cst.Is, cst.IsNot)):
                    chosen = updated_node.body if isinstance(operator, cst.Is) else updated_node.orelse
                    return chosen.with_changes(lpar=[], rpar=[])
            return updated_node

    text = cst.Module([]).code_for_node(expression.visit(Replace()))
    if _INTEGER_ARITHMETIC.fullmatch(text) and "/" not in text.replace("//", ""):
        value = fold_integers(text)  # bounded: ``9**9**9`` is refused, not computed
        if value is not None:
            return Size.number(value)
    return Size(tidy_code(text))


def _bare_code(node: cst.BaseExpression) -> str:
    return cst.Module([]).code_for_node(node.with_changes(lpar=[], rpar=[]))


def _last_element(body: cst.BaseExpression, test: cst.BaseExpression,
                  orelse: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """``values[-1] if values else before`` (a loop's last size, or the one before it) where
    it is one expression: ``b`` for a literal ``[a, b]`` or ``(a, b)`` (never empty), ``d`` for
    ``[d] * n`` when ``before`` is ``d`` too, else ``d if n > 0 else before``."""
    if not (isinstance(body, cst.Subscript) and len(body.slice) == 1 and isinstance(body.slice[0].slice, cst.Index)
            and _bare_code(body.slice[0].slice.value) == "-1" and _bare_code(body.value) == _bare_code(test)):
        return None
    values = body.value
    if isinstance(values, (cst.List, cst.Tuple)) and values.elements and not any(
            isinstance(element, cst.StarredElement) for element in values.elements):
        return values.elements[-1].value.with_changes(lpar=[], rpar=[])
    if not (isinstance(values, cst.BinaryOperation) and isinstance(values.operator, cst.Multiply)):
        return None
    listed, count = (values.left, values.right) if isinstance(values.left, cst.List) else (values.right, values.left)
    if not (isinstance(listed, cst.List) and len(listed.elements) == 1) \
            or isinstance(listed.elements[0], cst.StarredElement):
        return None
    element = listed.elements[0].value.with_changes(lpar=[], rpar=[])
    if _bare_code(element) == _bare_code(orelse):
        return orelse.with_changes(lpar=[], rpar=[])
    return cst.parse_expression(f"{_bare_code(element)} if {_bare_code(count)} > 0 else {_bare_code(orelse)}")


def _is_none(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "None"


_POSITIONS: list = [None, None]  # the last module asked about and its positions


def line_of(module: cst.Module, node: cst.CSTNode) -> object:
    """``node``'s line in ``module`` (``?`` for a node not of it), for a reason shown to the
    user; positions made once per module, nnxlint's light ones (LibCST's PositionProvider
    over the whole module at every refusal cost half of a check of flax's ogbg)."""
    if _POSITIONS[0] is not module:
        _POSITIONS[:] = [module, Positions(module)]
    found = _POSITIONS[1].get(node)
    return found.start.line if found is not None else "?"


def arg_keyword(arg: cst.Arg) -> Optional[str]:
    return arg.keyword.value if arg.keyword is not None else None


def self_attribute(node: cst.BaseExpression) -> Optional[str]:
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self":
        return node.attr.value
    return None


def method_of(class_node: cst.ClassDef, name: str) -> Optional[cst.FunctionDef]:
    """The method ``name`` defined in the class body (``__call__``), or None."""
    body = class_node.body.body if isinstance(class_node.body, cst.IndentedBlock) else ()
    return next((statement for statement in body
                 if isinstance(statement, cst.FunctionDef) and statement.name.value == name), None)


def function_params(function: cst.FunctionDef) -> list[cst.Param]:
    params = function.params
    star = params.star_arg
    if (star not in (None, cst.MaybeSentinel.DEFAULT) and not isinstance(star, cst.ParamStar)) \
            or params.star_kwarg or params.posonly_params:
        raise Unconvertible(f"`{function.name.value}` takes *args/**kwargs or positional-only parameters")
    return list(params.params) + list(params.kwonly_params)




@dataclass
class Slot:
    """A submodule: where Linen creates it and what the NNX ``__init__`` builds."""

    attribute: str
    construction: cst.Call
    init_code: Optional[str] = None  # set once the input size is known
    # the input size its first call read; a later call on an input of unknown size reuses it (its
    # weights fix that size, in Linen as in NNX): BiT's ``head(out['pre_logits'])``
    input_size: Optional[object] = None


@dataclass
class Layer:
    """What a construction call creates: a Flax layer or a user Linen class."""

    mapping: Optional[LayerMapping]
    user_class: Optional[str]
    # a Linen constructor that builds other modules (``nn.Sequential``, ``nn.RNN``): its construct unit
    factory: Optional["Factory"] = None
    # a layer built through a ``partial`` or a module-valued field (``constructs/layer_factory.py``)
    made_by: Optional["LayerFactory"] = None
    # the module classes a field may hold (``constructs/class_field.py``); ``user_class`` is the first
    choices: tuple[str, ...] = ()
    # a Linen layer with no NNX twin, kept as Linen in ``nnx.bridge.ToNNX`` (``constructs/linen_bridge.py``);
    # ``mapping`` is then the table layer whose arguments and output shape it shares
    bridged: Optional[str] = None
    # a subclass that overrides ``param`` of the layer ``mapping`` maps (``constructs/param_override.py``):
    # converted code builds it under this name (``StdConv``, or ``models_resnet.StdConv`` from another file)
    subclass: Optional[str] = None



def is_false(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "False"


def size_name(argument: str, index: int, fields: Collection[str] = ()) -> str:
    """The ``__init__`` parameter for the feature size of a ``__call__`` argument:
    ``in_features`` for the first, ``{argument}_features`` for the others, and
    ``{argument}_in_features`` where a field of the class already has that name."""
    for name in size_names(argument, index):
        if name not in fields:
            return name
    raise Unconvertible(f"fields are named {' and '.join(f'`{name}`' for name in size_names(argument, index))}, "
                        f"the names the size of `{argument}` could take")


def size_names(argument: str, index: int) -> tuple[str, ...]:
    """The names ``size_name`` chooses from, in order."""
    return ("in_features", f"{argument}_in_features") if index == 0 else \
        (f"{argument}_features", f"{argument}_in_features")


def input_sizes(converted: ConvertedClass, inputs: Sequence[Shape], what: str) -> dict[str, Size]:
    """The caller's values for a converted class's input size parameters."""
    sizes = {}
    for parameter, index in converted.size_params.items():
        if parameter in converted.size_axes:
            from nnxlint.conversion.constructs.input_axes import axis_input_size
            sizes[parameter] = axis_input_size(parameter, converted.size_axes[parameter], inputs, what)
            continue
        shape = inputs[index] if index < len(inputs) else None
        if isinstance(shape, Several):  # a ``jraph.GraphsTuple`` (``constructs/jraph_graph.py``), or a tuple
            from nnxlint.conversion.constructs.jraph_graph import graph_input_size
            from nnxlint.conversion.constructs.recurrent_later import carry_input_size  # a cell's carry
            shape = (graph_input_size(parameter, shape) or carry_input_size(parameter, shape),)
        if not shape or shape[-1] is None:
            raise Unconvertible(f"the input size of {what} cannot be determined statically")
        sizes[parameter] = shape[-1]
    return sizes


def drop_param(function: cst.FunctionDef, name: str) -> cst.FunctionDef:
    params = function.params
    kept = [p for p in params.params if p.name.value != name]
    kwonly = [p for p in params.kwonly_params if p.name.value != name]
    if kept and kept[-1].comma is not cst.MaybeSentinel.DEFAULT and not kwonly and params.star_arg in (
            None, cst.MaybeSentinel.DEFAULT):
        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    if kwonly and len(kwonly) < len(params.kwonly_params):
        kwonly[-1] = kwonly[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    star_arg = params.star_arg
    if not kwonly and isinstance(star_arg, cst.ParamStar):
        star_arg = cst.MaybeSentinel.DEFAULT
        if kept:
            kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return function.with_changes(params=params.with_changes(params=kept, kwonly_params=kwonly, star_arg=star_arg))


def drop_args(call: cst.Call, remove: Callable[[int, Optional[str]], bool]) -> cst.Call:
    """``call`` without the arguments ``remove(position, keyword)`` selects."""
    kept = [arg for index, arg in enumerate(call.args) if not remove(index, arg_keyword(arg))]
    if kept and len(kept) < len(call.args):
        last_original = call.args[-1]
        kept[-1] = kept[-1].with_changes(comma=last_original.comma,  # and the line break before ``)``
                                         whitespace_after_arg=last_original.whitespace_after_arg)
    return call.with_changes(args=kept)


def binding_targets(node: cst.CSTNode, comprehensions: bool = False,
                    withs: bool = False) -> Iterator[tuple[cst.BaseExpression, bool]]:
    """Each target ``node`` binds (assignments, loops, walrus; comprehension targets and
    ``with ... as`` when asked), with whether it binds in place or repeatedly (``+=``, a
    loop, a walrus)."""
    kinds = (cst.AugAssign, cst.For, cst.NamedExpr) + ((cst.CompFor,) if comprehensions else ())
    for child in walk(node):
        if isinstance(child, (cst.AssignTarget, cst.AnnAssign)):
            yield child.target, False
        elif isinstance(child, kinds):
            yield child.target, True
        elif withs and isinstance(child, cst.WithItem) and child.asname is not None:
            yield child.asname.name, False  # type: ignore[misc]


def name_counts(node: cst.CSTNode) -> Counter:
    """How often each name stands in ``node``, read or bound: attribute owners count,
    attribute and keyword names do not."""
    counts: Counter = Counter()

    class Names(cst.CSTVisitor):
        def visit_Name(self, name: cst.Name) -> None:
            counts[name.value] += 1

        def visit_Attribute(self, attribute: cst.Attribute) -> bool:
            attribute.value.visit(self)
            return False

        def visit_Arg(self, arg: cst.Arg) -> bool:
            arg.value.visit(self)
            return False

    node.visit(Names())
    return counts


def single_assign(statement: cst.CSTNode) -> Optional[cst.Assign]:
    """The assignment a statement line holds when it is just ``target = value``."""
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 \
            and isinstance(statement.body[0], cst.Assign) and len(statement.body[0].targets) == 1:
        return statement.body[0]
    return None


def names_read(node: cst.CSTNode) -> set[str]:
    """The names an expression reads: attribute owners, not attribute or keyword names."""
    return set(name_counts(node))
