"""Submodules handed to jraph's graph-network builders::

    embedder = jraph.GraphMapFeatures(embed_node_fn=nn.Dense(self.latent))
    update_node_fn = jraph.concatenated_args(MLP(self.sizes))
    net = jraph.GraphNetwork(update_node_fn=update_node_fn, update_edge_fn=None)
    graphs = net(embedder(graphs))

Linen names each module where it is created (``Dense_0``, ``MLP_0``, in the
order Python evaluates the arguments); NNX builds it as that attribute in
``__init__`` and the statement hands ``self.dense_0`` to jraph instead.  Its
input size is what jraph calls it with (``jraph_map.GRAPH_MODELS``): the sizes
of the graph features it reads, summed under ``concatenated_args``.  A
``__call__`` argument annotated ``jraph.GraphsTuple`` is a graph of three
feature sizes, each a constructor parameter (``graphs_node_features``,
``graphs_edge_features``, ``graphs_global_features``) that the code building the
model passes; ``graphs.nodes``, ``graphs._replace(nodes=...)`` and the jraph
``segment_*`` poolings keep track of them.

Converted where each builder (and ``concatenated_args``) is bound to a name
assigned once, outside loops and branches, and its update functions are
submodules, names bound so, ``None`` or plain functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Optional, Union

import libcst as cst
from nnxlint.context import walk
from nnxlint.conversion.base import Slot, Unconvertible, arg_keyword, line_of, method_of, self_attribute
from nnxlint.conversion.constructs.branch_sizes import all_of, merged_shape
from nnxlint.conversion.constructs.graph_loop import element_made, looped_module
from nnxlint.conversion.jraph_map import (
    CONCATENATED_ARGS,
    GRAPH_FEATURES,
    GRAPH_MODELS,
    GRAPHS_TUPLE,
    SEGMENT_FUNCTIONS,
    SIZE_KEEPING_ARGUMENTS,
)
from nnxlint.conversion.shapes import Several, Shape, Size, is_open, open_shape, tidy_code

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter

_SINGULAR = {"nodes": "node", "edges": "edge", "globals": "global"}
_GRAPH_SIZE = re.compile(r"(?P<argument>\w+)_(?P<feature>node|edge|global)_features")


@dataclass(frozen=True)
class Graph(Several):
    """A ``jraph.GraphsTuple``: the shapes of its nodes, edges and globals (in that order)."""

    def feature(self, name: str) -> Shape:
        return self.parts[GRAPH_FEATURES.index(name)]

    def replaced(self, features: dict[str, Shape]) -> "Graph":
        return Graph(tuple(features.get(name, part) for name, part in zip(GRAPH_FEATURES, self.parts, strict=True)))


@dataclass
class Update:
    """A function handed to jraph: a submodule (or None for a plain function), maybe
    under ``concatenated_args``."""

    slot: Optional[Slot]
    concatenated: bool = False
    position: Optional[int] = None  # among the modules of a message-passing loop (``graph_loop.py``)
    tests: tuple[str, ...] = ()  # bound under these tests on fields, and to ``None`` otherwise


@dataclass
class GraphFunction:
    """What a builder returns: the graph function, with its update functions by keyword."""

    builder: str
    updates: dict[str, Update] = field(default_factory=dict)


# -- graph inputs ------------------------------------------------------------
def graph_input(converter: "ClassConverter", param: cst.Param, index: int) -> Optional[Graph]:
    """A ``__call__`` argument annotated ``jraph.GraphsTuple``: its feature sizes become
    constructor parameters (``converter.graph_sizes``)."""
    if param.annotation is None or converter.env.resolve(param.annotation.annotation) not in GRAPHS_TUPLE:
        return None
    parts = []
    for feature in GRAPH_FEATURES:
        name = f"{param.name.value}_{_SINGULAR[feature]}_features"
        if name in converter.field_names:
            raise Unconvertible(f"a field is named `{name}`, the name the graph's {feature} size parameter needs")
        converter.graph_sizes[name] = index
        parts.append(open_shape(Size(name)))
    return Graph(tuple(parts))


def graph_input_size(parameter: str, shape: Shape) -> Optional[Size]:
    """The size a caller passes for a graph size parameter, given the graph it passes."""
    match = _GRAPH_SIZE.fullmatch(parameter)
    if match is None or not isinstance(shape, Graph):
        return None
    feature = {singular: plural for plural, singular in _SINGULAR.items()}[match["feature"]]
    part = shape.feature(feature)
    return part[-1] if part else None


def graph_runtime_size(env, class_name: str, index: int, parameter: str, size: Optional[str]) -> Optional[str]:
    """``graphs.nodes.shape[-1]`` for a graph size parameter of ``class_name`` whose example
    input at ``init`` is ``graphs`` (the ``x.shape[-1]`` of an array input otherwise)."""
    match = _GRAPH_SIZE.fullmatch(parameter)
    if match is None or size is None or not size.endswith(".shape[-1]"):
        return size
    call = method_of(env.class_node(class_name), "__call__")
    params = list(call.params.params)[1:] if call is not None else []
    if index >= len(params) or params[index].annotation is None \
            or env.resolve(params[index].annotation.annotation) not in GRAPHS_TUPLE:
        return size
    return f"{size[:-len('.shape[-1]')]}.{match['feature']}s.shape[-1]"


# -- shapes --------------------------------------------------------------------
def graph_feature_shape(following, node: cst.Attribute) -> Shape:
    """``graphs.nodes`` of a graph."""
    graph = following.shape_of(node.value, several=True)
    if isinstance(graph, Graph) and node.attr.value in GRAPH_FEATURES:
        return graph.feature(node.attr.value)
    return None


def graph_call_shape(following, call: cst.Call) -> Shape:
    """``graphs._replace(nodes=...)``, and jraph's ``segment_*`` poolings (called, or the
    default of a ``Callable`` field, as flax's ogbg ``pooling_fn``)."""
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value == "_replace":
        graph = following.shape_of(func.value, several=True)
        if not isinstance(graph, Graph) or any(arg.keyword is None or arg.keyword.value not in GRAPH_FEATURES
                                               for arg in call.args):
            return None
        return graph.replaced({arg.keyword.value: following.shape_of(arg.value) for arg in call.args})
    if not call.args or call.args[0].keyword is not None or not _segment_function(following.converter, func):
        return None
    data = following.shape_of(call.args[0].value)
    if not data or data[-1] is None:
        return None
    return data if is_open(data) else (None,) * (len(data) - 1) + (data[-1],)


