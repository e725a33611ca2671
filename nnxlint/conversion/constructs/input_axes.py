"""Input sizes on axes other than the last, as constructor parameters.

A Linen class may size a parameter from any axis of its input, as a learned
position embedding does from the sequence axis::

    assert inputs.ndim == 3
    pe = self.param('pos_embedding', init, (1, inputs.shape[1], inputs.shape[2]))

NNX builds the parameter in ``__init__``, before any input exists, so the size
of axis 1 becomes a constructor parameter named for what it is, ``inputs_shape_1``
(the last axis stays ``in_features``)::

    def __init__(self, in_features: int, inputs_shape_1: int, ...):
        self.pos_embedding = nnx.Param(init(rngs.params(), (1, inputs_shape_1, in_features)))

An axis is counted from the front, so the input's rank must be known: the
class states it (``assert x.ndim == 3``, ``n, l, d = x.shape``), or the class
is converted for the shapes its parent gives it (then every axis that is no
number is such a parameter).  Whoever builds the class passes the size of that
axis of what it gives: a parent the expression of its own sizes (``h * w + 1``,
its own ``x_shape_1``), an init site ``x.shape[1]`` of the example input.  A
parent that does not know the size refuses, naming it.

A class on its own that flattens what its convolutions give (flax's ppo) states
no rank, yet its flattened size needs the spatial axes.  When every convolution
it builds has a kernel of ``k`` axes, it is converted for a first input of
``k + 2`` axes (a batch, the spatial axes, the features), as those convolutions
read it (``convolution_rank``), if that gives every layer its input size; the fix
description says so (``rank_note``)::

    def __init__(self, in_features: int, x_shape_1: int, x_shape_2: int, ...):
        self.hidden = nnx.Linear(64 * (((x_shape_1 + 3) // 4 + 1) // 2) * (...), 512, rngs=rngs)
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Collection, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import IDENTIFIER, Unconvertible, method_of, size_name, substitute
from nnxlint.conversion.shapes import ANY_AXES, Shape, Size, int_literal, is_open, open_shape

if TYPE_CHECKING:
    from nnxlint.conversion.base import ConvertedClass
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter


def axis_parameter(converter: "ClassConverter", argument: str, index: int, axis: int, rank: int) -> Size:
    """``inputs_shape_1``: the constructor parameter for axis ``axis`` of the ``__call__``
    argument ``argument`` (at ``index``), of rank ``rank``."""
    name = f"{argument}_shape_{axis}"
    if name in converter.field_names or not IDENTIFIER.fullmatch(name):
        raise Unconvertible(f"a field is named `{name}`, the name the size of axis {axis} of `{argument}` needs")
    converter.axis_sizes[name] = (index, axis, rank)
    return Size(name)


def ranked_input(converter: "ClassConverter", argument: str, index: int, middle: tuple) -> Shape:
    """The shape of the ``__call__`` argument inside the class, its rank known: batch
    unknown, the middle axes numbers where ``middle`` has them and parameters
    otherwise, the last axis the input size parameter."""
    rank = len(middle) + 2
    axes = tuple(size if size is not None and size.value is not None
                 else axis_parameter(converter, argument, index, axis, rank)
                 for axis, size in enumerate(middle, start=1))
    return (None,) + axes + (Size(size_name(argument, index, converter.field_names)),)


def state_rank(rewriter: "CallRewriter", array: cst.BaseExpression, rank: Optional[int]) -> None:
    """``assert x.ndim == 3`` / ``n, l, d = x.shape`` at the top of ``__call__``: the
    input ``x``, of unknown rank so far, has ``rank`` axes."""
    converter = rewriter.converter
    if not rewriter.call_inputs or rewriter.depth or rank is None or rank < 2 or not isinstance(array, cst.Name):
        return
    index = converter._call_param_index.get(array.value)
    if index is None or rewriter.shapes.get(array.value) != open_shape(Size(size_name(array.value, index, converter.field_names))):
        return
    rewriter.shapes[array.value] = ranked_input(converter, array.value, index, (None,) * (rank - 2))


def asserted_rank(rewriter: "CallRewriter", node: cst.Assert) -> None:
    """``assert x.ndim == 3`` or ``assert len(x.shape) == 3``."""
    test = node.test
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1
            and isinstance(test.comparisons[0].operator, cst.Equal)):
        return
    left, right = test.left, test.comparisons[0].comparator
    if int_literal(left) is not None:
        left, right = right, left
    array = None
    if isinstance(left, cst.Attribute) and left.attr.value == "ndim":
        array = left.value
    elif isinstance(left, cst.Call) and isinstance(left.func, cst.Name) and left.func.value == "len" \
            and len(left.args) == 1 and _shape_owner(left.args[0].value) is not None:
        array = _shape_owner(left.args[0].value)
    if array is not None:
        state_rank(rewriter, array, int_literal(right))


def shape_bindings(rewriter: "CallRewriter", node: cst.Assign) -> None:
    """``n, l, d = x.shape``: ``x`` has three axes, and each name is an alias of its size
    (``l`` -> ``x_shape_1``) where the size is known and the name bound once.
    ``input_shape = x.shape``: ``input_shape[-1]`` and ``y.reshape(input_shape)`` are
    ``x``'s then, whatever ``x`` is bound to later."""
    converter = rewriter.converter
    if len(node.targets) != 1:
        return
    target, array = node.targets[0].target, _shape_owner(node.value)
    if array is None:
        return
    if isinstance(target, cst.Name):
        shape = rewriter.shape_of(array)
        if isinstance(shape, tuple) and converter._assignments.get(target.value) == 1:
            converter.shape_aliases[target.value] = shape
        return
    if not isinstance(target, (cst.Tuple, cst.List)):
        return
    elements = target.elements
    if any(isinstance(element, cst.StarredElement) for element in elements) \
            or not all(isinstance(element.value, cst.Name) for element in elements):
        return
    state_rank(rewriter, array, len(elements))
    shape = rewriter.shape_of(array)
    stated_rank(rewriter, shape, len(elements))  # ``n, h, w, c = conv(x).shape``: ``x`` has 4 axes
    if not shape or is_open(shape) or len(shape) != len(elements):
        return
    for element, size in zip(elements, shape):
        name = element.value.value  # type: ignore[attr-defined]
        if size is not None and converter._assignments.get(name) == 1:
            converter.aliases[name] = size.code


