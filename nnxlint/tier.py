"""The cheap first tier of a check: which of the selected rules can report in a file.

A LibCST parse costs several times an ``ast`` parse, and most files of a code
base have nothing for nnxlint to report.  Each rule declares in ``triggers``
(``nnxlint.rule.Needs``) what a file must contain for it to report: words of the
text, names the file reaches through its imports, names its expressions resolve to,
attributes it reads.  The tier answers from substring tests and, when a rule still
needs more, from one walk of the standard library's ``ast`` tree (``summarize``);
LibCST parses a file, and a rule runs on it, only when the answer is yes.  The
decision errs one way only: a rule left out has nothing to report there
(tests/test_tier.py compares both paths).

The summary of a file (``summarize``) is plain data, so the project index
(nnxlint/project.py), which parses every file with ``ast`` anyway, can compute it
in the same pass and hand it over instead of a second parse.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Union

from nnxlint.flax_api import (
    FLAX_LINEN, FLAX_NNX, LINEN_IMPLEMENTATION_MODULES, NNX_IMPLEMENTATION_MODULES, canonical_name,
)

if TYPE_CHECKING:  # not at run time: the project index imports this module, never LibCST
    from nnxlint.project import ProjectIndex, ProjectView
    from nnxlint.rule import Needs, Rule

# Set to 1: every selected rule runs on every file (the reference the tier is tested
# against, and a way to rule the tier out when a result looks wrong).
FULL_ENVIRONMENT = "NNXLINT_NO_TIER"
# ``from .x import y`` / ``from . import y`` (also across a line continuation)
_RELATIVE_IMPORT = re.compile(r"\bfrom(?:\s|\\\r?\n)*\.")
# A string that may be a type annotation (``"nnx.Module"``, ``"Optional[nnx.Rngs]"``)
_TYPE_TEXT = re.compile(r"[\w.\[\], |]*[A-Za-z_][\w.\[\], |]*")
_CHAIN = re.compile(r"[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*")
# (implementation module, the public package it is re-exported from)
_REEXPORTED_FROM = tuple((module, package) for package, modules in (
    (FLAX_NNX, NNX_IMPLEMENTATION_MODULES), (FLAX_LINEN, LINEN_IMPLEMENTATION_MODULES)) for module in modules)


@dataclass(frozen=True)
class ImportSummary:
    """What a file imports: every absolute name an import statement (at any depth)
    names or binds, and whether it has relative imports.  Also what its code holds
    (None when not gathered): ``refs``, the canonical names (and every dotted prefix
    of them) that its Name/attribute chains resolve to through its imports, the way a
    rule's ``context.resolve`` does; ``attributes``, every ``.name`` it reads or
    writes; ``calls``, each call of a Name/attribute chain as ``callee(keywords)``
    (the callee resolved like ``refs``, or ``:name`` for a name no import binds;
    ``*``/``**`` among the keywords for starred arguments); ``inits``,
    ``Class.parameter`` for each parameter of each class's ``__init__``; ``containers``,
    the attributes assigned a container (``x.name = value``, ``value`` a list, tuple
    or dict display or comprehension, ``list(...)``/``tuple(...)``/``dict(...)`` of one
    argument, or a name that the file assigns such a display or annotates with a
    subscripted type)."""

    names: frozenset[str]
    relative: bool
    refs: Optional[frozenset[str]] = None
    attributes: Optional[frozenset[str]] = None
    calls: Optional[frozenset[str]] = None
    inits: Optional[frozenset[str]] = None
    containers: Optional[frozenset[str]] = None

    def to_data(self) -> dict:
        data: dict = {"names": sorted(self.names), "relative": self.relative}
        data.update((field, sorted(value)) for field in OWN_SUMMARY_FIELDS
                    if (value := getattr(self, field)) is not None)
        return data

    @classmethod
    def from_data(cls, data: dict) -> "ImportSummary":
        return cls(frozenset(data["names"]), bool(data["relative"]),
                   **{field: frozenset(data[field]) for field in OWN_SUMMARY_FIELDS if field in data})


# What only the file's own tier reads (not the files linked to it): left out of the
# digest of its facts, so an edit in a function body keeps other files' cached results.
OWN_SUMMARY_FIELDS = ("refs", "attributes", "calls", "inits", "containers")


def summarize(tree: ast.Module, package: Optional[str] = None) -> ImportSummary:
    """The summary of a parsed file, in one walk of its tree.  With the file's
    ``package`` known (the project index knows it), relative imports are summarized by
    the absolute names they import."""
    found: set[str] = set()
    relative = False
    bound: dict[str, set[str]] = {}  # local name -> the absolute names imports bind it to
    chains: set[str] = set()  # dotted Name/attribute chains, as spelled
    attributes: set[str] = set()
    calls: set[tuple[str, str]] = set()  # (callee as spelled, its keywords)
    inits: set[str] = set()
    stored: list[tuple[str, ast.AST]] = []  # (attribute, value) of ``x.attribute = value``
    holders: set[str] = set()  # names assigned a container display, or annotated with a subscripted type
    pending: list = [tree]
    while pending:
        node = pending.pop()
        kind = type(node)
        if kind is ast.Name:  # the most common node: a chain of one
            chains.add(node.id)
            continue
        if kind in _ASSIGNMENTS:
            _note_assignment(node, stored, holders)
        elif kind is ast.arg and type(node.annotation) is ast.Subscript:
            holders.add(node.arg)
        if kind is ast.Call:
            callee = _dotted(node.func)
            if callee is not None:
                keywords = [keyword.arg or "**" for keyword in node.keywords]
                if any(type(argument) is ast.Starred for argument in node.args):
                    keywords.append("*")
                calls.add((callee, ",".join(sorted(keywords))))
        elif kind is ast.ClassDef:
            inits.update(f"{node.name}.{parameter}" for parameter in _init_parameters(node))
        elif kind is ast.Attribute:
            dotted = _dotted(node)
            if dotted is not None:  # the chain and all its prefixes in one go
                chains.add(dotted)
                attributes.update(dotted.split(".")[1:])
                continue
            attributes.add(node.attr)
        elif kind is ast.Constant:
            text = node.value
            if type(text) is str and len(text) < 200 and _TYPE_TEXT.fullmatch(text):
                # a string annotation resolves like code (``"nnx.Module"``): its chains, unparsed
                for spelled in _CHAIN.findall(text):
                    dotted = "".join(spelled.split())  # ``"nnx . Module"`` is ``nnx.Module``
                    chains.add(dotted)
                    attributes.update(dotted.split(".")[1:])
            continue
        elif kind is ast.Import:
            for alias in node.names:  # ``import a.b.c`` binds ``a`` and names ``a.b.c``
                found.update((alias.name, alias.name.split(".")[0]))
                local = alias.asname or alias.name.split(".")[0]
                bound.setdefault(local, set()).add(alias.name if alias.asname else local)
            continue
        elif kind is ast.ImportFrom:
            source = _absolute_source(node, package)
            if source is None:
                relative = True
            else:
                found.update(source if alias.name == "*" else f"{source}.{alias.name}" for alias in node.names)
                for alias in node.names:
                    if alias.name != "*":
                        bound.setdefault(alias.asname or alias.name, set()).add(f"{source}.{alias.name}")
            continue
        for field in child_fields(kind):
            value = getattr(node, field)
            if type(value) is list:
                pending.extend(value)
            elif value is not None:
                pending.append(value)
    containers = frozenset(attribute for attribute, value in stored
                           if _is_container(value) or (type(value) is ast.Name and value.id in holders))
    return ImportSummary(frozenset(found), relative, _resolved(chains, bound), frozenset(attributes),
                         _resolved_calls(calls, bound), frozenset(inits), containers)


_ASSIGNMENTS = (ast.Assign, ast.AnnAssign, ast.NamedExpr)
_DISPLAYS = (ast.List, ast.Tuple, ast.Dict, ast.ListComp, ast.DictComp, ast.SetComp, ast.Set, ast.GeneratorExp)
_CONTAINER_CALLS = frozenset({"list", "tuple", "dict"})


def _is_container(value: ast.AST) -> bool:
    return isinstance(value, _DISPLAYS) or (
        type(value) is ast.Call and type(value.func) is ast.Name and value.func.id in _CONTAINER_CALLS)


def _note_assignment(node: ast.AST, stored: list, holders: set[str]) -> None:
    """What an assignment stores in attributes, and the names it gives a container."""
    value = node.value  # type: ignore[attr-defined]
    if value is None:  # ``x: T`` declares, stores nothing
        if type(node.annotation) is ast.Subscript and type(node.target) is ast.Name:  # type: ignore[attr-defined]
            holders.add(node.target.id)  # type: ignore[attr-defined]
        return
    targets = node.targets if type(node) is ast.Assign else [node.target]  # type: ignore[attr-defined]
    if type(node) is ast.AnnAssign and type(node.annotation) is ast.Subscript:
        holders.update(target.id for target in targets if type(target) is ast.Name)
    # a display anywhere in the value (``a, b = [x], [y]``) may be what a name holds
    contains = _is_container(value) or any(_is_container(element) for element in getattr(value, "elts", ()))
    pending = list(targets)
    while pending:
        target = pending.pop()
        if type(target) is ast.Attribute:
            stored.append((target.attr, value))
        elif type(target) is ast.Name and contains:
            holders.add(target.id)
        elif type(target) in (ast.Tuple, ast.List, ast.Starred):
            pending.extend(getattr(target, "elts", None) or [target.value])


def _init_parameters(node: ast.ClassDef) -> Iterator[str]:
    """The parameters of the class's ``__init__`` (any in its body, also under ``if``/``try``)."""
    pending: list = list(node.body)
    while pending:
        statement = pending.pop()
        if type(statement) in (ast.FunctionDef, ast.AsyncFunctionDef) and statement.name == "__init__":
            arguments = statement.args
            yield from (argument.arg for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs))
        elif type(statement) in (ast.If, ast.Try, ast.With):
            pending.extend((*statement.body, *getattr(statement, "orelse", ()), *getattr(statement, "finalbody", ()),
                            *(line for handler in getattr(statement, "handlers", ()) for line in handler.body)))


