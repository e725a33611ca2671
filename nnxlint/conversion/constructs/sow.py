"""``self.sow('intermediates', name, value)``: ``self.sow(nnx.Intermediate, name, value)``
where the run reads the collection the way the training conversion turns into
``nnx.capture``; left out where nothing in the run reads it.

Linen stores a sown value only when ``apply`` makes its collection mutable
(``mutable=['intermediates']``, ``mutable=True``) or ``capture_intermediates``
is set; otherwise ``sow`` stores nothing and returns False, and ``init`` leaves
'intermediates' out by default (``mutable=DenyList('intermediates')``).  NNX
0.12.8's ``Module.sow`` outside ``nnx.capture`` keeps every value on the module
(with a DeprecationWarning), a tuple growing at each call, so a jitted step
traces again at each step; under ``nnx.capture(model, nnx.Intermediate)`` the
value goes to the State the call returns, and under ``nnx.capture(model)`` (no
type) nowhere, as Linen's ``sow`` without a mutable collection.

A reader the conversion follows is ``out, updates = model.apply(variables, ...,
mutable=['intermediates'])`` (or ``mutable='intermediates'``, ``state.apply_fn``)
whose ``updates`` is read through ``updates['intermediates']`` only, in the class's
own file (the training code converted with it; a reader in another file of the run
stays Linen and would break): training.py makes it ``out, updates =
nnx.capture(model, nnx.Intermediate)(...)`` and every other call of the model in
that file ``nnx.capture(model)(...)``.  Where the run has
only such readers, the sow is kept as NNX's.  Where nothing reads the collection,
the exact conversion is no call at all: the statement gives way to a comment
showing the NNX form, and the fix description says what was left out.  Where a
file of the run may read it otherwise (``mutable=True``, not a literal, or naming
more collections; ``capture_intermediates``, whose NNX near-twin ``method_outputs=``
names values by method instead of Linen's ``__call__`` paths; the collection's
name anywhere else), the class stays Linen and the reason names that site.  The
run's ``.py`` files are read (the project index holds no notebooks: a notebook
that reads the collection is a caller outside the run, which the fix description
addresses).
"""

from __future__ import annotations

import ast
import weakref
from typing import Optional, Union

import libcst as cst

from nnxlint.conversion.base import Unconvertible
from nnxlint.conversion.constructs import SelfCall, self_call
from nnxlint.conversion.shapes import string_literal
from nnxlint.textio import SourceError, read_source

COLLECTION = "intermediates"  # the one collection Linen's ``init`` leaves out by default
_WORDS = (COLLECTION, "mutable")  # a file with neither word cannot read the collection
_SITES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # project index -> {path: reading site}


@self_call("sow")
class Sow(SelfCall):
    def in_setup(self, converter, attribute: str, call: cst.Call) -> None:
        raise Unconvertible("`self.sow(...)` in `setup` is not converted")

    def in_call(self, rewriter, call: cst.Call) -> cst.BaseExpression:
        raise Unconvertible("`self.sow(...)` used as a value (it returns whether Linen stored it) is not converted")