def _segment_function(converter: "ClassConverter", func: cst.BaseExpression) -> bool:
    if converter.env.resolve(func) in SEGMENT_FUNCTIONS:
        return True
    attribute = self_attribute(func)
    default = next((f.default for f in converter.fields if f.name == attribute), None)
    return default is not None and converter.env.resolve(cst.parse_expression(default)) in SEGMENT_FUNCTIONS


# -- builders ------------------------------------------------------------------
def bind_graph_function(rewriter: "CallRewriter", node: cst.Assign) -> bool:
    """``net = jraph.GraphNetwork(...)`` / ``fn = jraph.concatenated_args(MLP(...))``: its
    submodules become attributes; True when the statement was one."""
    converter = rewriter.converter
    value = node.value
    qualified = converter.env.resolve(value.func) if isinstance(value, cst.Call) else None
    if qualified not in GRAPH_MODELS and qualified != CONCATENATED_ARGS:
        return False
    target = node.targets[0].target if len(node.targets) == 1 else None
    in_loop = bool(rewriter.graph_loops) and rewriter.depth >= rewriter.graph_loops[-1].depth
    def shown() -> str:  # for a refusal only: the line costs the module's positions
        return f"`{_shown(converter, value)}` at line {line_of(converter.env.module, node)}"

    if rewriter.depth and not in_loop:
        raise Unconvertible(f"{shown()} is inside a branch (or a loop) that is not a message-passing loop: a module "
                            "handed to jraph is converted where it is made at each pass")
    tests = tuple(rewriter.conditions[rewriter.graph_loops[-1].conditions_before:]) if in_loop else ()
    alternative = isinstance(target, cst.Name) and qualified == CONCATENATED_ARGS and tests and None not in tests \
        and _none_elsewhere(converter.node, target.value, node)  # ``else: update_edge_fn = None``
    if not isinstance(target, cst.Name) or (converter._assignments.get(target.value) != 1 and not alternative):
        raise Unconvertible(f"{shown()} is bound to other than one name assigned once, or `None` in the other "
                            "branch of a test on fields: which functions jraph gets, and so their input sizes, are "
                            "not followed")
    handed: dict[int, str] = {}  # construction -> the attribute jraph gets instead
    if qualified == CONCATENATED_ARGS:
        update = _concatenated(rewriter, value, handed)  # type: ignore[arg-type]
        rewriter.graph_values[target.value] = replace(update, tests=tests) if alternative else update
    else:
        rewriter.graph_values[target.value] = _graph_function(rewriter, qualified, value, handed)  # type: ignore
    rewriter.graph_statements[id(node)] = _handed_over(rewriter, value, handed)
    return True


