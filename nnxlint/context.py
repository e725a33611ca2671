"""The per-file state a rule sees, and the single traversal that drives all rules."""

from __future__ import annotations

import dataclasses
import operator
import traceback
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import libcst as cst

from nnxlint import names
from nnxlint.flax_api import EXTERNAL_PACKAGES, FLAX_NNX, nnx_member
from nnxlint.rule import Rule

if TYPE_CHECKING:
    from nnxlint.project import ClassInfo, ProjectView

SCOPE_NODES = (cst.Module, cst.ClassDef, cst.FunctionDef, cst.Lambda) + names.COMPREHENSIONS


def _subclasses(base: type) -> set[type]:
    found = set()
    for subclass in base.__subclasses__():
        found |= {subclass} | _subclasses(subclass)
    return found


# Exact-type sets: isinstance() on LibCST's abstract classes is slow in the hot loop.
_NODE_TYPES = frozenset(_subclasses(cst.CSTNode))
_SCOPE_TYPES = frozenset(SCOPE_NODES)


class RuleCrash(Exception):
    """A rule raised while checking a file; the run goes on without it."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class FileContext:
    """What rules may ask about the file being checked, at the current node."""

    def __init__(self, module: cst.Module, path: str, project: Optional["ProjectView"] = None,
                 describe_fixes: bool = True) -> None:
        self.module = module
        self.path = path
        self.project = project  # the other files of the run (nnxlint.project), when known
        # the run applies or shows fixes (or says why there is none); when False (plain
        # ``check``) a rule may report without working out a costly fix (``fix_deferred``)
        self.describe_fixes = describe_fixes
        self.scopes: list[names.Scope] = []
        self._memo: dict[str, Any] = {}
        # resolve() answers at the current position (several rules ask about the same
        # node there); emptied whenever a scope opens or closes
        self._resolved: dict[tuple[int, int, int], tuple[cst.BaseExpression, Optional[str]]] = {}

    def memoized(self, key: str, compute: Callable[[], Any]) -> Any:
        """A per-file analysis result shared by all rules (computed once)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- scopes and names -------------------------------------------------
    @property
    def scope(self) -> names.Scope:
        return self.scopes[-1]

    @property
    def module_scope(self) -> names.Scope:
        return self.scopes[0]

    def resolve(self, node: cst.BaseExpression) -> Optional[str]:
        """Canonical qualified name of a Name/Attribute that refers to an import; with
        the project index, also of a Flax name another file of the project re-exports
        (``from .compat import nnx``)."""
        scope = self.scopes[-1]
        key = (id(node), id(scope), scope.current_index)
        known = self._resolved.get(key)
        if known is not None and known[0] is node:  # the node is kept alive with it: its id is not reused
            return known[1]
        qualified = self._resolve(node)
        self._resolved[key] = (node, qualified)
        return qualified

    def _resolve(self, node: cst.BaseExpression) -> Optional[str]:
        qualified = names.resolve(self.scope, node)
        if self.project is None or (qualified is not None and qualified.split(".", 1)[0] in EXTERNAL_PACKAGES):
            return qualified
        head = node
        while type(head) is cst.Attribute:
            head = head.value  # type: ignore[attr-defined]
        if type(head) is not cst.Name or head.value not in self._project_imports():  # type: ignore[attr-defined]
            return qualified
        absolute = self.project_name(node, imports_only=True)
        return (self.project.external(absolute) if absolute else None) or qualified

    def _project_imports(self) -> frozenset[str]:
        """Names the module imports from outside the packages of the Flax tables: those
        that may re-export a Flax name (``from .compat import nnx``)."""
        found = self._memo.get("project imports")
        if found is None:
            found = self._memo["project imports"] = frozenset(
                name for name, bindings in self.module_scope.bindings.items() for binding in bindings
                if isinstance(binding.node, (cst.Import, cst.ImportFrom))
                and (binding.qualified_name or ".").split(".", 1)[0] not in EXTERNAL_PACKAGES)
        return found

    def project_name(self, node: cst.BaseExpression, imports_only: bool = False) -> Optional[str]:
        """The absolute qualified name of a Name/Attribute whose head is an import
        (relative ones too) or (unless ``imports_only``) a class or function defined at
        the top of this file; None without the project index."""
        if self.project is None:
            return None
        dotted = names.dotted_name(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        binding = self.scope.lookup(head)
        if binding is None:
            return None
        base = binding.qualified_name
        if isinstance(binding.node, cst.ImportFrom) and binding.node.relative:
            base = self._relative_import(binding.node, head)
        elif base is None and not imports_only and isinstance(binding.node, (cst.ClassDef, cst.FunctionDef)) and \
                any(binding is b for b in self.module_scope.bindings.get(head, ())):
            base = f"{self.project.module}.{head}"
        if base is None:
            return None
        return f"{base}.{rest}" if rest else base

    def _relative_import(self, node: cst.ImportFrom, local: str) -> Optional[str]:
        package = self.project.module if self.path.endswith("__init__.py") else self.project.module.rpartition(".")[0]
        parts = package.split(".") if package else []
        level = len(node.relative)
        if level - 1 > len(parts) or isinstance(node.names, cst.ImportStar):
            return None
        source = ".".join(parts[:len(parts) - (level - 1)] + ([names.dotted_name(node.module)] if node.module else []))
        for alias in node.names:
            asname = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) else None
            name = names.dotted_name(alias.name)
            if (asname or name) == local:
                return f"{source}.{name}" if source else name
        return None

    def project_class(self, node: cst.BaseExpression) -> Optional["ClassInfo"]:
        """The class of the project (any file) a Name/Attribute refers to, with its kind."""
        qualified = self.project_name(node)
        return self.project.class_info(qualified) if qualified and self.project is not None else None

    def nnx_member(self, node: cst.BaseExpression) -> Optional[str]:
        """``'Linear'`` when ``node`` refers to ``flax.nnx.Linear``, else None."""
        return nnx_member(self.resolve(node))

    def lookup(self, name: str) -> Optional[names.Binding]:
        return self.scope.lookup(name)

    def lookup_as_of(self, name: str, anchor: names.Binding) -> Optional[names.Binding]:
        """What ``name`` referred to at the statement that made ``anchor``."""
        for position, scope in enumerate(self.scopes):
            if scope.holds(anchor):
                found = scope.lookup_here(name, anchor.index)
                if found is not None:
                    return found
                outer = [s for s in self.scopes[:position] if not s.is_class]
                return next((b for s in reversed(outer) if (b := s.lookup_here(name, None))), None)
        return self.lookup(name)

    def enclosing(self, kind: type) -> Iterator[cst.CSTNode]:
        """Enclosing scope nodes of a type, innermost first."""
        for scope in reversed(self.scopes):
            if isinstance(scope.node, kind):
                yield scope.node

    def enclosing_function(self) -> Optional[cst.FunctionDef]:
        return next(iter(self.enclosing(cst.FunctionDef)), None)  # type: ignore[return-value]

    def enclosing_class(self) -> Optional[cst.ClassDef]:
        return next(iter(self.enclosing(cst.ClassDef)), None)  # type: ignore[return-value]

    # -- building fixes ----------------------------------------------------
    def module_alias(self, qualified_module: str) -> Optional[cst.BaseExpression]:
        """An expression naming ``qualified_module`` through the file's own imports."""
        module_scope = self.module_scope
        for local, bindings in module_scope.bindings.items():
            for binding in bindings:
                if binding.qualified_name == qualified_module and not binding.in_except:
                    return cst.Name(local)
        for local, bindings in module_scope.bindings.items():  # ``import flax`` -> flax.nnx
            for binding in bindings:
                if binding.qualified_name and qualified_module.startswith(binding.qualified_name + "."):
                    rest = qualified_module[len(binding.qualified_name) + 1:]
                    expression: cst.BaseExpression = cst.Name(local)
                    for part in rest.split("."):
                        expression = cst.Attribute(expression, cst.Name(part))
                    return expression
        return None

    def nnx_ref(self, attribute: str) -> tuple[cst.BaseExpression, frozenset[str]]:
        """``nnx.<attribute>`` spelled with the file's alias for flax.nnx.

        Returns the expression and the imports a fix using it must add.
        """
        alias = self.module_alias(FLAX_NNX)
        imports: frozenset[str] = frozenset()
        if alias is None:
            alias, imports = cst.Name("nnx"), frozenset({FLAX_NNX})
        return cst.Attribute(alias, cst.Name(attribute)), imports