def _resolved_calls(calls: set[tuple[str, str]], bound: dict[str, set[str]]) -> frozenset[str]:
    found = set()
    for callee, keywords in calls:
        head, _, rest = callee.partition(".")
        targets = bound.get(head)
        if targets:
            found.update(f"{canonical_name(f'{target}.{rest}' if rest else target)}({keywords})" for target in targets)
        if not rest:  # also when an import binds it: a class statement may rebind the name
            found.add(f":{callee}({keywords})")
    return frozenset(found)


def _dotted(node: ast.AST) -> Optional[str]:
    parts = []
    while type(node) is ast.Attribute:
        parts.append(node.attr)  # type: ignore[attr-defined]
        node = node.value  # type: ignore[attr-defined]
    if type(node) is not ast.Name:
        return None
    parts.append(node.id)  # type: ignore[attr-defined]
    return ".".join(reversed(parts))


def _resolved(chains: set[str], bound: dict[str, set[str]]) -> frozenset[str]:
    """The canonical names the chains resolve to through the imports, each with its
    dotted prefixes (so a name at or under ``q`` is found by looking ``q`` up)."""
    refs: set[str] = set()
    for chain in chains:
        head, _, rest = chain.partition(".")
        for target in bound.get(head, ()):
            parts = rest.split(".") if rest else []
            for end in range(len(parts) + 1):  # what a rule resolves for each sub-chain
                name = canonical_name(".".join([target, *parts[:end]]))
                dot = name.find(".")
                while dot != -1:
                    refs.add(name[:dot])
                    dot = name.find(".", dot + 1)
                refs.add(name)
    return frozenset(refs)


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}
# Fields that never hold nodes (names, operators, contexts).
_NO_CHILDREN = frozenset({"ctx", "op", "ops", "id", "attr", "arg", "name", "names", "module", "level", "kind",
                          "type_comment", "is_async", "conversion", "asname", "kwd_attrs", "lineno",
                          "col_offset", "end_lineno", "end_col_offset"})


