"""Import resolution: which Flax object does a name or attribute chain refer to?

A light, scope-aware replacement for LibCST's QualifiedNameProvider (which costs
several times the parse).  Each scope (module, class, function, lambda,
comprehension) records its bindings once, in source order; a lookup takes the
last binding of the name before the use in the same scope, or the final binding
of an enclosing scope (functions run after their enclosing scope has finished).
Bindings inside ``except`` handlers are fallbacks (``except ImportError: nn =
None``) and lose against any other binding.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import libcst as cst

from nnxlint.flax_api import canonical_name

ScopeNode = Union[
    cst.Module, cst.ClassDef, cst.FunctionDef, cst.Lambda,
    cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp,
]
COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)


@dataclass(frozen=True)
class Binding:
    """One binding of a name in a scope."""

    index: int  # position of the binding statement in the scope body
    qualified_name: Optional[str]  # set for imports, None for any other binding
    in_except: bool = False
    node: Optional[cst.CSTNode] = None  # the def/class/assign/param that binds it


@dataclass
class Scope:
    node: ScopeNode
    parent: Optional["Scope"]
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    # id(statement in this scope's body) -> its index, to place uses in order
    statement_index: dict[int, int] = field(default_factory=dict)
    current_index: int = -1
    # per name, built on first lookup: the binding indexes (ascending, as collected)
    # and, at each position, the position of the last binding outside ``except``
    _lookup_tables: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict, repr=False)
    _held: Optional[set[int]] = field(default=None, repr=False)

    @property
    def is_class(self) -> bool:
        return isinstance(self.node, cst.ClassDef)

    def bind(self, name: str, binding: Binding) -> None:
        self.bindings.setdefault(name, []).append(binding)
        self._lookup_tables.pop(name, None)
        self._held = None

    def holds(self, binding: Binding) -> bool:
        """Whether ``binding`` is one of this scope's (by identity)."""
        if self._held is None:
            self._held = {id(b) for bindings in self.bindings.values() for b in bindings}
        return id(binding) in self._held

    def _tables(self, name: str, candidates: list[Binding]) -> tuple[list[int], list[int]]:
        tables = self._lookup_tables.get(name)
        if tables is None:
            last_plain, plain = [], -1
            for position, binding in enumerate(candidates):
                plain = plain if binding.in_except else position
                last_plain.append(plain)
            tables = self._lookup_tables[name] = ([b.index for b in candidates], last_plain)
        return tables

    def lookup_here(self, name: str, before: Optional[int]) -> Optional[Binding]:
        """The binding of ``name`` in this scope, or None if it is not bound here: the last
        one at or before statement ``before``, preferring bindings outside ``except``
        (O(log n): a file may rebind a name thousands of times)."""
        candidates = self.bindings.get(name)
        if not candidates:
            return None
        indexes, last_plain = self._tables(name, candidates)
        end = len(candidates)
        if before is not None:
            end = bisect.bisect_right(indexes, before) or end  # a use before any binding: later one (loops)
        plain = last_plain[end - 1]
        return candidates[plain if plain >= 0 else end - 1]

    def local_name(self, qualified: str) -> Optional[str]:
        """The name this scope binds to an import of ``qualified`` (``nn`` for ``flax.linen``), if any."""
        return next((local for local, bindings in self.bindings.items()
                     if any(binding.qualified_name == qualified for binding in bindings)), None)

    def lookup(self, name: str) -> Optional[Binding]:
        scope: Optional[Scope] = self
        before: Optional[int] = self.current_index
        while scope is not None:
            # class bodies are not visible from the functions nested in them
            if not (scope.is_class and scope is not self):
                found = scope.lookup_here(name, before)
                if found is not None:
                    return found
            before = None
            scope = scope.parent
        return None


def _import_alias_bindings(node: Union[cst.Import, cst.ImportFrom]) -> Iterator[tuple[str, Optional[str]]]:
    if isinstance(node, cst.Import):
        for alias in node.names:
            dotted = _dotted(alias.name)
            if dotted is None:
                continue
            if alias.asname is not None:
                yield _asname(alias), dotted
            else:  # ``import flax.linen`` binds ``flax``
                top = dotted.split(".")[0]
                yield top, top
        return
    if node.relative:  # relative imports are never Flax
        module = None
    else:
        module = _dotted(node.module) if node.module is not None else None
    if isinstance(node.names, cst.ImportStar):
        return
    for alias in node.names:
        name = _dotted(alias.name)
        if name is None:
            continue
        local = _asname(alias) if alias.asname is not None else name
        yield local, (f"{module}.{name}" if module else None)


def _asname(alias: cst.ImportAlias) -> str:
    assert alias.asname is not None
    target = alias.asname.name
    return target.value if isinstance(target, cst.Name) else ""


def _dotted(node: Optional[cst.BaseExpression]) -> Optional[str]:
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if not isinstance(node, cst.Name):
        return None
    parts.append(node.value)
    return ".".join(reversed(parts))