Handler = Callable[[cst.CSTNode], None]

# Fields that hold only whitespace, comments and punctuation: never walked, so
# rules see syntax nodes only (and the walk costs a fraction of libcst's visit).
_LAYOUT_FIELDS = frozenset({
    "lpar", "rpar", "lbracket", "rbracket", "lbrace", "rbrace", "comma", "semicolon", "equal",
    "colon", "dot", "leading_lines", "lines_after_decorators", "header", "footer",
    "trailing_whitespace", "asynchronous", "whitespace", "walrus", "star", "arrow",
})
# Where the dataclass field order is not the source order.
_SOURCE_ORDER = {
    cst.FunctionDef: ("decorators", "name", "type_parameters", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "type_parameters", "bases", "keywords", "body"),
    cst.IfExp: ("body", "test", "orelse"),
}
_child_fields: dict[type, tuple[str, ...]] = {}


def child_fields(node_type: type) -> tuple[str, ...]:
    """The fields of a node type that can hold syntax nodes, in source order."""
    fields = _child_fields.get(node_type)
    if fields is None:
        fields = _SOURCE_ORDER.get(node_type) or tuple(
            field.name for field in dataclasses.fields(node_type)
            if field.name not in _LAYOUT_FIELDS and not field.name.startswith("whitespace"))
        _child_fields[node_type] = fields
    return fields