def child_fields(kind: type) -> tuple[str, ...]:
    """The fields of an ``ast`` node type that may hold nodes (also the project index's walk)."""
    fields = _CHILD_FIELDS.get(kind)
    if fields is None:
        fields = _CHILD_FIELDS[kind] = tuple(name for name in getattr(kind, "_fields", ())
                                             if name not in _NO_CHILDREN)
    return fields


def _absolute_source(node: ast.ImportFrom, package: Optional[str]) -> Optional[str]:
    """The module an ``import from`` reads, absolute; None when it is relative and the
    package is unknown (or the import climbs above it)."""
    if not node.level:
        return node.module
    if package is None:
        return None
    parts = package.split(".") if package else []
    if node.level - 1 > len(parts):
        return None
    return ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else [])) or None


def parse_summary(text: str) -> Optional[ImportSummary]:
    """The import summary of a source text; None when ``ast`` cannot parse it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the user's SyntaxWarnings are not ours to print
            return summarize(ast.parse(text))
    except (SyntaxError, ValueError, MemoryError, RecursionError):  # ValueError: null bytes
        return None


def _parses(text: str) -> bool:
    """Whether the text is Python, by the cheapest test that is sure: compiling
    (no Python objects built), then ``ast`` for what only the compiler rejects
    (``return`` outside a function, ...)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a SyntaxWarning of the user's code is not ours to print
            compile(text, "<nnxlint>", "exec", dont_inherit=True)
        return True
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return parse_summary(text) is not None


