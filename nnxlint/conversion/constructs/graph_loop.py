"""A message-passing loop: modules handed to jraph (``jraph_graph.py``) made anew
at each pass, some under tests on fields::

    for _ in range(self.steps):
        update = jraph.concatenated_args(MLP(sizes))
        graphs = jraph.GraphConvolution(update_node_fn=update)(graphs)
        if self.layer_norm:
            graphs = graphs._replace(nodes=nn.LayerNorm()(graphs.nodes))

Linen numbers each class's modules in the order they are made (``MLP_0``,
``MLP_1``, ...).  ``__init__`` makes them in that same order, by the same loop
and tests, into one ``nnx.List`` per class named after it
(``naming.nnx_list_name``: ``mlps``, ``layer_norms``), so ``nnxlint.transplant``
loads ``MLP_2`` into ``mlps/2``; ``__call__`` takes them in that order from an
iterator over each list made before the loop::

    mlps = iter(self.mlps)
    for _ in range(self.steps):
        update = jraph.concatenated_args(next(mlps))

A size that a pass changes (a skip connection ``graphs + step(graphs)`` whose
sum is ``max(a, b)``, an update whose output is wider than its input) is carried
from pass to pass as Linen carries it: ``__init__`` starts a running size before
its loop and sets it from the pass's sizes at the end of each pass, so each pass
builds its modules for the sizes that pass sees::

    graphs_nodes_size = width
    for _ in range(steps):
        self.perceptrons.append(Perceptron(2 * graphs_nodes_size, ..., rngs=rngs))
        graphs_nodes_size = 2 * graphs_nodes_size

Converted where the tests read only fields and the loop's classes are made
nowhere else in the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import Slot, Unconvertible, arg_keyword, name_counts, names_read, substitute
from nnxlint.conversion.constructs.branch_sizes import all_of
from nnxlint.conversion.jraph_map import CONCATENATED_ARGS, GRAPH_FEATURES, GRAPH_MODELS
from nnxlint.conversion.naming import nnx_list_name
from nnxlint.conversion.shapes import Several, Shape, Size, collect_terms, tidy_code

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter

# code that may run more than once per pass of the loop around it
_REPEATING = (cst.For, cst.While, cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp, cst.Lambda,
              cst.FunctionDef)


@dataclass
class GraphLoop:
    node: cst.For
    depth: int  # the rewriter's depth inside the loop's body
    conditions_before: int  # enclosing tests of the rewriter outside the loop
    shapes_before: dict
    lists: dict[str, list[str]] = field(default_factory=dict)  # list -> its element constructions (first one kept)
    made: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)  # (list, element code, tests)
    constructions: dict[str, cst.Call] = field(default_factory=dict)  # list -> a construction (for its slot)
    # a name the loop assigns: (its shape before the loop, its shape at the start of a pass, whose last
    # axes are running sizes: ``graphs_nodes_size``)
    carried: dict[str, tuple[Shape, Shape]] = field(default_factory=dict)
    running: dict[str, str] = field(default_factory=dict)  # running size -> its code before the loop


def begin_graph_loop(rewriter: "CallRewriter", node: cst.For) -> bool:
    """A loop under ``@nn.compact`` whose body hands modules to jraph: True when it is one."""
    converter = rewriter.converter
    if not converter._compact or not _hands_modules_to_jraph(rewriter, node.body):
        return False
    if rewriter.graph_loops or rewriter.depth:
        raise Unconvertible("a message-passing loop inside another loop or a branch is not converted")
    if _repeats_inside(rewriter, node.body):
        raise Unconvertible("a module made in a loop (or comprehension) inside a message-passing loop is not "
                            "converted: `__init__` makes the modules of one pass in order")
    classes = _made_classes(rewriter, node.body)
    outside = _made_classes(rewriter, converter.node, skip=node)
    twice = sorted(classes & outside)
    if twice:
        raise Unconvertible(f"`{twice[0]}` is made both inside a message-passing loop and outside it: Linen numbers "
                            "them together, which one `nnx.List` per class does not keep")
    loop = GraphLoop(node, rewriter.depth + 1, len(rewriter.conditions), dict(rewriter.shapes))
    taken = set(name_counts(converter.node)) | converter.field_names
    for name in sorted(_assigned_names(node.body)):
        before = rewriter.shapes.get(name)
        start = _with_running_sizes(name, before, taken, loop.running)
        if start != before:
            loop.carried[name] = (before, start)
            rewriter.shapes[name] = start
    rewriter.graph_loops.append(loop)
    return True


def end_graph_loop(rewriter: "CallRewriter", original: cst.For, updated: cst.For) -> cst.CSTNode:
    """``__init__`` builds the lists by the same loop; ``__call__`` iterates over them."""
    loop = rewriter.graph_loops[-1] if rewriter.graph_loops else None
    if loop is None or loop.node is not original:
        return updated
    rewriter.graph_loops.pop()
    converter = rewriter.converter
    updates = _running_size_updates(rewriter, loop)
    for name, shape in loop.shapes_before.items():
        if name not in loop.carried and rewriter.shapes.get(name) != shape:
            raise Unconvertible(f"`{name}` has other sizes after a pass of the message-passing loop than before it"
                                f"{_changes(shape, rewriter.shapes.get(name))}: its modules would differ from pass "
                                "to pass")
    if not loop.made:
        for name in loop.carried:  # no ``__init__`` loop to carry a running size
            rewriter.shapes[name] = loop.carried[name][0] if not updates else None
        return updated
    if any(not element for _, element, _ in loop.made):
        raise Unconvertible("a module made in a message-passing loop is not called in the same pass")
    indent = converter.env.module.default_indent
    nnx = converter.env.nnx
    header = f"for {converter.env.code(original.target)} in {converter.init_code(original.iter, {})}:"
    lines = [f"{size} = {tidy_code(loop.running[size])}" for size in updates]
    lines.append(header)
    for name, element, tests in loop.made:
        test = all_of(tests)
        prefix = indent
        if test:
            lines.append(f"{indent}if {test}:")
            prefix = indent * 2
        lines.append(f"{prefix}self.{name}.append({element})")
    if updates:
        lines.append(f"{indent}{', '.join(updates)} = {', '.join(tidy_code(code) for code in updates.values())}")
    names = list(loop.constructions)
    for name in names:
        slot = converter._add_slot(name, loop.constructions[name])
        slot.init_code = f"self.{name} = {nnx}.List()"
    last = converter.slots[names[-1]]
    last.init_code = f"{last.init_code}\n" + "\n".join(lines)
    iterators = [cst.parse_statement(f"{name} = iter(self.{name})\n") for name in names]
    iterators[0] = iterators[0].with_changes(leading_lines=updated.leading_lines)
    return cst.FlattenSentinel([*iterators, _without_dead_values(rewriter, original, updated)])


def _assigned_names(body: cst.CSTNode) -> set[str]:
    """The names a statement of ``body`` binds (``graphs = ...``, ``a, b = ...``)."""
    names: set[str] = set()

    class Find(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return False

        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            targets = [element.value for element in node.target.elements] \
                if isinstance(node.target, (cst.Tuple, cst.List)) else [node.target]
            names.update(target.value for target in targets if isinstance(target, cst.Name))

        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            if isinstance(node.target, cst.Name):
                names.add(node.target.value)

    body.visit(Find())
    return names


def _with_running_sizes(name: str, shape, taken: set[str], running: dict[str, str]):
    """``shape`` with each known last axis a running size named after ``name``
    (``graphs_nodes_size`` for a graph's nodes, ``x_size`` for an array), recorded
    in ``running`` with its code before the loop."""
    def carried(label: str, part: Shape) -> Shape:
        size = f"{label}_size"
        if not part or part[-1] is None or part[-1].value is not None and part[-1].value <= 1 or size in taken:
            return part  # (a size of 1 broadcasts, and is not carried)
        running[size] = part[-1].code
        return (*part[:-1], Size(size))

    if isinstance(shape, Several):
        labels = GRAPH_FEATURES if len(shape.parts) == len(GRAPH_FEATURES) else range(len(shape.parts))
        return type(shape)(tuple(carried(f"{name}_{label}", part) for label, part in zip(labels, shape.parts)))
    return carried(name, shape)


def _ends(loop: GraphLoop, start, after) -> list[tuple[str, Optional[Size]]]:
    """(running size, its axis in ``after``, None where ``after``'s other axes differ)."""
    if isinstance(start, Several):
        matched = isinstance(after, Several) and len(after.parts) == len(start.parts)
        return [pair for index, part in enumerate(start.parts)
                for pair in _ends(loop, part, after.parts[index] if matched else None)]
    if not start or start[-1] is None or start[-1].code not in loop.running:
        return []
    same_rank = after is not None and not isinstance(after, Several) and len(after) == len(start) \
        and after[:-1] == start[:-1]
    return [(start[-1].code, after[-1] if same_rank else None)]


def _running_size_updates(rewriter: "CallRewriter", loop: GraphLoop) -> dict[str, str]:
    """The running sizes that a pass changes, with their code at the end of a pass.

    Sizes it leaves alone become their value before the loop again, in the modules
    the pass made and in the shapes after it.  After the loop, a carried name's
    shape is its running sizes (which ``__init__``'s loop leaves at their last
    value); another name read from a running size is unknown there (it holds a
    value of the last pass's start)."""
    ends: dict[str, str] = {}
    for name, (_, start) in loop.carried.items():
        for size, after in _ends(loop, start, rewriter.shapes.get(name)):
            if after is None:
                raise Unconvertible(f"`{name}` has other axes after a pass of the message-passing loop than before "
                                    "it: its modules would differ from pass to pass")
            ends[size] = after.code
    changed = _changed_sizes(loop, ends)
    unchanged = {size: loop.running[size] for size in ends if size not in changed}
    changed = {size: _substituted(end, unchanged) for size, end in changed.items()}
    loop.made[:] = [(name, _substituted(element, unchanged), tests) for name, element, tests in loop.made]
    for name, shape in list(rewriter.shapes.items()):
        if name in loop.carried:
            before, start = loop.carried[name]
            rewriter.shapes[name] = _substituted_shape(start, unchanged) if changed.keys() & _names_of(start) \
                else before
        elif shape is not None and changed.keys() & _names_of(shape):
            rewriter.shapes[name] = None
        elif shape is not None and unchanged.keys() & _names_of(shape):
            rewriter.shapes[name] = _substituted_shape(shape, unchanged)
    return changed


def _changed_sizes(loop: GraphLoop, ends: dict[str, str]) -> dict[str, str]:
    """The running sizes that may differ from one pass to the next: by induction, a size
    is the same at every pass when its end, computed from the sizes before the loop, is
    its size before the loop, and it reads no size that changes."""
    changed = {size: end for size, end in ends.items()
               if tidy_code(_substituted(end, loop.running)) != tidy_code(loop.running[size])}
    growing = True
    while growing:
        growing = False
        for size, end in ends.items():
            if size not in changed and changed.keys() & _names(end):
                changed[size] = end
                growing = True
    return changed


def _names(code: str) -> set[str]:
    return names_read(cst.parse_expression(code))


def _names_of(shape) -> set[str]:
    parts = shape.parts if isinstance(shape, Several) else (shape,)
    return {name for part in parts if part for axis in part if axis is not None and axis.code != "..."
            for name in _names(axis.code)}


def _substituted_shape(shape, sizes: dict[str, str]):
    if isinstance(shape, Several):
        return type(shape)(tuple(_substituted_shape(part, sizes) for part in shape.parts))
    if not shape:
        return shape
    return tuple(axis if axis is None else Size(_substituted(axis.code, sizes), axis.value) for axis in shape)


def _substituted(code: str, sizes: dict[str, str]) -> str:
    """``code`` with each running size in ``sizes`` replaced by its code, like terms added up."""
    if not sizes.keys() & _names(code):
        return code
    return collect_terms(substitute(code, sizes).code)


def _changes(before, after) -> str:
    """`` (its edges: `a` after, `b` before)``: the last axes that differ."""
    def last(shape) -> str:
        return f"`{tidy_code(shape[-1].code)}`" if shape and shape[-1] is not None else "unknown"

    if isinstance(before, Several) and isinstance(after, Several) and len(before.parts) == len(after.parts):
        labels = GRAPH_FEATURES if len(before.parts) == len(GRAPH_FEATURES) else range(len(before.parts))
        changed = [f"{label}: {last(b)} before, {last(a)} after"
                   for label, b, a in zip(labels, before.parts, after.parts) if a != b]
        return f" (its {'; '.join(changed)})" if changed else ""
    return f" ({last(before)} before, {last(after)} after)" if not isinstance(before, Several) else ""


def _without_dead_values(rewriter: "CallRewriter", original: cst.For, updated: cst.For) -> cst.For:
    """``sizes = [self.width] * self.depth`` at the top of the body, read only by the
    modules ``__init__`` now makes: the statement goes (and the fields it read, unless
    read elsewhere)."""
    converter = rewriter.converter
    body = list(updated.body.body) if isinstance(updated.body, cst.IndentedBlock) else []
    read_outside = name_counts(converter.node) - name_counts(original)
    kept = []
    for statement in body:
        assign = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 \
            else None
        name = assign.targets[0].target.value if isinstance(assign, cst.Assign) and len(assign.targets) == 1 \
            and isinstance(assign.targets[0].target, cst.Name) else None
        if name in converter.aliases and not read_outside[name] and name_counts(updated.body)[name] == 1:
            continue
        kept.append(statement)
    if len(kept) == len(body) or not kept:
        return updated.with_changes(leading_lines=[])
    kept[0] = kept[0].with_changes(leading_lines=body[0].leading_lines)
    return updated.with_changes(leading_lines=[], body=updated.body.with_changes(body=kept))


def looped_module(rewriter: "CallRewriter", construction: cst.Call) -> Optional[tuple[str, Slot, int]]:
    """A module made inside the loop: the list it goes to, a slot (not an attribute)
    that learns its construction when called, and its place among the loop's modules;
    None outside a message-passing loop."""
    loop = rewriter.graph_loops[-1] if rewriter.graph_loops else None
    if loop is None:
        return None
    converter = rewriter.converter
    layer = converter.layer(construction.func)
    assert layer is not None
    if any(arg_keyword(arg) == "name" for arg in construction.args) or layer.factory is not None or layer.choices:
        raise Unconvertible(f"`{converter.env.code(construction.func)}(...)` in a message-passing loop: only "
                            "modules Linen names by class and count are converted there")
    tests = tuple(rewriter.conditions[loop.conditions_before:])
    if any(test is None for test in tests):
        raise Unconvertible(f"`{converter.env.code(construction.func)}(...)` in a message-passing loop under a test "
                            "of a value of `__call__`")
    type_name = layer.mapping.linen if layer.mapping else layer.user_class.rpartition(".")[2]  # type: ignore
    name = nnx_list_name(type_name)
    if name in converter.field_names or converter._assignments.get(name):
        raise Unconvertible(f"the name `{name}` (the list of a message-passing loop's `{type_name}`s) is taken")
    loop.constructions.setdefault(name, construction)
    loop.made.append((name, "", tests))  # the element's code once it is called
    return name, Slot(name, construction), len(loop.made) - 1


def element_made(rewriter: "CallRewriter", slot: Slot, position: int) -> None:
    """The element's code, now that its input sizes are known."""
    loop = rewriter.graph_loops[-1]
    name, _, tests = loop.made[position]
    loop.made[position] = (name, slot.init_code.partition(" = ")[2], tests)  # type: ignore[union-attr]


def looped_call(rewriter: "CallRewriter", construction: cst.Call, original: cst.Call,
                updated: cst.Call) -> Optional[cst.BaseExpression]:
    """``nn.LayerNorm()(x)`` in the loop: ``next(layer_norms)(x)``; None outside one."""
    made = looped_module(rewriter, construction)
    if made is None:
        return None
    name, slot, position = made
    call = rewriter._call_slot(slot, original, updated)
    element_made(rewriter, slot, position)
    return call.with_changes(func=cst.parse_expression(f"next({name})"))


def _hands_modules_to_jraph(rewriter: "CallRewriter", body: cst.CSTNode) -> bool:
    resolve = rewriter.converter.env.resolve
    found = []

    class Find(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            if resolve(call.func) in GRAPH_MODELS or resolve(call.func) == CONCATENATED_ARGS:
                found.append(call)

    body.visit(Find())
    return bool(found)


def _repeats_inside(rewriter: "CallRewriter", body: cst.CSTNode) -> bool:
    """A module construction inside a loop, comprehension or function within ``body``."""
    converter = rewriter.converter
    found = []

    class Find(cst.CSTVisitor):
        def __init__(self) -> None:
            super().__init__()
            self.inner = 0

        def on_visit(self, node: cst.CSTNode) -> bool:
            self.inner += isinstance(node, _REPEATING)
            if self.inner and isinstance(node, cst.Call) and converter.layer(node.func) is not None:
                found.append(node)
            return True

        def on_leave(self, original_node: cst.CSTNode) -> None:
            self.inner -= isinstance(original_node, _REPEATING)

    body.visit(Find())
    return bool(found)


def _made_classes(rewriter: "CallRewriter", node: cst.CSTNode, skip: Optional[cst.CSTNode] = None) -> set[str]:
    """The type names (``Dense``, ``MLP``) of the modules constructed in ``node``."""
    converter = rewriter.converter
    made: set[str] = set()

    class Find(cst.CSTVisitor):
        def visit_For(self, loop: cst.For) -> bool:
            return loop is not skip

        def visit_Call(self, call: cst.Call) -> None:
            layer = converter.layer(call.func)
            if layer is not None and layer.factory is None:
                made.add(layer.mapping.linen if layer.mapping else layer.user_class.rpartition(".")[2])  # type: ignore

    node.visit(Find())
    return made