def _none_elsewhere(node: cst.CSTNode, name: str, binding: cst.Assign) -> bool:
    """Every other assignment of ``name`` in ``node`` assigns ``None``."""
    others = [child for child in walk(node) if isinstance(child, cst.Assign) and child is not binding
              and any(isinstance(target.target, cst.Name) and target.target.value == name for target in child.targets)]
    return all(isinstance(other.value, cst.Name) and other.value.value == "None" and len(other.targets) == 1
               for other in others)


def _shown(converter: "ClassConverter", call: cst.Call) -> str:
    """``jraph.concatenated_args(MLP(...))``: the builder and the modules it is handed."""
    inner = [arg.value for arg in call.args if isinstance(arg.value, cst.Call)]
    shown = f"{converter.env.code(inner[0].func)}(...)" if len(call.args) == 1 and inner else "..."
    return f"{converter.env.code(call.func)}({shown})"


def _graph_function(rewriter: "CallRewriter", builder: str, call: cst.Call, handed: dict[int, str]) -> GraphFunction:
    code = rewriter.converter.env.code
    by_keyword = {update.keyword: update for update in GRAPH_MODELS[builder]}
    positional = [update.keyword for update in sorted(GRAPH_MODELS[builder], key=lambda u: u.position)]
    function = GraphFunction(builder)
    for index, arg in enumerate(call.args):
        keyword = arg_keyword(arg) or (positional[index] if index < len(positional) else None)
        if arg.star or keyword is None:
            raise Unconvertible(f"`{code(call.func)}(...)` with starred or extra positional arguments")
        if keyword in by_keyword:
            update = _update(rewriter, arg.value, handed)
            if update is not None:
                function.updates[keyword] = update
        elif keyword in SIZE_KEEPING_ARGUMENTS[builder] and not _builds_module(rewriter, arg.value):
            continue
        else:
            raise Unconvertible(f"`{code(call.func)}({keyword}=...)`: what it does to feature sizes is not followed")
    return function


def _update(rewriter: "CallRewriter", value: cst.BaseExpression, handed: dict[int, str]) -> Optional[Update]:
    """An update function argument: None for ``None``."""
    converter = rewriter.converter
    if isinstance(value, cst.Name) and value.value == "None":
        return None
    if isinstance(value, cst.Name) and isinstance(rewriter.graph_values.get(value.value), Update):
        return rewriter.graph_values[value.value]  # type: ignore[return-value]
    if isinstance(value, cst.Call) and converter.env.resolve(value.func) == CONCATENATED_ARGS:
        return _concatenated(rewriter, value, handed)
    if isinstance(value, cst.Call) and converter.layer(value.func) is not None:
        looped = looped_module(rewriter, value)
        if looped is not None:
            handed[id(value)] = f"next({looped[0]})"
            return Update(looped[1], position=looped[2])
        slot = converter.construct(value, None)
        handed[id(value)] = f"self.{slot.attribute}"
        return Update(slot)
    if _builds_module(rewriter, value):
        raise Unconvertible(f"`{converter.env.code(value)}`: a submodule handed to jraph other than as the update "
                            "function itself or under `jraph.concatenated_args`")
    return Update(None)  # a plain function: what it returns is not followed


def _concatenated(rewriter: "CallRewriter", call: cst.Call, handed: dict[int, str]) -> Update:
    keywords = {arg_keyword(arg): arg.value for arg in call.args if arg.keyword is not None}
    positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
    axis = keywords.pop("axis", None)
    if len(positional) != 1 or keywords or len(call.args) != len(positional) + (axis is not None) or (
            axis is not None and rewriter.converter.env.code(axis).replace(" ", "") != "-1"):
        raise Unconvertible("`jraph.concatenated_args` with other than one function (and `axis=-1`) is not converted")
    inner = _update(rewriter, positional[0], handed)
    if inner is None or inner.concatenated:
        raise Unconvertible("`jraph.concatenated_args` of `None` or of a function already concatenating")
    return Update(inner.slot, concatenated=True, position=inner.position)