def _reaches(prefix: str, imported: str, text: str) -> bool:
    """Whether a file that imports ``imported`` can refer to a name at or under ``prefix``."""
    reached = _reach(prefix, imported)
    return reached if isinstance(reached, bool) else all(part in text for part in reached)


@functools.lru_cache(maxsize=None)  # a few prefixes and imports, asked for every rule of every file
def _reach(prefix: str, imported: str) -> Union[bool, tuple[str, ...]]:
    """``_reaches`` less the text: True, False, or the words the text must contain."""
    name = canonical_name(imported)
    if name == prefix or name.startswith(prefix + "."):
        return True
    if prefix.startswith(imported + "."):  # ``import flax`` then ``flax.linen.Dense``
        return tuple(prefix[len(imported) + 1:].split("."))
    # ``import flax.nnx.nn as n`` then ``n.linear.Linear``: canonical ``flax.nnx.Linear``
    return any((module + ".").startswith(imported + ".") and (prefix + ".").startswith(package + ".")
               for module, package in _REEXPORTED_FROM)


def _uses_possible(prefixes: Sequence[str], text: str) -> bool:
    """Whether the text could import one of ``prefixes`` at all (before any parse)."""
    return any(prefix.split(".")[0] in text for prefix in prefixes) or _RELATIVE_IMPORT.search(text) is not None


@functools.lru_cache(maxsize=None)
def _reaches_from_elsewhere(prefix: str, imported: str) -> bool:
    """Whether a file of the project that imports ``imported`` can hand a name at or under
    ``prefix`` to another file (``_reaches`` without the test on the text, which is not
    the importing file's)."""
    name = canonical_name(imported)
    if name == prefix or name.startswith(prefix + ".") or prefix.startswith((imported + ".", name + ".")):
        return True
    return any((module + ".").startswith(imported + ".") and (prefix + ".").startswith(package + ".")
               for module, package in _REEXPORTED_FROM)


# What the files linked to a file import: True when that cannot be told (any name at all)
Linked = Union[bool, frozenset]


@dataclass(frozen=True)
class Links:
    """What the files linked to a file import (``is_linked``): all the files connected to
    it, either way; and only the files it imports, at any depth -- all that a rule
    learning names through the file's own imports can hear of (``Needs.imports_only``)."""

    connected: Linked
    imported: Linked
    # the file's view of the project index (``nnxlint.project.ProjectView``): what a callee
    # its imports reach in other files is, asked as the rules ask it (and recorded with the
    # file's result, for the cache); None when there is none
    view: Optional["ProjectView"] = dataclasses.field(default=None, compare=False)


