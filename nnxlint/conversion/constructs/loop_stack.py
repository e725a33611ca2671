"""A stack of modules built by a Python loop under ``@nn.compact``::

    for i in range(self.depth):
        x = Block(self.width)(x)

Linen names the modules ``Block_0``, ``Block_1``, ... by class and count; NNX
holds them in an ``nnx.List`` named after the class (``naming.nnx_list_name``:
``blocks``), built in ``__init__`` by the same loop and indexed by it where
called::

    self.blocks = nnx.List([Block(width, rngs=rngs) for i in range(depth)])
    ...
    for i in range(self.depth):
        x = self.blocks[i](x)

so ``nnxlint.transplant`` loads ``Block_2`` into ``blocks/2``.  Converted only
where that naming holds and every element is built alike: a ``for <name> in
range(<n>)`` loop (or one over values fixed for the module: ``for size in
self.feature_sizes``, ``enumerate(...)`` of them, indexed through ``enumerate``),
each class created once per iteration, unconditionally, and nowhere else in the
class (or named ``name=f'block_{i}'``, Linen's ``block_2``, NNX's ``block/2``,
as in Flax's lm1b and wmt examples), not inside another loop.  A loop inside branches
whose tests read only fields (``if self.resnet is not None:``) builds its list in
``__init__`` under the same test (``constructs/branch_module.py``).

A module named by another f-string of the loop's variables (BiT's stages:
``name='unit1'`` before the loop, ``name=f'unit{i + 1}'`` in it) keeps its Linen
name as an attribute, so checkpoints load under the same paths::

    for i in range(1, block_size):
        setattr(self, f'unit{i + 1}', ResidualUnit(x_features, nout, rngs=rngs))
    ...
    for i in range(1, self.block_size):
        x = getattr(self, f'unit{i + 1}')(x)

Where the loop changes an input's feature size (``x = nn.Dense(size)(x)``: each
element reads what the one before gave), ``__init__`` builds the list with the
same loop and a running size named after the array (``x_features``), started
at the size before the loop and moved on at the end of each iteration::

    x_features = in_features
    self.denses = nnx.List()
    for size in feature_sizes:
        self.denses.append(nnx.Linear(x_features, size, rngs=rngs))
        x_features = size
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import IDENTIFIER, Unconvertible, arg_keyword, name_counts, names_read, self_attribute
from nnxlint.conversion.constructs.built_output_size import built_element
from nnxlint.conversion.constructs.class_field import list_name
from nnxlint.conversion.naming import nnx_list_name
from nnxlint.conversion.shapes import ANY_AXES, SIMPLE_CODE, Shape, Size, is_open

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter

# the loop variable written for ``for _ in range(n)``, which the element index needs
_INDEX = "index"


@dataclass
class StackLoop:
    """A ``for <index> in range(<count>)`` loop that may build a stack."""

    index: str
    count: cst.BaseExpression  # ``range``'s count, or what a loop over values iterates
    depth: int  # the rewriter's depth inside the loop's body
    shapes_before: dict[str, Shape]
    lists: set[str] = field(default_factory=set)  # the nnx.List attributes the body fills
    target: str = ""  # ``size`` / ``i, size`` of a loop over values (``__init__``'s loop target)
    enumerated: bool = False  # ``for v in values`` gets an index: ``for index, v in enumerate(values)``
    running: dict[str, str] = field(default_factory=dict)  # array name -> its running size in ``__init__``
    # array name -> {axis: its running size}: the spatial axes a loop of convolutions shrinks
    running_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    running_shapes: dict[str, Shape] = field(default_factory=dict)  # the shapes the body starts from
    node: cst.For | None = None
    parent: "StackLoop | None" = None  # the loop whose body is only this one (a nest of loops)
    levels: int = 1  # loops of the nest down to this one
    locals: list[str] = field(default_factory=list)  # ``strides = ...`` of the body, in ``__init__`` terms
    local_assigns: set[int] = field(default_factory=set)
    deepest: "StackLoop | None" = None  # the innermost loop of a nest, which builds the modules
    replacement: tuple[str, str, int] | None = None  # a nest in ``__call__``: (element, list, statement index)
    named: dict[str, str] = field(default_factory=dict)  # ``unit_`` -> ``f'unit{i + 1}'``: an attribute per iteration

    @property
    def root(self) -> "StackLoop":
        return self if self.parent is None else self.parent.root

    def nest(self) -> list["StackLoop"]:
        """The loops from the outermost down to this one."""
        return ([] if self.parent is None else self.parent.nest()) + [self]


def stack_loop(rewriter: CallRewriter, node: cst.For) -> StackLoop | None:
    """The loop's stack context, or None when it is no ``for <name> in range(<n>)``,
    ``for <name> in <values>`` or ``for <i>, <name> in enumerate(<values>)`` over values
    fixed for the module (fields, literals)."""
    call, target, converter = node.iter, node.target, rewriter.converter
    if node.orelse is not None or node.asynchronous is not None:
        return None
    if isinstance(target, cst.Name) and isinstance(call, cst.Call) and _single_arg(call) \
            and _is_builtin(rewriter, call.func, "range"):
        index = target.value
        if index == "_" and (converter._assignments.get(_INDEX) or _reads(node.body, "_")):
            return None
        loop = StackLoop(_INDEX if index == "_" else index, call.args[0].value, rewriter.depth,
                         dict(rewriter.shapes))
    elif isinstance(target, cst.Tuple) and len(target.elements) == 2 and isinstance(call, cst.Call) \
            and _single_arg(call) and _is_builtin(rewriter, call.func, "enumerate") \
            and all(isinstance(element.value, cst.Name) for element in target.elements) \
            and converter._fixed(call.args[0].value):
        index, value = (element.value.value for element in target.elements)  # type: ignore[attr-defined]
        loop = StackLoop(index, call, rewriter.depth, dict(rewriter.shapes), target=f"{index}, {value}")
    elif _plain_targets(target) and converter._fixed(call) \
            and not converter._assignments.get(_INDEX) and not _reads(node.body, _INDEX):
        # ``for size in self.sizes`` / ``for size, stride in zip(self.sizes, self.strides)``
        loop = StackLoop(_INDEX, call, rewriter.depth, dict(rewriter.shapes), enumerated=True,
                         target=", ".join(_plain_targets(target)))
    else:
        return None
    loop.node = node
    enclosing = rewriter.loops[-1] if rewriter.loops else None
    if enclosing is not None and rewriter.depth == enclosing.depth + 1 and _only_statement(enclosing, node):
        loop.parent, loop.levels = enclosing, enclosing.levels + 1  # the sizes run over the whole nest
        loop.shapes_before, loop.running, loop.running_shapes, loop.running_axes = \
            enclosing.shapes_before, enclosing.running, enclosing.running_shapes, enclosing.running_axes
        return loop
    _start_running_sizes(rewriter, loop)
    return loop


def _only_statement(loop: StackLoop, node: cst.For) -> bool:
    body = loop.node.body.body if loop.node is not None and isinstance(loop.node.body, cst.IndentedBlock) else ()
    return len(body) == 1 and body[0] is node


def record_loop_local(rewriter: CallRewriter, node: cst.Assign) -> None:
    """``strides = (2, 2) if i > 0 else (1, 1)`` in a stack loop's body, computed from the
    loop targets and fields only: ``__init__``'s loop computes it too, for the elements."""
    loop = rewriter.loops[-1] if rewriter.loops else None
    target = node.targets[0].target if len(node.targets) == 1 else None
    if loop is None or rewriter.depth != loop.depth or not isinstance(target, cst.Name):
        return
    known = {name for level in loop.nest() for name in _targets(level)} | {
        line.partition(" = ")[0] for level in loop.nest() for line in level.locals}
    converter = rewriter.converter
    local = set(rewriter.shapes) | set(converter._call_param_index)  # they shadow a module-level ``x``
    if any(name not in known and (name in local or not converter._fixed_name(name))
           for name in names_read(node.value)):
        return
    try:
        code = converter.init_code(node.value, {})
    except Unconvertible:
        return
    loop.locals.append(f"{target.value} = {code}")
    loop.local_assigns.add(id(node))