def _builds_module(rewriter: "CallRewriter", node: cst.CSTNode) -> bool:
    converter = rewriter.converter
    found = []

    class Find(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            if converter.layer(call.func) is not None:
                found.append(call)

    node.visit(Find())
    return bool(found)


def _handed_over(rewriter: "CallRewriter", value: cst.Call, handed: dict[int, str]) -> cst.BaseExpression:
    """The builder call with each submodule construction replaced by its attribute."""
    from nnxlint.conversion.calls import LinenFunctions

    class Replace(LinenFunctions):
        def on_visit(self, node: cst.CSTNode) -> bool:
            return id(node) not in handed and super().on_visit(node)

        def on_leave(self, original_node, updated_node):
            if id(original_node) in handed:
                return cst.parse_expression(handed[id(original_node)])
            return super().on_leave(original_node, updated_node)

    return value.visit(Replace(rewriter.converter))  # type: ignore[return-value]


# -- applying a graph function -------------------------------------------------
def graph_call(rewriter: "CallRewriter", original: cst.Call, updated: cst.Call) -> Optional[cst.Call]:
    """``net(graphs)`` of a bound builder: each submodule gets the sizes jraph calls it
    with; the call itself is unchanged.  None for any other call."""
    func = original.func
    function: Union[GraphFunction, Update, None] = rewriter.graph_values.get(func.value) \
        if isinstance(func, cst.Name) else None
    if function is None:
        return None
    name = func.value  # type: ignore[union-attr]
    if not isinstance(function, GraphFunction):
        raise Unconvertible(f"`{name}(...)`: a function for jraph called directly is not followed")
    graph = rewriter.shape_of(original.args[0].value, several=True) if len(original.args) == 1 else None
    if not isinstance(graph, Graph) or original.args[0].keyword is not None:
        raise Unconvertible(f"`{name}(...)`: its argument is not known to be a `jraph.GraphsTuple` "
                            "(a `__call__` argument annotated so, or what jraph returned for one)")
    features = dict(zip(GRAPH_FEATURES, graph.parts, strict=True))
    for spec in GRAPH_MODELS[function.builder]:
        update = function.updates.get(spec.keyword)
        if update is None:
            continue
        if update.slot is None:
            features[spec.writes] = None
            continue
        reads = [features[name] for name in spec.reads]
        if update.concatenated:
            inputs = _concatenation(reads)
        elif len(reads) == 1:
            inputs = reads[0]
        else:
            raise Unconvertible(f"`{spec.keyword}` of `{function.builder}` gets {len(reads)} arguments: a submodule "
                                "is converted there only under `jraph.concatenated_args`")
        output, mode = rewriter.converter.call_slot(update.slot, [inputs], rewriter.shapes)
        if mode is not None:
            raise Unconvertible(f"`self.{update.slot.attribute}` has a train/eval argument, which jraph does not pass")
        if update.position is not None:
            element_made(rewriter, update.slot, update.position)
        features[spec.writes] = _alternative(rewriter, update, output, features[spec.writes])
    rewriter.call_shapes[id(original)] = graph.replaced(features)
    return updated


def _alternative(rewriter: "CallRewriter", update: Update, output: Shape, before: Shape) -> Shape:
    """The feature's shape after an update function that is ``None`` unless its tests
    on fields hold (and the graph function is applied outside them): ``a if tests else
    b`` on each axis where it differs (``constructs/branch_sizes.py``)."""
    loop = rewriter.graph_loops[-1] if rewriter.graph_loops else None
    here = tuple(rewriter.conditions[loop.conditions_before:]) if loop else ()
    if not update.tests or here[:len(update.tests)] == update.tests:
        return output
    return merged_shape(all_of(update.tests), output, before)


def _concatenation(shapes: list[Shape]) -> Shape:
    """The shape ``concatenated_args`` hands on: the last axes added up (``4 * latent``
    rather than ``latent + latent + ...``)."""
    if any(not shape or shape[-1] is None for shape in shapes):
        return None
    sizes = [shape[-1] for shape in shapes]  # type: ignore[index]
    if all(size.value is not None for size in sizes):
        return open_shape(Size.number(sum(size.value for size in sizes)))
    counts: dict[str, int] = {}
    for size in sizes:
        code = tidy_code(size.code)
        counts[code] = counts.get(code, 0) + 1
    terms = [code if count == 1 else f"{count} * {_operand(code)}" for code, count in counts.items()]
    return open_shape(Size(" + ".join(_operand(term, within_sum=True) for term in terms)))


def _operand(code: str, within_sum: bool = False) -> str:
    """``code`` as an operand of ``*`` (or of ``+``), parenthesised where precedence needs it."""
    expression = cst.parse_expression(code)
    if isinstance(expression, (cst.Name, cst.Attribute, cst.Integer, cst.Call, cst.Subscript)):
        return code
    if within_sum and isinstance(expression, cst.BinaryOperation) and isinstance(
            expression.operator, (cst.Add, cst.Multiply, cst.FloorDivide)):
        return code
    return f"({code})"