_LINKED_REACHES: dict[tuple[str, frozenset], bool] = {}


def _linked_reaches(prefix: str, linked: frozenset) -> bool:
    """Whether one of the ``linked`` imports reaches ``prefix`` (once per prefix and set of
    connected files: ``_linked_imports`` shares one set between them)."""
    key = (prefix, linked)
    found = _LINKED_REACHES.get(key)
    if found is None:
        found = _LINKED_REACHES[key] = any(_reaches_from_elsewhere(prefix, name) for name in linked)
    return found


@dataclass
class _File:
    text: str
    summary: Optional[ImportSummary]  # None until needed (then parsed)
    # other files of the project can tell its rules about names: the names that those
    # files import (only these can reach it through them), or True (anything can)
    linked: Linked
    imported: Optional[Linked] = None  # the same for the files it imports (``Links.imported``); None: ``linked``
    view: Optional["ProjectView"] = None  # ``Links.view``

    def imports(self) -> Optional[ImportSummary]:
        if self.summary is None:
            self.summary = parse_summary(self.text)
        return self.summary


_LINKED_NAMES: dict[tuple[tuple[str, ...], frozenset], bool] = {}


def _names_met(names: tuple[str, ...], file: _File) -> bool:
    """Whether the file can refer to one of ``names``: it spells one, or one of the
    files it imports (any depth) imports a name containing one, which it can re-export
    under an alias (``from flax.nnx import jit as compile``).  Re-exports follow
    import statements only (nnxlint.project), so no other way reaches the file."""
    if any(name in file.text for name in names):
        return True
    linked = file.imported if file.imported is not None else file.linked
    if linked is True or not linked:
        return bool(linked)
    key = (names, linked)
    found = _LINKED_NAMES.get(key)
    if found is None:
        found = _LINKED_NAMES[key] = any(name in imported for imported in linked for name in names)
    return found


def _needs_met(needs: "Needs", file: _File) -> Optional[bool]:
    """Whether ``file`` meets ``needs``; None when it does not parse."""
    if needs.words and not any(word in file.text for word in needs.words):
        return False
    if needs.names and not _names_met(needs.names, file):
        return False
    linked = file.imported if needs.imports_only and file.imported is not None else file.linked
    if needs.imports:
        summary = file.imports()
        if summary is None:
            return None
        if not summary.relative and not any(_imports_one_of(name, needs.imports) for name in summary.names):
            return False
    if needs.attributes or needs.refers:
        summary = file.imports()
        if summary is None:
            return None
        if needs.attributes and summary.attributes is not None and summary.attributes.isdisjoint(needs.attributes):
            return False
        if needs.refers and not _refers(needs.refers, summary, linked):
            return False
    if needs.stores_containers:
        summary = file.imports()
        if summary is None:
            return None
        if summary.containers is not None and not summary.containers:
            return False
    if needs.calls or needs.constructs:
        summary = file.imports()
        if summary is None:
            return None
        if not _calls_met(needs, summary, linked, file.view):
            return False
    if not needs.uses or linked is True:
        return True
    if linked and any(_linked_reaches(prefix, linked) for prefix in needs.uses):
        return True
    if not _uses_possible(needs.uses, file.text):
        return False
    summary = file.imports()
    if summary is None:
        return None
    return summary.relative or any(_reaches(prefix, name, file.text)
                                   for prefix in needs.uses for name in summary.names)


def _imports_one_of(name: str, wanted: tuple[str, ...]) -> bool:
    """Whether an imported ``name`` is one of ``wanted`` (``"a.b."``: or under ``a.b``)."""
    return name in wanted or any(entry.endswith(".") and name.startswith(entry) for entry in wanted)