class DroppedSows:
    """The ``self.sow(...)`` statements of one rewritten method: each becomes NNX's sow
    where the run captures the collection, else a comment above the statement after it
    (a ``pass`` where nothing follows in its block)."""

    def __init__(self) -> None:
        self.comments: dict[int, cst.EmptyLine] = {}  # the ``self.sow(...)`` line -> its comment
        self.markers: set[int] = set()  # the ``pass`` lines standing for them until their block is left
        # the markers themselves, kept alive: an ``id`` names one object only while it lives, and a
        # marker freed in an inner block must not make a later statement of the outer one a marker
        self.alive: list[cst.SimpleStatementLine] = []
        self.kept: dict[int, cst.SimpleStatementLine] = {}  # the ``self.sow(...)`` line -> NNX's

    def visit_line(self, rewriter, node: cst.SimpleStatementLine) -> bool:
        """True (do not visit it) for a line that is one ``self.sow(...)``."""
        converted = dropped_sow(rewriter, node.body[0]) if len(node.body) == 1 else None
        if isinstance(converted, cst.EmptyLine):
            self.comments[id(node)] = converted
        elif converted is not None:
            self.kept[id(node)] = node.with_changes(body=[cst.Expr(cst.parse_expression(converted))])
        return converted is not None

    def leave_line(self, original: cst.SimpleStatementLine,
                   updated: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        if id(original) in self.kept:
            return self.kept[id(original)]
        comment = self.comments.get(id(original))
        if comment is None:
            return updated
        marker = cst.SimpleStatementLine([cst.Pass()], leading_lines=[*original.leading_lines, comment])
        self.markers.add(id(marker))
        self.alive.append(marker)
        return marker

    def leave_block(self, block: cst.IndentedBlock) -> cst.IndentedBlock:
        """The markers' comments move onto the next statement; a block left with none keeps its ``pass``."""
        if not any(id(statement) in self.markers for statement in block.body):
            return block
        body: list[cst.BaseStatement] = []
        carried: list[cst.EmptyLine] = []
        for statement in block.body:
            if id(statement) in self.markers:
                carried.extend(statement.leading_lines)  # type: ignore[attr-defined]
                continue
            if carried:
                statement = statement.with_changes(leading_lines=[*carried, *statement.leading_lines])
                carried = []
            body.append(statement)
        if carried and not body:
            body.append(cst.SimpleStatementLine([cst.Pass()], leading_lines=carried))
        elif carried:
            return block.with_changes(body=body, footer=[*carried, *block.footer])
        return block.with_changes(body=body)


def dropped_sow(rewriter, statement: cst.BaseSmallStatement) -> Union[cst.EmptyLine, str, None]:
    """What replaces ``self.sow(...)`` as a statement of ``__call__``: NNX's sow (code)
    where the run captures the collection, else the comment (with the note for the fix
    description); None when ``statement`` is no such call."""
    call = statement.value if isinstance(statement, cst.Expr) else None
    converter = rewriter.converter
    if not isinstance(call, cst.Call) or not converter.is_self_call(call.func, "sow"):
        return None
    env = converter.env
    positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
    collection = string_literal(positional[0]) if positional else None
    if collection != COLLECTION or len(positional) != 3 or len(call.args) != 3:
        raise Unconvertible("`self.sow(...)` other than `self.sow('intermediates', name, value)`: Linen's `init` "
                            "keeps any other collection, and `reduce_fn`/`init_fn` are not converted")
    name, value = positional[1], positional[2]
    if string_literal(name) is None or not _without_calls(value):
        raise Unconvertible("`self.sow('intermediates', ...)` with a name that is not a literal or a value that "
                            "calls something (leaving the call out would skip it)")
    site, captured = reading_site(env)
    if site is not None:
        raise Unconvertible(f"`self.sow('intermediates', ...)`: {site} may read the 'intermediates' collection in a "
                            "way the conversion does not turn into `nnx.capture` (only `out, updates = "
                            "model.apply(..., mutable=['intermediates'])` read through `updates['intermediates']`)")
    sown = f"self.sow({env.nnx}.Intermediate, {env.code(name)}, {env.code(value)})"
    if captured:
        return sown
    converter.dropped.append(f"`{converter.node.name.value}`'s `{env.code(call)}`")
    return cst.EmptyLine(comment=cst.Comment(f"# NNX, read under {env.nnx}.capture: {sown}"))


def left_out_note(dropped: list[str], nnx: str) -> list[str]:
    """The fix description's sentence on the sown values left out (none: no sentence)."""
    if not dropped:
        return []
    return [f"left out: {', '.join(dropped)}, as Linen stores nothing unless `apply` makes 'intermediates' "
            "mutable and nothing in the run does; a caller outside the run that reads it must call the model "
            f"under `{nnx}.capture(model, {nnx}.Intermediate)` with the `self.sow({nnx}.Intermediate, ...)` "
            "that a comment shows in its place"]


def _without_calls(node: cst.BaseExpression) -> bool:
    """A value that names things only (``scores``, ``self.x``, ``h[0]``): leaving it out runs nothing."""
    found: list[cst.CSTNode] = []

    class Calls(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            found.append(node)

        def visit_Lambda(self, node: cst.Lambda) -> None:
            found.append(node)

    cst.Module([cst.SimpleStatementLine([cst.Expr(node)])]).visit(Calls())
    return not found


def reading_site(env) -> tuple[Optional[str], bool]:
    """The first place in the run (``path:line``) that may read the 'intermediates'
    collection other than through a reader the conversion captures, and whether the run
    has such a reader; with no run known, the file itself is the run."""
    project = env.project
    if project is None:
        return _site_in(env.module.code, "this file", own=True)
    index = project.index
    sites = _SITES.setdefault(index, {})
    captured = False
    project.used.whole_run = True  # any edit to the run may add or remove a reader (the result cache)
    for path in sorted(index.run_paths):
        if not path.endswith(".py"):
            continue
        own = path == project.path  # only this file's training code is converted with the class
        if (path, own) not in sites:
            try:
                text = env.module.code if own else read_source(path).text
            except SourceError:
                text = ""
            sites[path, own] = _site_in(text, path, own)
        if sites[path, own][0] is not None:
            return sites[path, own]
        captured = captured or sites[path, own][1]
    return None, captured


def _site_in(text: str, where: str, own: bool) -> tuple[Optional[str], bool]:
    if not any(word in text for word in _WORDS):
        return None, False
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return f"{where} (not parsed)", False
    allowed: set[int] = set()  # the sow's own collection argument; what a captured reader names
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sow" \
                and node.args:
            allowed.add(id(node.args[0]))
    readers = own and _captured_readers(tree, allowed)
    for node in ast.walk(tree):
        if id(node) in allowed:
            continue
        if isinstance(node, ast.keyword) and node.arg == "mutable" and _may_name(node.value):
            return f"{where}:{node.value.lineno} (`mutable={ast.unparse(node.value)}`)", False
        if isinstance(node, ast.keyword) and node.arg == "capture_intermediates" and not _false(node.value):
            return f"{where}:{node.value.lineno} (`capture_intermediates=`)", False
        if isinstance(node, ast.Constant) and node.value == COLLECTION:
            return f"{where}:{node.lineno} (`{COLLECTION!r}`)", False
    return None, readers


def _captured_readers(tree: ast.AST, allowed: set[int]) -> bool:
    """Whether ``tree`` has ``out, updates = X.apply(..., mutable=['intermediates'])``
    (or ``apply_fn``): its ``mutable=`` and the ``updates['intermediates']`` reads go into
    ``allowed``, as training.py turns them into ``nnx.capture``, where ``updates`` is read
    through ``updates['intermediates']`` only."""
    names: set[str] = set()
    mutables: dict[str, ast.keyword] = {}
    for node in ast.walk(tree):
        mutable = capturing_mutable(node.value) if isinstance(node, ast.Assign) and isinstance(
            node.value, ast.Call) else None
        target = node.targets[0] if mutable is not None and len(node.targets) == 1 else None
        if isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == 2 \
                and isinstance(target.elts[1], ast.Name):
            names.add(target.elts[1].id)
            mutables[target.elts[1].id] = mutable
    through: set[int] = set()  # the ``updates`` of ``updates['intermediates']`` and of the assignments
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in names \
                and isinstance(node.slice, ast.Constant) and node.slice.value == COLLECTION:
            allowed.add(id(node.slice))
            through.add(id(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names and id(node) not in through \
                and not isinstance(node.ctx, ast.Store):
            names.discard(node.id)  # read otherwise: its ``mutable=`` stays a reading site
    for name in names:
        allowed.update(id(part) for part in ast.walk(mutables[name]))
    return bool(names)


def capturing_mutable(call: ast.Call) -> Optional[ast.keyword]:
    """The ``mutable=`` keyword of ``X.apply(..., mutable=['intermediates'])`` (a list, tuple
    or string of that one collection, no ``capture_intermediates``); None otherwise."""
    if not isinstance(call.func, ast.Attribute) or call.func.attr not in ("apply", "apply_fn"):
        return None
    keywords = {keyword.arg: keyword for keyword in call.keywords}
    mutable = keywords.get("mutable")
    if mutable is None or "capture_intermediates" in keywords:
        return None
    value = mutable.value
    elements = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
    named = [element.value for element in elements if isinstance(element, ast.Constant)]
    return mutable if named == [COLLECTION] and len(elements) == 1 else None


def _false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value in (False, None)


def _may_name(node: ast.expr) -> bool:
    """A ``mutable=`` value that is True, not a literal, or names the collection."""
    if _false(node):
        return False
    if isinstance(node, ast.Constant):
        return node.value is True or node.value == COLLECTION
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return not all(isinstance(element, ast.Constant) and isinstance(element.value, str)
                       and element.value != COLLECTION for element in node.elts)
    return True