def stated_rank(rewriter, shape: Shape, rank: int) -> None:
    """An array of unknown rank whose leading axes are a ``__call__`` argument's is said
    to have ``rank`` axes (``n, h, w, c = y.shape``, ``rearrange(y, 'n h w c -> ...')``):
    so has the argument, and the class is converted again for it (``InputRank``)."""
    if not (is_open(shape) and shape[0] == ANY_AXES and ANY_AXES not in shape[1:] and shape[0].input_leading
            and getattr(rewriter, "call_inputs", False) and not rewriter.depth):
        return
    index = shape[0].origin if shape[0].origin is not None else shape[0].rank_of
    leading = rank - (len(shape) - 1)  # the axes the input's leading ones are (an embedding added one after)
    if index is not None and leading >= 1:
        argument = next(name for name, at in rewriter.converter._call_param_index.items() if at == index)
        raise InputRank(argument, index, leading + 1)


def unranked_note(converter: "ClassConverter") -> str:
    """Why a size read from the front of an input is unknown, for a refusal."""
    if converter.unranked_read is None:
        return ""
    return (f" (`{converter.unranked_read}` counts axes from the front of an input whose rank the class does not "
            "state: `assert x.ndim == 4` or `n, h, w, c = x.shape` would)")


def _shape_owner(node: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """``x`` of ``x.shape``."""
    if isinstance(node, cst.Attribute) and node.attr.value == "shape":
        return node.value
    return None


def axis_input_size(parameter: str, place: tuple[int, int, int], inputs, what: str) -> Size:
    """The size a builder passes for an axis parameter (``inputs_shape_1``), from the
    shape of what it gives at that argument."""
    index, axis, rank = place
    shape = inputs[index] if index < len(inputs) else None
    if not isinstance(shape, tuple) or is_open(shape):
        raise Unconvertible(f"the input size `{parameter}` (axis {axis}) of {what} cannot be determined statically: "
                            "the rank of what is given is not known here")
    if len(shape) != rank:
        raise Unconvertible(f"{what} is given an input of {len(shape)} axes where it takes {rank}")
    if shape[axis] is None:
        raise Unconvertible(f"the input size `{parameter}` (axis {axis}) of {what} cannot be determined statically")
    return shape[axis]


def with_axis_parameters(converter: "ClassConverter", slot, child: "ConvertedClass", inputs: list) -> list:
    """Last resort for a class on its own (``ClassConverter.layer_sizes``): an axis of what it
    gives a child that nothing here knows becomes its own constructor parameter, named for the
    child's (``mixer_blocks_x_shape_1``), which whoever builds the class must pass."""
    if not converter.layer_sizes:
        return inputs
    inputs = list(inputs)
    for parameter, (index, axis, rank) in child.size_axes.items():
        shape = inputs[index] if index < len(inputs) else None
        name = f"{slot.attribute}_{parameter}"
        if not isinstance(shape, tuple) or is_open(shape) or len(shape) != rank or shape[axis] is not None \
                or name in converter.field_names:
            continue
        if name not in converter.layer_size_params:
            converter.layer_size_params.append(name)
        inputs[index] = shape[:axis] + (Size(name),) + shape[axis + 1:]
    return inputs


class InputRank(Unconvertible):
    """The class's code states the rank of an input it was converted for without one
    (``n, h, w, c = conv(x).shape``): converted again for that rank."""

    def __init__(self, argument: str, index: int, rank: int) -> None:
        super().__init__(f"`{argument}` has {rank} axes here, which its own conversion did not know")
        self.index, self.rank = index, rank


def open_input(parameter: str, index: int) -> Shape:
    """An input of unknown rank: its leading axes remember whose they are."""
    return (replace(ANY_AXES, origin=index), Size(parameter))


def on_its_own(env, node: cst.ClassDef, any_inputs: list, layer_sizes: bool = False) -> "ConvertedClass":
    """The class converted for inputs of any shape, or of the ranks its code states."""
    from nnxlint.conversion.classes import ClassConverter

    inputs = list(any_inputs)
    while True:
        try:
            return ClassConverter(env, node, inputs, layer_sizes=layer_sizes).run()
        except InputRank as stated:
            if not is_open(inputs[stated.index]):
                raise Unconvertible(str(stated)) from None
            inputs[stated.index] = (None,) * (stated.rank - 1) + (Size("?"),)


_CONVOLUTIONS = frozenset({"Conv", "ConvTranspose", "ConvLocal"})


def convolution_rank(env, node: cst.ClassDef) -> Optional[tuple[int, int]]:
    """``(i, k + 2)`` when every Linen convolution the class builds, itself, through a factory
    (``conv = partial(self.conv, use_bias=False)``, ``conv: ModuleDef = nn.Conv``) or in a
    class of the file it builds that has a rank so (jaxrl's DrQ critic, whose ``Encoder``
    holds the convolutions), has a ``kernel_size`` of ``k`` axes written out
    (``nn.Conv(32, (8, 8))``), and ``i`` is the input they read: the one input of
    ``__call__`` without a default, or else the one argument that such a layer or class is
    applied to as it is (``Encoder(...)(observations)``); None when it builds none, the
    ranks differ, or no input is told."""
    call = method_of(node, "__call__")
    if call is None:
        return None
    params = [param.name.value for param in [*call.params.posonly_params, *call.params.params][1:]]
    required = [param for param in [*call.params.posonly_params, *call.params.params][1:] if param.default is None]
    rank, applied = _convolutions(env, node, frozenset(), {})
    if rank is None or not params or any(param.default is None for param in call.params.kwonly_params):
        return None
    if len(required) == 1 and required[0].name.value == params[0]:
        return 0, rank
    read = applied & set(params)
    return (params.index(read.pop()), rank) if len(read) == 1 else None


def _convolutions(env, node: cst.ClassDef, seen: frozenset[str],
                  ranks_of: dict[str, Optional[int]]) -> tuple[Optional[int], set[str]]:
    """The one rank the class's convolutions read (None: none, or several), and the names
    that a convolution or a class of the file holding some is applied to (``conv(...)(x)``);
    ``ranks_of`` keeps each child class's rank, read once."""
    seen = seen | {node.name.value}
    ranks, applied = set(), set()
    factories = _layer_factories(env, node)
    for call in walk(node):
        if not isinstance(call, cst.Call):
            continue
        if isinstance(call.func, cst.Call) and call.args and isinstance(call.args[0].value, cst.Name) \
                and _reads_images(env, call.func, factories, seen, ranks_of):
            applied.add(call.args[0].value.value)
        child = call.func.value if isinstance(call.func, cst.Name) else None
        if child in env.linen_classes and child not in seen:
            rank = _child_rank(env, child, seen, ranks_of)
            if rank is not None:
                ranks.add(rank)
            continue
        if _built_layer(env, call.func, factories) not in _CONVOLUTIONS:
            continue
        kernel = next((arg.value for arg in call.args if arg.keyword is not None
                       and arg.keyword.value == "kernel_size"), None)
        if kernel is None:
            positional = [arg for arg in call.args if arg.keyword is None]
            kernel = positional[1].value if len(positional) > 1 and not positional[1].star else None
        if not isinstance(kernel, (cst.Tuple, cst.List)) or any(isinstance(element, cst.StarredElement)
                                                                 for element in kernel.elements):
            return None, applied
        ranks.add(len(kernel.elements) + 2)
    return (ranks.pop() if len(ranks) == 1 else None), applied


def _child_rank(env, child: str, seen: frozenset[str], ranks_of: dict[str, Optional[int]]) -> Optional[int]:
    if child not in ranks_of:
        ranks_of[child] = _convolutions(env, env.linen_classes[child], seen, ranks_of)[0]
    return ranks_of[child]


def _reads_images(env, construction: cst.Call, factories: dict[str, Optional[str]], seen: frozenset[str],
                  ranks_of: dict[str, Optional[int]]) -> bool:
    """Whether ``construction`` builds a convolution or a class of the file whose
    convolutions have a rank."""
    child = construction.func.value if isinstance(construction.func, cst.Name) else None
    if child in env.linen_classes and child not in seen:
        return _child_rank(env, child, seen, ranks_of) is not None
    return _built_layer(env, construction.func, factories) in _CONVOLUTIONS


def _layer_factories(env, node: cst.ClassDef) -> dict[str, Optional[str]]:
    """The class's names for a Linen layer: ``conv: ModuleDef = nn.Conv`` (as ``self.conv``)
    and ``conv = partial(self.conv, use_bias=False)`` -> ``'Conv'`` (None where it is no layer)."""
    factories: dict[str, Optional[str]] = {}
    for statement in node.body.body:
        line = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
        if isinstance(line, cst.AnnAssign) and isinstance(line.target, cst.Name) and line.value is not None:
            factories[f"self.{line.target.value}"] = env.linen_member(line.value)
    for assign in walk(node):
        if isinstance(assign, cst.Assign) and len(assign.targets) == 1 \
                and isinstance(assign.targets[0].target, cst.Name) and isinstance(assign.value, cst.Call) \
                and env.resolve(assign.value.func) == "functools.partial" and assign.value.args:
            factories[assign.targets[0].target.value] = _built_layer(env, assign.value.args[0].value, factories)
    return factories


def _built_layer(env, func: cst.BaseExpression, factories: dict[str, Optional[str]]) -> Optional[str]:
    """The Linen layer a call of ``func`` builds: ``nn.Conv``, or a name ``_layer_factories`` knows."""
    if isinstance(func, cst.Name) and func.value in factories:
        return factories[func.value]
    if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
        return factories.get(f"self.{func.attr.value}")
    return env.linen_member(func)


def rank_note(classes: Collection["ConvertedClass"]) -> list[str]:
    """For the fix description: the classes converted for the rank their convolutions read (one note)."""
    ranked = [converted for converted in classes if converted.assumed_rank]
    if not ranked:
        return []
    return ["; ".join(f"`{converted.name}` takes {_which_input(converted)} of {converted.assumed_rank} axes"
                      for converted in ranked) + " (a batch, the spatial axes, the features), as "
            + ("its convolutions read it" if len(ranked) == 1 else "their convolutions read it")]


def _which_input(converted: "ConvertedClass") -> str:
    if not converted.assumed_input:
        return "a first input"
    call = method_of(converted.node, "__call__")
    params = [*call.params.posonly_params, *call.params.params][1:] if call is not None else []
    return f"its input `{params[converted.assumed_input].name.value}`"


def resized(axis):
    """An axis after an operation that may change the sizes of an input's leading axes
    (a strided convolution, a pooling window, a slice): no longer known to be the input's,
    only as many."""
    if axis is None or axis.origin is None:
        return axis
    return replace(axis, origin=None, rank_of=axis.origin)


def with_input_axes(shape: Shape, inputs, values: dict) -> Shape:
    """A child's output ``(..., f)`` whose leading axes are its input's, in the terms of the
    parent that gives that input a known shape: ``(None, s, f)`` for an input ``(None, s, d)``;
    None where it is no such output."""
    if not shape or not isinstance(shape, tuple) or shape[0] is None or shape[0].origin is None:
        return None
    given = inputs[shape[0].origin] if shape[0].origin < len(inputs) else None
    if not isinstance(given, tuple) or not given or is_open(given) or ANY_AXES in shape[1:]:
        return None
    return tuple(given[:-1]) + tuple(axis if axis is None else substitute(axis.code, values) for axis in shape[1:])


_PURE_CALLS = frozenset({"tuple", "list", "len", "int", "float", "min", "max", "abs"})
_PURE_ATTRIBUTES = frozenset({"shape", "ndim"})


def without_dead_locals(original: cst.FunctionDef, converted: cst.FunctionDef,
                        fields: Collection[str]) -> cst.FunctionDef:
    """``pos_emb_shape = (1, x.shape[1], x.shape[2])``, ``n, l, d = x.shape`` or ``width =
    4 * self.stem`` (also inside a branch or loop), read only by what moved to ``__init__``:
    the statement goes (an unused local otherwise); one whose names are read in the converted
    method too, or were never read in Linen either, stays."""
    from nnxlint.conversion.base import name_counts

    before, after = name_counts(original), name_counts(converted)

    def dead(statement: cst.CSTNode) -> bool:
        targets = _pure_assignment_targets(statement, fields)
        return bool(targets) and all(after[name] == targets[name] for name in targets) \
            and any(targets[name] < before[name] for name in targets)

    class Blocks(cst.CSTTransformer):
        def leave_IndentedBlock(self, original_node, updated_node):
            kept: list = []
            carried: list = []  # the comments above a removed statement go to the next one
            for statement in updated_node.body:
                if dead(statement):
                    carried += list(statement.leading_lines)
                    continue
                if carried:
                    statement = statement.with_changes(leading_lines=[*carried, *statement.leading_lines])
                    carried = []
                kept.append(statement)
            if len(kept) == len(updated_node.body) or not kept:  # a block keeps a statement
                return updated_node
            return updated_node.with_changes(body=kept)

        def visit_FunctionDef(self, node) -> bool:  # a nested function's locals are its own
            return node is converted

        visit_Lambda = visit_ClassDef = visit_FunctionDef

    return converted.visit(Blocks())


def _pure_assignment_targets(statement: cst.CSTNode, fields: Collection[str]) -> dict:
    """The names a one-line ``names = <arithmetic of sizes and fields>`` binds (with how often
    each stands in the target), or {} for any other statement."""
    from nnxlint.context import walk
    from nnxlint.conversion.base import name_counts

    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Assign) and len(statement.body[0].targets) == 1):
        return {}
    assign = statement.body[0]
    target = assign.targets[0].target
    names = [target] if isinstance(target, cst.Name) else [element.value for element in target.elements] \
        if isinstance(target, (cst.Tuple, cst.List)) else []
    if not names or not all(isinstance(name, cst.Name) for name in names):
        return {}
    for node in walk(assign.value):
        if isinstance(node, cst.Call) and not (isinstance(node.func, cst.Name) and node.func.value in _PURE_CALLS):
            return {}
        if isinstance(node, cst.Attribute) and node.attr.value not in _PURE_ATTRIBUTES \
                and _field_chain(node) not in fields:
            return {}
        if isinstance(node, (cst.Await, cst.Lambda, cst.NamedExpr, cst.Yield)):
            return {}
    return dict(name_counts(target))


def _field_chain(node: cst.Attribute):
    """``self.config.width`` -> ``config``: the field an attribute chain on ``self`` starts with."""
    from nnxlint.conversion.base import self_attribute

    while isinstance(node.value, cst.Attribute):
        node = node.value
    return self_attribute(node)