def _plain_targets(target: cst.BaseAssignTargetExpression) -> list[str]:
    """The names a loop binds: one name, or a flat tuple of names (none of them ``_``)."""
    names = [target] if isinstance(target, cst.Name) else [element.value for element in target.elements] \
        if isinstance(target, (cst.Tuple, cst.List)) else []
    if names and all(isinstance(name, cst.Name) and name.value != "_" for name in names):
        return [name.value for name in names]  # type: ignore[union-attr]
    return []


def _targets(loop: StackLoop) -> list[str]:
    return [part.strip() for part in loop.target.split(",")] if loop.target else [loop.index]


def _single_arg(call: cst.Call) -> bool:
    return len(call.args) == 1 and call.args[0].keyword is None and not call.args[0].star


def _start_running_sizes(rewriter: CallRewriter, loop: StackLoop) -> None:
    """Inside the loop each array's feature size is a running size (``x_features``),
    which ``close_loop`` replaces by the size before the loop where the loop keeps it.
    Of an array of known rank, each known axis between the batch and the features is
    one too (``x_shape_1``: convolutions in the loop may shrink it); the other axes
    become unknown (an iteration may change them)."""
    converter = rewriter.converter
    taken = converter.field_names | set(converter._size_names())

    def free(running: str) -> bool:
        return running not in taken and not converter._assignments.get(running)

    for name, shape in loop.shapes_before.items():
        running = f"{name}_features"
        if not isinstance(shape, tuple) or shape[-1] is None or shape[-1] == ANY_AXES or not free(running):
            continue
        loop.running[name] = running
        if is_open(shape):
            leading = shape[:-1]
        else:
            axes = {axis: next((candidate for candidate in (f"{name}_shape_{axis}", f"{name}_axis_{axis}")
                                if free(candidate)), None)
                    for axis in range(1, len(shape) - 1) if shape[axis] is not None}
            loop.running_axes[name] = {axis: running for axis, running in axes.items() if running is not None}
            leading = (None,) + tuple(Size(loop.running_axes[name][axis]) if axis in loop.running_axes[name]
                                      else None for axis in range(1, len(shape) - 1))
        rewriter.shapes[name] = loop.running_shapes[name] = tuple(leading) + (Size(running),)