_child_values: dict[type, Callable[[cst.CSTNode], tuple]] = {}


def _child_values_getter(node_type: type) -> Callable[[cst.CSTNode], tuple]:
    fields = child_fields(node_type)
    if len(fields) == 1:
        name = fields[0]
        getter: Callable[[cst.CSTNode], tuple] = lambda node: (getattr(node, name),)
    else:
        getter = operator.attrgetter(*fields) if fields else lambda node: ()
    _child_values[node_type] = getter
    return getter


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    # the hottest function of a check (every walk): one attrgetter per node type, exact type tests
    values = (_child_values.get(type(node)) or _child_values_getter(type(node)))(node)
    found: list[cst.CSTNode] = []
    for value in values:
        kind = type(value)
        if kind in _NODE_TYPES:
            found.append(value)
        elif kind is list or kind is tuple:  # LibCST's sequence fields hold nodes only
            found += value
    return found


def walk(node: cst.CSTNode, skip: tuple[type, ...] = ()) -> Iterator[cst.CSTNode]:
    """``node`` and every syntax node below it, in source order (a fast sub-walk
    for rules; much cheaper than a LibCST visitor). Nodes of the ``skip`` types
    below ``node`` are neither yielded nor entered."""
    pending = [node]
    while pending:
        current = pending.pop()
        if skip and current is not node and isinstance(current, skip):
            continue
        yield current
        pending.extend(reversed(children(current)))


class Traversal:
    """Walks a module once, keeping scopes, and calls every rule's handlers."""

    def __init__(self, context: FileContext, rules: Sequence[Rule]) -> None:
        self.context = context
        self.crashes: list[RuleCrash] = []
        self._visit: dict[str, list[tuple[Rule, Handler]]] = {}
        self._leave: dict[str, list[tuple[Rule, Handler]]] = {}
        self._disabled: set[str] = set()
        for rule in rules:
            for attribute in dir(type(rule)):
                if attribute.startswith("visit_"):
                    self._visit.setdefault(attribute[6:], []).append((rule, getattr(rule, attribute)))
                elif attribute.startswith("leave_"):
                    self._leave.setdefault(attribute[6:], []).append((rule, getattr(rule, attribute)))

    def _call(self, handlers: list[tuple[Rule, Handler]], node: cst.CSTNode) -> None:
        for rule, handler in handlers:
            if rule.code in self._disabled:
                continue
            try:
                handler(node)
            except Exception as error:  # a broken rule must not stop the run
                self._disabled.add(rule.code)
                where = traceback.extract_tb(error.__traceback__)[-1]
                self.crashes.append(RuleCrash(
                    rule.code, f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno})"))

    def run(self, module: cst.Module) -> None:
        # a leave is queued only where it does something (a handler, a scope to close):
        # most of the ~700k nodes of a large tree have neither; it is queued as a 1-tuple,
        # so the nodes themselves go on the stack bare
        leaves = {kind for kind in _NODE_TYPES if kind in _SCOPE_TYPES or kind.__name__ in self._leave}
        visits = {kind: self._visit.get(kind.__name__) for kind in _NODE_TYPES}
        scopes = self.context.scopes
        pending: list = [module]
        pop, push, extend = pending.pop, pending.append, pending.extend
        while pending:
            node = pop()
            kind = type(node)
            if kind is tuple:
                self.on_leave(node[0])
                continue
            if scopes:
                index = scopes[-1].statement_index.get(id(node))
                if index is not None:
                    scopes[-1].current_index = index
            if kind in _SCOPE_TYPES:
                self._open_scope(node)
            handlers = visits[kind]
            if handlers:
                self._call(handlers, node)
            if kind in leaves:
                push((node,))
            found = children(node)
            found.reverse()
            extend(found)

    def _open_scope(self, node: cst.CSTNode) -> None:
        scopes = self.context.scopes
        scopes.append(names.collect_scope(node, scopes[-1] if scopes else None))  # type: ignore[arg-type]
        self.context._resolved.clear()

    def on_leave(self, original_node: cst.CSTNode) -> None:
        handlers = self._leave.get(type(original_node).__name__)
        if handlers:
            self._call(handlers, original_node)
        if type(original_node) in _SCOPE_TYPES:
            self.context.scopes.pop()
            self.context._resolved.clear()