def _refers(prefixes: tuple[str, ...], summary: ImportSummary, linked: Linked) -> bool:
    """Whether a Name/attribute chain of the file can resolve to a name at or under one of
    ``prefixes``: through its own imports (``summary.refs``), or through a re-export in
    a file linked to it (what those files import reaches one), or an import the summary
    could not resolve (relative, package unknown)."""
    if summary.refs is None or summary.relative or linked is True:
        return True
    if any(prefix in summary.refs for prefix in prefixes):
        return True
    return bool(linked) and any(_linked_reaches(prefix, linked) for prefix in prefixes)


def _calls_met(needs: "Needs", summary: ImportSummary, linked: Linked, view: Optional["ProjectView"] = None) -> bool:
    """Whether the file has a call (without ``needs.missing_keywords`` nor starred
    arguments, when asked) of one of ``needs.calls``, or of a class whose ``__init__``
    takes one of ``needs.constructs``: a class of the file, called by its name, or, in a
    file linked to others, a class of another file its imports reach.  Through a linked
    file the callee can also be a re-export of one of ``needs.calls``.  Those two are
    asked of the file's ``view`` of the project, as the rules ask them; without one, any
    call of a linked file counts for ``constructs``, and any link that can reach a name
    of ``needs.calls``."""
    if summary.calls is None or summary.inits is None or summary.relative or linked is True:
        return True
    missing = frozenset(needs.missing_keywords)
    imported_calls = []  # callees resolved through the file's imports
    for entry in summary.calls:
        callee, _, keywords = entry[:-1].partition("(")
        if missing and keywords and (missing | {"*", "**"}).intersection(keywords.split(",")):
            continue
        if callee in needs.calls:
            return True
        if callee.startswith(":"):
            if any(f"{callee[1:]}.{parameter}" in summary.inits for parameter in needs.constructs):
                return True
        else:
            imported_calls.append(callee)
    if not linked:
        return False
    if view is None:
        return bool(needs.constructs) or any(_linked_reaches(name, linked) for name in needs.calls)
    for callee in imported_calls:
        if needs.calls and view.external(callee) in needs.calls:
            return True
        if needs.constructs and not _init_parameters_of(view, callee).isdisjoint(needs.constructs):
            return True
    return False


def _needs_met_by_trigger(trigger: Union[str, "Needs"], file: _File) -> Optional[bool]:
    if isinstance(trigger, str):  # a plain string trigger: the text contains it
        return trigger in file.text
    return _needs_met(trigger, file)


def rules_for(text: str, rules: Sequence[type["Rule"]], summary: Optional[ImportSummary] = None,
              linked: Union[Linked, Links] = False) -> Optional[list[type["Rule"]]]:
    """The rules among ``rules`` that can report in ``text``, in their order; None
    when the text is not Python (the caller parses it to report why).

    ``summary``: the file's import summary when already known (the project index);
    ``linked``: the project index says names of other files reach this one: the names
    those files import (``is_linked``), or True for any name."""
    file = _File(text, summary, linked.connected, linked.imported, linked.view) \
        if isinstance(linked, Links) else _File(text, summary, linked)
    selected = []
    for rule in rules:
        for trigger in rule.triggers:
            met = _needs_met_by_trigger(trigger, file)
            if met is None:
                return None
            if met:
                selected.append(rule)
                break
    if not selected and summary is None and not _parses(text):
        return None
    return selected


def _project_owners(name: str, index: "ProjectIndex", importer: Optional[dict]) -> list[str]:
    """The files of the project module that ``name`` is in or under, under the root of
    the importing file when its facts are known (none for Flax, JAX, ... whose names
    are never looked up in the project, and none in the importing module itself)."""
    from nnxlint.project import EXTERNAL_PACKAGES

    parts = name.split(".")
    if parts[0] in EXTERNAL_PACKAGES:
        return []
    for end in range(len(parts), 0, -1):
        module = ".".join(parts[:end])
        owners = index.modules.get(module)
        if owners:
            if importer is not None and module == importer.get("module"):
                return []
            return [owner for owner, facts in owners
                    if importer is None or facts.get("root") == importer.get("root")]
    return []