def _is_builtin(rewriter: CallRewriter, func: cst.BaseExpression, name: str) -> bool:
    return isinstance(func, cst.Name) and func.value == name and rewriter.converter.env.scope.lookup(name) is None


def _reads(node: cst.CSTNode, name: str) -> bool:
    found = []

    class Reads(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            found.append(node.value == name)

    node.visit(Reads())
    return any(found)


def loop_header(loop: StackLoop, node: cst.For) -> cst.For:
    """The loop as NNX needs it: ``for _`` names its index, ``for v in values`` gets one;
    a nest of loops, ``for block in self.blocks``."""
    if loop.replacement is not None:
        element, attribute, index = loop.replacement
        inner = node
        while isinstance(inner.body.body[0], cst.For) and index >= 0 and inner.body.body[0] is not None \
                and isinstance(inner.body, cst.IndentedBlock) and len(inner.body.body) == 1:
            inner = inner.body.body[0]
        call = inner.body.body[index]  # type: ignore[index]
        statement = re.sub(re.escape(f"self.{attribute}[") + r"[A-Za-z_][A-Za-z0-9_]*\]", element,
                           cst.Module([]).code_for_node(call).strip(), count=1)
        indent = "    " if not isinstance(node.body, cst.IndentedBlock) or node.body.indent is None \
            else node.body.indent
        return node.with_changes(target=cst.Name(element), iter=cst.parse_expression(f"self.{attribute}"),
                                 body=cst.parse_statement(f"for _ in _:\n{indent}{statement}\n").body)
    if not loop.lists or loop.parent is not None or loop.lists <= set(loop.named):
        return node  # attributes named per iteration need no list index
    if loop.enumerated:
        values = node.target if isinstance(node.target, cst.Name) or node.target.lpar \
            else node.target.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        target = cst.Tuple([cst.Element(cst.Name(loop.index)), cst.Element(values)], lpar=[], rpar=[])
        return node.with_changes(target=target, iter=cst.Call(cst.Name("enumerate"), [cst.Arg(node.iter)]))
    if isinstance(node.target, cst.Name) and node.target.value != loop.index:
        return node.with_changes(target=cst.Name(loop.index))
    return node


def close_loop(rewriter: CallRewriter, loop: StackLoop) -> None:
    """At the end of the loop: each list's ``__init__`` code, and the shapes after the loop.

    An array whose feature size the loop keeps gets its size before the loop back
    in the elements' code (a comprehension builds the list); where the loop changes
    it and an element reads it, ``__init__`` runs the loop with the running size."""
    if loop.parent is not None:
        loop.root.deepest = loop.root.deepest or loop
        return
    converter = rewriter.converter
    nest = loop.deepest.nest() if loop.deepest is not None else [loop]
    nested = len(nest) > 1
    before = {name: loop.shapes_before[name][-1] for name in loop.running}  # type: ignore[index]
    after = {name: _last_axis(rewriter.shapes.get(name)) for name in loop.running}
    kept = {name for name in loop.running if after[name] is not None
            and after[name].code in (loop.running[name], before[name].code)}
    kept_values = {loop.running[name]: before[name].code for name in kept}
    changed = {loop.running[name]: after[name] for name in loop.running if name not in kept}
    axis_starts, axis_changes = _running_axis_changes(rewriter, loop)
    sized = False
    for attribute in sorted(loop.lists):
        slot = converter.slots[attribute]
        element = _replaced(slot.init_code.partition(" = ")[2], kept_values)  # type: ignore[union-attr]
        read = [name for name in loop.running if name not in kept
                and re.search(rf"\b{loop.running[name]}\b", element)]
        unknown = next((name for name in read if after[name] is None), None)
        if unknown is not None:
            raise Unconvertible(f"the modules a loop creates get inputs of other sizes in later iterations "
                                f"(`{unknown}` changes shape in a way not followed): they cannot be built in an "
                                "`nnx.List`")
        if read or nested or nest[-1].locals or attribute in loop.named:
            slot.init_code = _sized_loop(converter, nest, attribute, element, before, changed, loop.named,
                                         axis_starts, axis_changes)
            sized = True
            if attribute in converter.slot_guards:  # the running sizes exist only under the loop's test
                converter.guarded_locals.update(loop.running.values())
        else:
            slot.init_code = f"self.{attribute} = {converter.env.nnx}.List([{element} " \
                             f"{_header(converter, loop, rewriter.shapes)}])"
    if nested:
        loop.replacement = _nest_replacement(rewriter, loop, nest)
    if sized and not nested and loop.target:
        _final_sizes(converter, loop, before, changed, rewriter.shapes)
    for name in loop.running:  # the shapes after the loop, in ``__init__`` terms
        shape = rewriter.shapes.get(name)
        if shape == loop.running_shapes[name]:  # the loop does not touch it
            rewriter.shapes[name] = loop.shapes_before[name]
        elif shape:
            last = before[name] if name in kept else Size(loop.running[name]) if sized and after[name] else None
            rewriter.shapes[name] = _after_axes(shape, loop, name, axis_changes, sized) + (last,)
            for size in rewriter.shapes[name]:  # an ``__init__`` local, unknown outside
                if size is not None and size.code in (loop.running[name], *loop.running_axes.get(name, {}).values()):
                    converter.final_sizes.setdefault(size.code, None)
    for name, shape in rewriter.shapes.items():  # names bound in the body: sizes in the loop's terms
        if name not in loop.shapes_before and isinstance(shape, tuple) and shape[-1] is not None \
                and shape[-1] != ANY_AXES:  # (not a ``Several``: a graph, a tuple)
            rewriter.shapes[name] = shape[:-1] + (None,)


def _running_axis_changes(rewriter: CallRewriter, loop: StackLoop) -> tuple[dict[str, str], dict[str, Size]]:
    """The running sizes of spatial axes (``_start_running_sizes``) that the loop's body
    changes: each one's size before the loop, and its size at the end of an iteration in
    terms of its own running size (``(x_shape_1 - 3) // stride + 1``; ``__init__`` moves
    them on one after another); an axis the body leaves unknown, or sizes from another
    running size, is not followed."""
    starts, changes = {}, {}
    running_sizes = {*loop.running.values(), *(name for axes in loop.running_axes.values() for name in axes.values())}
    for name, axes in loop.running_axes.items():
        shape = rewriter.shapes.get(name)
        for axis, running in axes.items():
            after = shape[axis] if isinstance(shape, tuple) and not is_open(shape) \
                and len(shape) == len(loop.shapes_before[name]) else None
            if after is not None and after.code != running \
                    and not names_read(cst.parse_expression(after.code)) & (running_sizes - {running}):
                starts[running], changes[running] = loop.shapes_before[name][axis].code, after
    rewriter.converter.running_axes.update(changes)
    return starts, changes


def _after_axes(shape: tuple, loop: StackLoop, name: str, changes: dict[str, Size], sized: bool) -> tuple:
    """The axes before the features after the loop: those it keeps as before it, those it
    changes as their running sizes where ``__init__`` runs the loop (``sized``)."""
    axes = loop.running_axes.get(name, {})
    before = loop.shapes_before[name]
    if len(shape) != len(before):  # the body changed the rank
        return (None,) * (len(shape) - 1)
    result = []
    for axis, size in enumerate(shape[:-1]):
        running = axes.get(axis)
        if running is None:
            result.append(before[axis] if size == before[axis] else None)
        elif size is not None and size.code == running:
            result.append(before[axis])  # untouched by the body
        else:
            result.append(Size(running) if sized and running in changes else None)
    return tuple(result)


def without_unread_sizes(lines: list[str], names: set[str]) -> list[str]:
    """``__init__``'s lines without the assignments of running spatial sizes that nothing
    else reads (a loop of strided convolutions before a mean over the axes): only a
    flatten after the loop needs them."""
    physical = [part for line in lines for part in line.split("\n")]
    for name in sorted(names):
        assignment = re.compile(rf"^\s*{re.escape(name)} = ")
        word = re.compile(rf"\b{re.escape(name)}\b")
        if not any(word.search(line) for line in physical if not assignment.match(line)):
            physical = [line for line in physical if not assignment.match(line)]
    return physical


def _last_axis(shape: Shape) -> Size | None:
    return shape[-1] if shape and shape[-1] != ANY_AXES else None


def _replaced(code: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        code = re.sub(rf"\b{name}\b", value if SIMPLE_CODE.fullmatch(value) else f"({value})", code)
    return code


def _final_sizes(converter, loop: StackLoop, before: dict[str, Size], changed: dict[str, Size | None],
                 shapes: dict[str, Shape]) -> None:
    """A running size that each pass sets to the loop's value (``x_features = size`` over
    ``feature_sizes``) ends as the last value, or the size before the loop when there is
    none: that expression of fields, not the ``__init__`` local, is what a class's
    output size tells the classes that build it (``ClassConverter.final_sizes``)."""
    iterated, value = loop.count, loop.target
    if isinstance(iterated, cst.Call) and not loop.enumerated:  # ``for i, size in enumerate(sizes)``
        iterated, value = iterated.args[0].value, _targets(loop)[-1]
    values = converter.init_code(iterated, shapes)
    for name, running in loop.running.items():
        size = changed.get(running)
        if size is not None and size.code == value:
            operand = values if SIMPLE_CODE.fullmatch(values) else f"({values})"
            converter.final_sizes[running] = f"{operand}[-1] if {values} else {before[name].code}"


def _header(converter, loop: StackLoop, shapes: dict[str, Shape]) -> str:
    values = converter.init_code(loop.count, shapes)
    return f"for {loop.target} in {values}" if loop.target else f"for {loop.index} in range({values})"


def _sized_loop(converter, nest: list[StackLoop], attribute: str, element: str, before: dict[str, Size],
                changed: dict[str, Size | None], named: dict[str, str], axis_starts: dict[str, str],
                axis_changes: dict[str, Size]) -> str:
    """``__init__``'s loops building the list (or setting an attribute per iteration, ``named``),
    the running sizes moved on per iteration."""
    root = nest[0]
    lines = [f"{running} = {before[name].code}" for name, running in root.running.items() if running in changed]
    lines += [f"{running} = {start}" for running, start in axis_starts.items()]
    changed = {**changed, **axis_changes}
    if attribute not in named:
        lines.append(f"self.{attribute} = {converter.env.nnx}.List()")
    for level, loop in enumerate(nest):
        lines.append(converter.env.module.default_indent * level + _header(converter, loop, {}) + ":")
    indent = converter.env.module.default_indent * len(nest)
    lines += [indent + line for line in nest[-1].locals]
    lines.append(f"{indent}setattr(self, {named[attribute]}, {element})" if attribute in named
                 else f"{indent}self.{attribute}.append({element})")
    built = f"getattr(self, {named[attribute]})" if attribute in named else f"self.{attribute}[-1]"
    lines += [f"{indent}{running} = {built_element(_unwrapped(size.code), attribute, built)}"
              for running, size in changed.items() if size is not None]
    return "\n".join(lines)


def _unwrapped(code: str) -> str:
    """``(4 * 2**i)`` -> ``4 * 2**i``: a size alone on the right of ``=`` needs no parentheses."""
    expression = cst.parse_expression(code)
    if len(expression.lpar) == 1:
        return cst.Module([]).code_for_node(expression.with_changes(lpar=[], rpar=[]))
    return code


def _nest_replacement(rewriter: CallRewriter, root: StackLoop, nest: list[StackLoop]) -> tuple[str, str, int]:
    """``for i, n in enumerate(self.sizes): for j in range(n): x = Block(...)(x)`` ->
    ``for block in self.blocks: x = block(x)``: only where the innermost body is the
    list's one call and the values that build its elements, and no name the nest binds
    is read after it."""
    innermost = nest[-1].node
    body = list(innermost.body.body) if innermost is not None and isinstance(innermost.body, cst.IndentedBlock) \
        else []
    calls = [statement for statement in body if id(_assignment(statement)) not in nest[-1].local_assigns]
    (attribute,) = root.lists if len(root.lists) == 1 else (None,)
    if attribute is None or len(calls) != 1:
        raise Unconvertible("a loop inside another loop builds modules and does more than apply one of them: "
                            "its `nnx.List` could not be indexed")
    bound = {name for loop in nest for name in _targets(loop)} | {
        line.partition(" = ")[0] for line in nest[-1].locals}
    outside = name_counts(rewriter.converter.node)
    inside = name_counts(root.node)  # type: ignore[arg-type]
    read_after = sorted(name for name in bound if outside.get(name, 0) > inside.get(name, 0))
    if read_after:
        raise Unconvertible(f"`{read_after[0]}`, bound by a nest of loops that builds modules, is read after it")
    element = attribute[:-1] if attribute.endswith("s") else f"{attribute}_element"
    if rewriter.converter._assignments.get(element) or element in outside:
        raise Unconvertible(f"the name `{element}` for the elements of `self.{attribute}` is taken")
    return element, attribute, body.index(calls[0])


def _assignment(statement: cst.CSTNode) -> cst.CSTNode | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        return statement.body[0]
    return None


def _numbered_name(name: cst.BaseExpression, index: str) -> str | None:
    """``f'block_{i}'`` -> ``block``: Linen's ``block_2`` is the list entry ``block/2``."""
    parts = name.parts if isinstance(name, cst.FormattedString) else ()
    if len(parts) == 2 and isinstance(parts[0], cst.FormattedStringText) and parts[0].value.endswith("_") \
            and IDENTIFIER.fullmatch(parts[0].value[:-1]) and isinstance(parts[1], cst.FormattedStringExpression) \
            and isinstance(parts[1].expression, cst.Name) and parts[1].expression.value == index \
            and parts[1].format_spec is None and parts[1].conversion is None:
        return parts[0].value[:-1]
    return None


def _iteration_name(loop: StackLoop, name: cst.BaseExpression) -> str:
    """``f'unit{i + 1}'`` (BiT's stages, after a ``name='unit1'`` before the loop) -> the
    slot that stands for the attributes the loop sets, ``unit_``.  NNX keeps Linen's
    names as attributes (``setattr(self, f'unit{i + 1}', ...)`` in ``__init__``,
    ``getattr`` where called), so checkpoints load with the same paths.  Only a name
    that starts with an identifier and reads nothing but the loop's targets and literals:
    the same expression in ``__init__``'s loop then gives the same names."""
    parts = name.parts if isinstance(name, cst.FormattedString) else ()
    targets = {target for level in loop.nest() for target in _targets(level)}
    expressions = [part for part in parts if isinstance(part, cst.FormattedStringExpression)]
    if parts and isinstance(parts[0], cst.FormattedStringText) and IDENTIFIER.fullmatch(parts[0].value) \
            and expressions and all(_plain_format(part) and names_read(part.expression) <= targets
                                    and not _calls(part.expression) for part in expressions) \
            and "_" not in targets:
        return "".join(part.value if isinstance(part, cst.FormattedStringText) else "_" for part in parts)
    raise Unconvertible(f"a module created in a loop is named other than `name=f'<name>_{{{loop.index}}}'` or "
                        "an f-string of the loop's variables")


def _enclosing_guard(rewriter: CallRewriter, loop: StackLoop) -> str:
    """The test of the branches on fields around the loop (``if self.resnet is not None:``),
    under which ``__init__`` builds its list ("" when there are none); refused when anything
    else lies between the method and the loop: a test of a value of ``__call__``, another kind
    of block, a loop around it that does more than run it."""
    position = next(index for index, open_loop in enumerate(rewriter.loops) if open_loop is loop.root)
    outside = rewriter.conditions[:rewriter.loop_conditions[position]]
    if loop.depth != loop.levels + len(outside) or None in outside:
        raise Unconvertible("a module created in a loop inside a branch on a value of `__call__` or inside "
                            "another block, or in a loop nested in a loop that does more than run it, is not "
                            "converted")
    return " and ".join(outside)  # type: ignore[arg-type]


def _plain_format(part: cst.FormattedStringExpression) -> bool:
    """No format spec, or a literal one (``{i + 1:02d}``: big_vision's ``unit01``)."""
    return part.format_spec is None or all(isinstance(spec, cst.FormattedStringText) for spec in part.format_spec)


def _calls(node: cst.CSTNode) -> bool:
    found = []

    class Calls(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            found.append(node)

    node.visit(Calls())
    return bool(found)


def stacked_call(rewriter: CallRewriter, loop: StackLoop, construction: cst.Call, original: cst.Call,
                 updated: cst.Call) -> cst.BaseExpression:
    """``Block(...)(x)`` inside the loop -> ``self.blocks[i](x)``; ``__init__`` builds the list."""
    converter = rewriter.converter
    layer = converter.layer(construction.func)
    assert layer is not None
    if layer.factory is not None:
        raise Unconvertible(f"`nn.{layer.factory.name}` created in a loop is not converted")
    guard = _enclosing_guard(rewriter, loop)
    if loop.parent is not None and any(arg_keyword(arg) == "name" for arg in construction.args):
        raise Unconvertible("a module named with `name=` in a nest of loops is not converted")
    type_name = layer.mapping.linen if layer.mapping else layer.user_class
    assert type_name is not None
    type_name = type_name.rpartition(".")[2]  # ``layers.Block`` is numbered as ``Block``
    if len(layer.choices) > 1:  # ``self.block_cls``: Linen numbers each class apart, one class per instance
        type_name = self_attribute(construction.func)  # type: ignore[assignment]
    name = next((arg.value for arg in construction.args if arg_keyword(arg) == "name"), None)
    named = None
    if name is not None:
        attribute = _numbered_name(name, loop.index)  # the construction's ``name=`` is not passed to NNX
        if attribute is None:
            attribute, named = _iteration_name(loop, name), cst.Module([]).code_for_node(name)
            loop.named[attribute] = named
    else:
        if nnx_list_name(type_name) in loop.root.lists or converter.auto_counters.get(type_name):
            raise Unconvertible(f"`{type_name}` is created more than once per loop iteration or also outside the "
                                "loop: Linen's numbering would interleave the list's elements")
        converter.auto_counters[type_name] = 1  # no other ``type_name`` may follow: its Linen number is unknown
        rewriter.stacked_classes.update({type_name, *layer.choices})
        attribute = list_name(type_name) if len(layer.choices) > 1 else nnx_list_name(type_name)
    loop.lists.add(attribute)
    loop.root.lists.add(attribute)
    if attribute in converter.field_names or attribute in converter.params or attribute in converter.variables:
        raise Unconvertible(f"the list name `{attribute}` collides with a field")
    slot = converter._add_slot(attribute, construction)
    if guard:
        converter.slot_guards[attribute] = guard
    call = rewriter._call_slot(slot, original, updated)  # the list's code: ``close_loop``
    if named is not None:
        return call.with_changes(func=cst.parse_expression(f"getattr(self, {named})"))
    return call.with_changes(func=cst.parse_expression(f"self.{attribute}[{loop.index}]"))