def target_names(target: cst.BaseExpression) -> Iterator[str]:
    """Names bound by an assignment target (``a``, ``a, (b, *c)``, ``[d]``)."""
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from target_names(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from target_names(target.value)


class _BindingCollector:
    """Records the bindings of one scope body without entering nested scopes."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def collect_statements(self, body: Sequence[cst.CSTNode]) -> None:
        for index, statement in enumerate(body):
            self.scope.statement_index[id(statement)] = index
            self._statement(statement, index, in_except=False)

    def _bind(self, name: str, index: int, qualified: Optional[str], in_except: bool,
              node: Optional[cst.CSTNode] = None) -> None:
        self.scope.bind(name, Binding(index, qualified, in_except, node))

    def _statement(self, node: cst.CSTNode, index: int, in_except: bool) -> None:
        if isinstance(node, cst.BaseSmallStatement):  # body of ``class A: x = 1``
            self._small(node, index, in_except)
        elif isinstance(node, cst.SimpleStatementLine):
            for small in node.body:
                self._small(small, index, in_except)
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            self._bind(node.name.value, index, None, in_except, node)
        elif isinstance(node, (cst.Try, cst.TryStar)):
            self._block(node.body, index, in_except)
            for handler in node.handlers:
                if handler.name is not None:
                    for name in target_names(handler.name.name):
                        self._bind(name, index, None, True)
                self._block(handler.body, index, True)
            if node.orelse is not None:
                self._block(node.orelse.body, index, in_except)
            if node.finalbody is not None:
                self._block(node.finalbody.body, index, in_except)
        elif isinstance(node, cst.For):
            for name in target_names(node.target):
                self._bind(name, index, None, in_except)
            self._block(node.body, index, in_except)
            if node.orelse is not None:
                self._block(node.orelse.body, index, in_except)
        elif isinstance(node, cst.While):
            self._block(node.body, index, in_except)
            if node.orelse is not None:
                self._block(node.orelse.body, index, in_except)
        elif isinstance(node, cst.If):
            branch: Optional[cst.CSTNode] = node
            while isinstance(branch, cst.If):  # a loop: a thousand ``elif`` must not recurse
                self._block(branch.body, index, in_except)
                branch = branch.orelse
            if branch is not None:
                self._statement(branch, index, in_except)
        elif isinstance(node, cst.Else):
            self._block(node.body, index, in_except)
        elif isinstance(node, cst.With):
            for item in node.items:
                if item.asname is not None:
                    for name in target_names(item.asname.name):
                        self._bind(name, index, None, in_except)
            self._block(node.body, index, in_except)
        elif isinstance(node, cst.Match):
            for case in node.cases:
                self._block(case.body, index, in_except)

    def _block(self, block: cst.BaseSuite, index: int, in_except: bool) -> None:
        if isinstance(block, cst.IndentedBlock):
            for statement in block.body:
                self._statement(statement, index, in_except)
        elif isinstance(block, cst.SimpleStatementSuite):
            for small in block.body:
                self._small(small, index, in_except)

    def _small(self, node: cst.CSTNode, index: int, in_except: bool) -> None:
        if isinstance(node, (cst.Import, cst.ImportFrom)):
            for local, qualified in _import_alias_bindings(node):
                self._bind(local, index, qualified, in_except, node)
        elif isinstance(node, cst.Assign):
            for assign_target in node.targets:
                for name in target_names(assign_target.target):
                    self._bind(name, index, None, in_except, node)
        elif isinstance(node, (cst.AnnAssign, cst.AugAssign)):
            if node.value is not None or isinstance(node, cst.AugAssign):
                for name in target_names(node.target):
                    self._bind(name, index, None, in_except, node)


def collect_scope(node: ScopeNode, parent: Optional[Scope]) -> Scope:
    """Build the scope of ``node`` with all its bindings."""
    scope = Scope(node, parent)
    collector = _BindingCollector(scope)
    if isinstance(node, cst.Module):
        collector.collect_statements(node.body)
    elif isinstance(node, cst.ClassDef):
        collector.collect_statements(_suite_body(node.body))
    elif isinstance(node, cst.FunctionDef):
        for param in parameters(node.params):
            scope.bind(param.name.value, Binding(-1, None, False, param))
        collector.collect_statements(_suite_body(node.body))
    elif isinstance(node, cst.Lambda):
        for param in parameters(node.params):
            scope.bind(param.name.value, Binding(-1, None, False, param))
    else:  # comprehensions
        comp_for: Optional[cst.CompFor] = node.for_in
        while comp_for is not None:
            for name in target_names(comp_for.target):
                scope.bind(name, Binding(-1, None))
            comp_for = comp_for.inner_for_in
    return scope


def _suite_body(suite: cst.BaseSuite) -> Sequence[cst.CSTNode]:
    if isinstance(suite, cst.IndentedBlock):
        return suite.body
    if isinstance(suite, cst.SimpleStatementSuite):
        return list(suite.body)
    return []


def parameters(params: cst.Parameters) -> Iterator[cst.Param]:
    """Every parameter: positional-only, regular, ``*args``, keyword-only, ``**kwargs``."""
    yield from params.posonly_params
    yield from params.params
    if isinstance(params.star_arg, cst.Param):
        yield params.star_arg
    yield from params.kwonly_params
    if params.star_kwarg is not None:
        yield params.star_kwarg


def dotted_name(node: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` as a string, or None for anything that is not a plain dotted name."""
    return _dotted(node)


def resolve(scope: Scope, node: cst.BaseExpression) -> Optional[str]:
    """The canonical qualified name of a Name or attribute chain, if it is an import."""
    dotted = _dotted(node)
    if dotted is None:
        return None
    head, _, rest = dotted.partition(".")
    binding = scope.lookup(head)
    if binding is None or binding.qualified_name is None:
        return None
    full = f"{binding.qualified_name}.{rest}" if rest else binding.qualified_name
    return canonical_name(full)