def _linked_imports(index: "ProjectIndex") -> dict[str, Linked]:
    """For every file linked to other files of the project: what the files it is
    connected to (through imports, either way, at any distance: facts travel along
    imports only) import between them -- the names through which facts about Flax
    or JAX can reach it -- or True where a relative import could not be resolved."""
    cached = getattr(index, "_tier_linked", None)
    if cached is not None:
        return cached
    parent: dict[str, str] = {}

    def group(path: str) -> str:
        while parent.get(path, path) != path:
            parent[path] = parent.get(parent[path], parent[path])
            path = parent[path]
        return path

    for path, facts in index.by_path.items():
        summary = facts.get("imports", {}).get("names", [])
        for target in [*facts.get("names", {}).values(), *facts.get("star", []), *summary]:
            for owner in _project_owners(target, index, facts):
                if owner != path and owner in index.by_path:
                    parent[group(path)] = group(owner)
    names: dict[str, set[str]] = {}
    unknown: set[str] = set()
    for path in parent:
        facts = index.by_path[path]
        names.setdefault(group(path), set()).update(facts.get("imports", {}).get("names", ()))
        if facts.get("imports", {}).get("relative", True):
            unknown.add(group(path))
    shared = {root: True if root in unknown else frozenset(found) for root, found in names.items()}
    result: dict[str, Linked] = {path: shared[group(path)] for path in parent}
    index._tier_linked = result  # type: ignore[attr-defined]  # once per run and worker
    return result


def is_linked(path: str, summary: Optional[ImportSummary], index: Optional["ProjectIndex"],
              view: Optional["ProjectView"] = None) -> Union[bool, Links]:
    """Whether other files of the project can tell the rules about names in ``path``:
    what the files linked to it import (see ``_linked_imports``), empty when none is;
    also for a file outside the index (a notebook) through the files it imports.  With
    the file's ``view`` of the index, the tier can also ask what a callee of another file
    is (``Links.view``), and the view records what the answers read, as it does for the
    rules (the file's cached result depends on it)."""
    if index is None:
        return False
    linked = _linked_imports(index)
    if path in index.by_path:
        connected = linked.get(path, frozenset())
        return Links(connected, _imported_links(path, index, connected), view)
    facts = index.by_path.get(path)
    found: set[str] = set()
    for name in summary.names if summary is not None else ():
        for owner in _project_owners(name, index, facts):
            if owner == path:
                continue
            reached = linked.get(owner, frozenset(index.by_path.get(owner, {}).get("imports", {}).get("names", ())))
            if reached is True:
                return True
            found.update(reached)
    return frozenset(found)


def _init_parameters_of(view: "ProjectView", name: str) -> frozenset[str]:
    """The parameters of the own ``__init__`` of the project class ``name`` names (looked
    up as a rule's ``context.project_class`` does); none when it is no class."""
    info = view.class_info(name)
    init = info.init if info is not None else None
    return frozenset((*init["params"], *init["kwonly"])) if init else frozenset()


def _imported_links(path: str, index: "ProjectIndex", connected: Linked) -> Linked:
    """What the files that ``path`` imports, at any depth, import between them (with its
    own imports): a part of what the files connected to it import, so ``connected``
    where that part cannot be told (a relative import on the way) or is the whole."""
    if connected is True or not connected:
        return connected
    known = getattr(index, "_tier_imported", None)
    if known is None:
        known = index._tier_imported = {}  # type: ignore[attr-defined]  # once per run and worker
    if path not in known:
        names: set[str] = set()
        seen, pending = {path}, [path]
        while pending:
            facts = index.by_path[pending.pop()]
            imports = facts.get("imports", {})
            if imports.get("relative", True):
                known[path] = connected
                return connected
            names.update(imports.get("names", ()))
            for target in [*facts.get("names", {}).values(), *facts.get("star", []), *imports.get("names", [])]:
                for owner in _project_owners(target, index, facts):
                    if owner not in seen and owner in index.by_path:
                        seen.add(owner)
                        pending.append(owner)
        known[path] = frozenset(names)
    return known[path]
