"""The project index: what the NNX rules need to know across the files of a run.

One cheap pass with the standard library's ``ast`` (about a tenth of a LibCST
parse) records, per module, the *facts* other files may ask about, as plain
JSON-compatible data (so a run can cache them and hand them to forked workers):

- ``names``: what each module-level import or alias binds, as an absolute
  qualified name (relative imports resolved): the re-exports between files;
- ``classes``: each top-level class, its bases and class keywords
  (``pytree=False``), its ``__init__`` parameters (is ``rngs`` required, at which
  position), its methods, the types it assigns to ``self.<attribute>`` in any
  method (``self.count = Count(...)``, ``nnx.data(nnx.Param(...))``, annotations
  such as ``Variable | None``), attributes annotated ``nnx.Data[...]``, and what
  its methods return;
- ``functions``: each top-level function, its parameters, their annotations and
  what it returns (``return model, optimizer``);
- ``variables``: module-level variables and what they are assigned
  (``model = MLP(...)``);
- ``calls``: calls of other functions with what each argument is known to be,
  so a parameter's type can come from every call site in the project.

A *type reference* is ``["call", q]`` (what calling ``q`` gives: an instance of
class ``q``, or what function ``q`` returns), ``["inst", q]`` (an instance of
``q``, from an annotation), ``["item", i, ref]`` (element ``i`` of the tuple
``ref`` gives), or ``["tuple", [refs]]``.

``ProjectIndex`` answers questions on those facts, following re-exports:
``lookup`` (what a qualified name is), ``class_info`` (a class's kind: NNX
module, ``nnx.Pytree``, Linen module, ``nnx.Variable`` subclass, optimizer,
Flax ``TrainState``, and its Flax root), ``instance_class`` (the class of the
object a type reference denotes), ``attribute_class``, ``parameter_class``,
and the call sites of a function.  Names of Flax, JAX, optax and numpy are never
looked up in the index (even when the run checks Flax's own sources): they come
back as their canonical public name (``flax.nnx.Linear``).

Every answer records which modules it read (``used``) and which functions'
call sites (``calls_used``) in a ``Dependencies`` the caller passes, so the
result cache can invalidate a file's findings when those facts change.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from nnxlint.cache import content_digest
from nnxlint import tier
from nnxlint.flax_api import (
    EXTERNAL_PACKAGES, LINEN_CELL_BASE, LINEN_MODULE, SUBMODULE_CONTAINERS, VARIABLE_TYPES, canonical_name, nnx_member,
)
from nnxlint.textio import read_regular
from nnxlint.workers import collecting_once, die_with_parent

TRAIN_STATE = "flax.training.train_state.TrainState"
MODULE, PYTREE, LINEN, VARIABLE, OPTIMIZER, MODEL_AND_OPTIMIZER, TRAIN_STATE_KIND = (
    "module", "pytree", "linen", "variable", "optimizer", "model_and_optimizer", "train_state")
# Flax roots of the class kinds, by canonical name.
_ROOTS = {
    "flax.nnx.Module": MODULE, "flax.nnx.Pytree": PYTREE, "flax.nnx.Object": PYTREE, LINEN_MODULE: LINEN,
    LINEN_CELL_BASE: LINEN, "flax.nnx.RNNCellBase": MODULE,
    "flax.nnx.Optimizer": OPTIMIZER, "flax.nnx.ModelAndOptimizer": MODEL_AND_OPTIMIZER,
    TRAIN_STATE: TRAIN_STATE_KIND,
}
# Wrappers that return their argument marked as data: ``nnx.data(nnx.Param(...))``.
# Containers of submodules (``self.layers = nnx.List([...])``).
# Calls that return (a copy of) their first argument, with its class.
_PASS_THROUGH = frozenset({"flax.nnx.data", "flax.nnx.clone", "flax.nnx.bridge.lazy_init",
                           "jax.lax.with_sharding_constraint"})
_MAX_DEPTH = 12  # re-export chains and base-class chains longer than this are unknown
NOTEBOOK_SUFFIX = ".ipynb"
_MISSING = object()


# -- the facts of one module ---------------------------------------------------------
def module_name(path: str) -> tuple[str, str]:
    """``(root, dotted name)`` of a file: the package directories above it
    (``__init__.py``) give the name, the first directory without one is the root."""
    file = Path(path).resolve()
    parts = [] if file.name == "__init__.py" else [file.stem]
    directory = file.parent
    while (directory / "__init__.py").is_file() and directory.parent != directory:
        parts.insert(0, directory.name)
        directory = directory.parent
    return str(directory), ".".join(parts)


def parse(text: str) -> Optional[ast.Module]:
    """The ``ast`` tree of a source text, or None when it does not parse. The first tier
    of a check can share this tree (``file_facts`` takes it)."""
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: null bytes
        return None


def dotted_name(node: ast.AST) -> Optional[str]:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class _FactCollector:
    """Collects the facts of one module (see the module docstring)."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.names: dict[str, str] = {}  # module-level local name -> absolute qualified name
        self.facts: dict[str, Any] = {"names": self.names, "star": [], "classes": {}, "functions": {},
                                      "variables": {}, "calls": []}

    # name resolution inside the module
    def absolute(self, node: ast.ImportFrom) -> Optional[str]:
        if not node.level:
            return node.module
        parts = self.package.split(".") if self.package else []
        if node.level - 1 > len(parts):
            return None
        base = parts[:len(parts) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else [])) or None

    def qualify(self, node: Optional[ast.AST], local: Optional[dict[str, Any]] = None) -> Optional[str]:
        """The absolute qualified name an expression names at module level."""
        if node is None:
            return None
        if isinstance(node, ast.Subscript):  # ``nnx.Variable[jax.Array]``
            return self.qualify(node.value, local)
        dotted = dotted_name(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        if local is not None and head in local:
            return None  # a local variable, not a module-level name
        target = self.names.get(head)
        if target is None:
            return None
        full = f"{target}.{rest}" if rest else target
        return canonical_name(full) if full.split(".")[0] in EXTERNAL_PACKAGES else full

    def annotation(self, node: Optional[ast.AST]) -> Optional[list]:
        """The type reference of an annotation: ``X``, ``X | None``, ``Optional[X]``, ``"X"``."""
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            sides = [side for side in (node.left, node.right)
                     if not (isinstance(side, ast.Constant) and side.value is None)]
            return self.annotation(sides[0]) if len(sides) == 1 else None
        if isinstance(node, ast.Subscript) and self.qualify(node.value) in ("typing.Optional",):
            return self.annotation(node.slice)
        qualified = self.qualify(node)
        return ["inst", qualified] if qualified else None

    def value(self, node: Optional[ast.AST], local: dict[str, Any]) -> Optional[list]:
        """The type reference of an expression, when it is a call of a known name, a
        local with one, or a tuple of them."""
        if isinstance(node, ast.Call):
            callee = self.callee(node.func, local)
            if callee in _PASS_THROUGH and node.args:
                return self.value(node.args[0], local)
            return ["call", callee] if callee else None
        if isinstance(node, ast.Name):
            return local[node.id] if node.id in local else self.facts["variables"].get(node.id)
        if isinstance(node, ast.Tuple):
            items = [self.value(element, local) for element in node.elts]
            return ["tuple", items] if any(items) else None
        return None

    def callee(self, func: ast.AST, local: dict[str, Any]) -> Optional[str]:
        """The function a call goes to, also through a transform applied in place
        (``nnx.jit(step)(...)``)."""
        if isinstance(func, ast.Call) and func.args and not func.keywords and len(func.args) == 1:
            inner = self.qualify(func.args[0], local)
            wrapper = self.qualify(func.func, local) or ""
            if inner and wrapper.split(".")[0] in EXTERNAL_PACKAGES:
                return inner
        return self.qualify(func, local)

    # statements
    def collect(self, tree: ast.Module) -> dict[str, Any]:
        statements = list(self._module_statements(tree.body))
        for statement in statements:
            self._module_statement(statement)
        module_scan = _Scan(tree)
        for statement in statements:
            if isinstance(statement, ast.ClassDef):
                self.facts["classes"][statement.name] = self._class(statement)
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.facts["functions"][statement.name] = self._function(statement, _Scan(statement))[0]
        self._calls(module_scan, {})
        return self.facts

    def _module_statements(self, body: Sequence[ast.stmt]) -> Iterable[ast.stmt]:
        """Module-level statements, also inside ``if``/``try`` blocks."""
        for statement in body:
            if isinstance(statement, ast.If):
                yield from self._module_statements(statement.body)
                yield from self._module_statements(statement.orelse)
            elif isinstance(statement, ast.Try):
                yield from self._module_statements(statement.body)
                yield from self._module_statements(statement.orelse)
            else:
                yield statement

    def _module_statement(self, statement: ast.stmt) -> None:
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.asname:
                    self.names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    self.names[top] = top
        elif isinstance(statement, ast.ImportFrom):
            source = self.absolute(statement)
            if source is None:
                return
            for alias in statement.names:
                if alias.name == "*":
                    self.facts["star"].append(source)
                else:
                    self.names[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            self.names[statement.name] = f"{self.module}.{statement.name}"
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if len(targets) == 1 and isinstance(targets[0], (ast.Tuple, ast.List)):  # ``model, opt = create()``
                self._bind(self.facts["variables"], targets[0], self.value(statement.value, {}))
                return
            if len(targets) != 1 or not isinstance(targets[0], ast.Name):
                return
            name = targets[0].id
            aliased = self.qualify(statement.value)
            if aliased is not None and isinstance(statement.value, (ast.Name, ast.Attribute)):
                self.names[name] = aliased  # ``Dense = nnx.Linear``: a re-export
                return
            reference = self.value(statement.value, {})
            if reference is None and isinstance(statement, ast.AnnAssign):
                reference = self.annotation(statement.annotation)
            if reference is not None:
                self.facts["variables"][name] = reference
            self.names.pop(name, None)

    def _locals(self, function: ast.AST, scan: "_Scan") -> dict[str, Any]:
        """Local names of a function with a type reference all their assignments agree on
        (None where they do not): annotated parameters, ``x = Call(...)``, ``a, b = f()``."""
        local: dict[str, Any] = {}
        arguments = function.args  # type: ignore[attr-defined]
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
            local[argument.arg] = self.annotation(argument.annotation)
        for extra in (arguments.vararg, arguments.kwarg):
            if extra is not None:
                local[extra.arg] = None
        for node in scan.assignments:
            if isinstance(node, ast.Assign):
                reference = self.value(node.value, local)
                for target in node.targets:
                    self._bind(local, target, reference)
            elif isinstance(node, ast.AnnAssign):
                reference = self.value(node.value, local) if node.value else None
                self._bind(local, node.target, reference or self.annotation(node.annotation))
            else:
                for target in _targets_of(node):
                    self._bind(local, target, None)
        return local

    def _bind(self, local: dict[str, Any], target: ast.AST, reference: Optional[list]) -> None:
        if isinstance(target, ast.Name):
            if target.id in local and local[target.id] != reference:
                reference = None
            local[target.id] = reference
        elif isinstance(target, (ast.Tuple, ast.List)):
            for position, element in enumerate(target.elts):
                item = ["item", position, reference] if reference is not None else None
                self._bind(local, element, item)
        elif isinstance(target, ast.Starred):
            self._bind(local, target.value, None)

    def _function(self, function: ast.AST, scan: "_Scan") -> tuple[dict[str, Any], dict[str, Any]]:
        """The facts of a function and its local names; records its calls."""
        arguments = function.args  # type: ignore[attr-defined]
        local = self._locals(function, scan)
        returns = [self.value(node.value, local) for node in scan.returns if node.value is not None]
        annotated = self.annotation(function.returns)  # type: ignore[attr-defined]
        positional = [*arguments.posonlyargs, *arguments.args]
        with_default = positional[len(positional) - len(arguments.defaults):] if arguments.defaults else []
        self._calls(scan, local)
        return {
            "required": [argument.arg for argument in positional if argument not in with_default]
            + [argument.arg for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults)
               if default is None],
            "params": [argument.arg for argument in positional],
            "kwonly": [argument.arg for argument in arguments.kwonlyargs],
            "annotations": {argument.arg: reference for argument in
                            [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
                            if (reference := self.annotation(argument.annotation)) is not None},
            "returns": [annotated] if annotated else returns,
        }, local

    def _class(self, node: ast.ClassDef) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "bases": [self.qualify(base) for base in node.bases],
            "keywords": {keyword.arg: _literal(keyword.value) for keyword in node.keywords if keyword.arg},
            "methods": {}, "attributes": {}, "elements": {}, "data": [],
        }
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                annotation = statement.annotation
                if isinstance(annotation, ast.Subscript) and self.qualify(annotation.value) == "flax.nnx.Data":
                    facts["data"].append(statement.target.id)
            if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            scan = _Scan(statement)
            method, local = self._function(statement, scan)
            facts["methods"][statement.name] = method
            if not method["params"]:
                continue
            owner = method["params"][0]
            local.pop(owner, None)
            for child in scan.assignments:
                targets: list = []
                reference = None
                if isinstance(child, ast.Assign):
                    targets, reference = child.targets, self.value(child.value, local)
                elif isinstance(child, ast.AnnAssign):  # the declared type wins over the value
                    targets = [child.target]
                    reference = self.annotation(child.annotation) or \
                        (self.value(child.value, local) if child.value else None)
                for target in targets:
                    if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                            and target.value.id == owner):
                        facts["attributes"].setdefault(target.attr, []).append(reference)
                        if isinstance(child, ast.Assign):
                            elements = self._elements(child.value, local)
                            if elements is not None:
                                facts["elements"].setdefault(target.attr, []).extend(elements)
        return facts

    def _elements(self, node: ast.AST, local: dict[str, Any]) -> Optional[list]:
        """The type references of the elements of a container of submodules
        (``nnx.List([Block(...) for _ in range(n)])``, ``[A(...), B(...)]``), else None."""
        if isinstance(node, ast.Call) and nnx_member(self.qualify(node.func, local)) in SUBMODULE_CONTAINERS \
                and len(node.args) == 1:
            node = node.args[0]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(element, local) for element in node.elts]
        if isinstance(node, ast.ListComp):
            return [self.value(node.elt, local)]
        if isinstance(node, ast.Dict):
            return [self.value(value, local) for value in node.values]
        return None

    def _calls(self, scan: "_Scan", local: dict[str, Any]) -> None:
        """Calls of project functions in a body, with what each argument is known to be
        (unknown ones left out); then those of the functions nested in it."""
        for node in scan.calls:
            callee = self.callee(node.func, local)
            if callee is None or callee.split(".")[0] in EXTERNAL_PACKAGES:
                continue
            arguments: dict[str, Any] = {}
            mapped = not any(isinstance(argument, ast.Starred) for argument in node.args) and \
                all(keyword.arg is not None for keyword in node.keywords)
            if mapped:  # ``*args``/``**kwargs``: arguments cannot be mapped, so all are unknown
                for position, argument in enumerate(node.args):
                    if (reference := self.value(argument, local)) is not None:
                        arguments[str(position)] = reference
                for keyword in node.keywords:
                    if (reference := self.value(keyword.value, local)) is not None:
                        arguments[keyword.arg] = reference  # type: ignore[index]
            self.facts["calls"].append([callee, arguments])
        if isinstance(scan.node, ast.Module):
            return  # its functions and classes have their own facts, and record their calls
        for nested in scan.nested:
            if isinstance(nested, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = _Scan(nested)
                self._calls(inner, {**local, **self._locals(nested, inner)})
            elif isinstance(nested, ast.ClassDef):
                self._calls(_Scan(nested), local)


class _Scan:
    """One walk of a body (nested functions and classes not entered): what the
    collector needs from it."""

    def __init__(self, node: ast.AST) -> None:
        self.node = node
        self.assignments: list[ast.AST] = []
        self.returns: list[ast.Return] = []
        self.calls: list[ast.Call] = []
        self.nested: list[ast.AST] = []
        pending = list(getattr(node, "body", []))
        while pending:
            current = pending.pop()
            kind = type(current)
            if kind in _LEAVES:
                continue
            if kind is ast.Call:
                self.calls.append(current)  # type: ignore[arg-type]
            elif kind in _ASSIGNMENTS:
                self.assignments.append(current)
            elif kind is ast.Return:
                self.returns.append(current)  # type: ignore[arg-type]
            elif kind in _NESTED:
                self.nested.append(current)
                continue
            for name in tier.child_fields(kind):
                value = getattr(current, name)
                if type(value) is list:
                    pending.extend(value)
                elif value is not None:
                    pending.append(value)


_ASSIGNMENTS = frozenset({ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor, ast.With, ast.AsyncWith,
                          ast.NamedExpr, ast.comprehension})
_NESTED = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda})
# Nodes with nothing below them that the scan needs.
_LEAVES = frozenset({ast.Name, ast.Constant, ast.Pass, ast.Break, ast.Continue, ast.Import, ast.ImportFrom,
                     ast.Global, ast.Nonlocal})
def _literal(node: ast.AST) -> Any:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, str)) else None


def _targets_of(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension, ast.NamedExpr, ast.AugAssign)):
        return [node.target]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [item.optional_vars for item in node.items if item.optional_vars is not None]
    return []


def file_facts(tree: ast.Module, module: str, is_package: bool = False) -> dict[str, Any]:
    """The facts of one module, from its ``ast`` tree."""
    return _FactCollector(module, is_package).collect(tree)


def facts_of_file(path: str) -> Optional[dict[str, Any]]:
    """The facts of a ``.py`` file (None when it cannot be read or parsed), with its
    root directory, module name and content digest under ``"root"``, ``"module"``,
    ``"digest"``."""
    if path.endswith(NOTEBOOK_SUFFIX):
        return None
    try:
        data = read_regular(path)  # a FIFO named .py must not block the run
    except OSError:
        return None
    tree = parse(data.decode("utf-8", errors="replace"))
    if tree is None:
        return None
    root, module = module_name(path)
    facts = file_facts(tree, module, Path(path).name == "__init__.py")
    is_package = Path(path).name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    facts["imports"] = tier.summarize(tree, package).to_data()  # for the cheap tier of the check: one parse
    facts["root"], facts["module"], facts["digest"] = root, module, content_digest(data)
    return facts


def facts_digest(facts: Optional[dict[str, Any]]) -> str:
    return hashlib.blake2b(json.dumps(facts, sort_keys=True).encode(), digest_size=16).hexdigest()


# -- questions on the facts of a project ----------------------------------------------
@dataclass(frozen=True)
class ClassInfo:
    """A class of the project: where it is and what kind of class it is."""

    qualified: str
    kind: Optional[str]  # MODULE, PYTREE, LINEN, VARIABLE, OPTIMIZER, ... or None (a plain class)
    flax_root: Optional[str]  # the Flax class it derives from, canonical (``flax.nnx.Param``)
    path: str
    facts: dict = field(compare=False, hash=False, repr=False)

    @property
    def init(self) -> Optional[dict]:
        return self.facts["methods"].get("__init__")

    def requires_rngs(self) -> bool:
        """Its own ``__init__`` has an ``rngs`` parameter without a default."""
        init = self.init
        return bool(init) and "rngs" in init["required"]

    def rngs_position(self) -> Optional[int]:
        init = self.init
        if not init or "rngs" not in init["params"]:
            return None
        return init["params"].index("rngs") - 1  # after ``self``


@dataclass
class Dependencies:
    """What one file's findings depended on in other files."""

    modules: set[str] = field(default_factory=set)  # paths of modules whose facts were read
    calls: set[str] = field(default_factory=set)  # functions whose call sites were read
    whole_run: bool = False  # the text of every file of the run was read (who reads a sown collection)


class ProjectIndex:
    """The facts of every module of a run (``build``), and questions on them."""

    def __init__(self, facts_by_path: dict[str, dict[str, Any]], lazy_roots: Sequence[str] = ()) -> None:
        self.by_path: dict[str, dict[str, Any]] = {}
        self.run_paths = frozenset(facts_by_path)  # the files of the run (``by_path`` also gets those read on demand)
        self.run_id: Optional[str] = None
        self._facts_digests: dict[str, Optional[str]] = {}
        self._paths_of_class: dict[str, set[str]] = {}
        self._listings: dict[str, frozenset[str]] = {}
        self._answers: dict[tuple, tuple[Any, Dependencies]] = {}
        self.modules: dict[str, list[tuple[str, dict]]] = {}  # dotted name -> [(path, facts)]
        self.roots: list[str] = list(lazy_roots)
        self._calls: Optional[dict[str, list[tuple[str, dict]]]] = None
        self._class_cache: dict[tuple[str, str], Optional[ClassInfo]] = {}
        for path, facts in facts_by_path.items():
            self._add(path, facts)

    def _add(self, path: str, facts: dict[str, Any]) -> None:
        self.by_path[path] = facts
        self.modules.setdefault(facts["module"], []).append((path, facts))
        if facts["root"] not in self.roots:
            self.roots.append(facts["root"])

    def run_digest(self) -> str:
        """A digest of every file of the run (paths and contents; the runner sets it as
        ``run_id``): unchanged, every call site in the project is unchanged too."""
        if self.run_id is None:
            self.run_id = facts_digest(sorted((path, facts["digest"]) for path, facts in self.by_path.items()))
        return self.run_id

    def facts_digest(self, path: str) -> Optional[str]:
        """The digest of a file's facts (its ``digest`` of contents left out)."""
        if path not in self._facts_digests:
            facts = self.by_path.get(path) or facts_of_file(path)
            self._facts_digests[path] = None if facts is None else facts_digest(
                {key: _shared_imports(value) if key == "imports" else value
                 for key, value in facts.items() if key != "digest"})
        return self._facts_digests[path]

    # modules
    def module(self, name: str, root: Optional[str], used: Optional[Dependencies] = None) -> Optional[tuple[str, dict]]:
        """``(path, facts)`` of module ``name`` as seen from a file under ``root``: the one
        under the same root, else the only one of that name. A module that is not in the
        run but lies under a known root is indexed when first asked for."""
        entries = self.modules.get(name)
        if entries is None:
            entries = self._load(name)
        if not entries:
            return None
        chosen = next((entry for entry in entries if entry[1]["root"] == root), None)
        if chosen is None and len(entries) == 1:
            chosen = entries[0]
        if chosen is not None and used is not None:
            used.modules.add(chosen[0])
        return chosen

    def _load(self, name: str) -> list:
        if not name or name.split(".")[0] in EXTERNAL_PACKAGES:
            self.modules[name] = []
            return []
        relative = name.replace(".", os.sep)
        top = name.split(".")[0]
        for root in self.roots:
            if top not in self._entries(root) and top + ".py" not in self._entries(root):
                continue
            for candidate in (os.path.join(root, relative + ".py"), os.path.join(root, relative, "__init__.py")):
                if candidate in self.by_path:
                    continue
                if os.path.isfile(candidate):
                    facts = facts_of_file(candidate)
                    if facts is not None and facts["module"] == name:
                        self._add(candidate, facts)
        self.modules.setdefault(name, [])
        return self.modules[name]

    def _entries(self, root: str) -> frozenset[str]:
        """The names in a root directory (listed once): where top-level packages may be."""
        if root not in self._listings:
            try:
                self._listings[root] = frozenset(os.listdir(root))
            except OSError:
                self._listings[root] = frozenset()
        return self._listings[root]

    def lookup(self, qualified: str, root: Optional[str], used: Optional[Dependencies] = None,
               depth: int = 0) -> Optional[tuple[str, Any]]:
        """What a qualified name is, following re-exports: ``("external", canonical)``,
        ``("module", (path, facts))``, ``("class", (path, facts, name))``,
        ``("function", ...)``, ``("variable", ...)``; None when unknown."""
        if depth > _MAX_DEPTH or not qualified:
            return None
        return self._memo(("lookup", qualified, root), used,
                          lambda depends: self._lookup(qualified, root, depends, depth))

    def _lookup(self, qualified: str, root: Optional[str], used: Dependencies, depth: int) -> Optional[tuple[str, Any]]:
        if qualified.split(".")[0] in EXTERNAL_PACKAGES:
            return "external", canonical_name(qualified)
        parts = qualified.split(".")
        for split in range(len(parts), 0, -1):  # the longest prefix that is a module
            found = self.module(".".join(parts[:split]), root, used)
            if found is None:
                continue
            rest = parts[split:]
            if not rest:
                return "module", found
            return self._member(found, rest, used, depth)
        return None

    def _member(self, module: tuple[str, dict], rest: list[str], used: Optional[Dependencies],
                depth: int) -> Optional[tuple[str, Any]]:
        path, facts = module
        name, tail = rest[0], rest[1:]
        for kind, table in (("class", "classes"), ("function", "functions"), ("variable", "variables")):
            if name in facts[table]:
                return (kind, (path, facts, name)) if not tail else None
        target = facts["names"].get(name)
        if target is None:
            for star in facts["star"]:
                found = self.lookup(".".join([star, *rest]), facts["root"], used, depth + 1)
                if found is not None:
                    return found
            submodule = self.module(f"{facts['module']}.{name}", facts["root"], used)
            if submodule is not None:
                return self._member(submodule, tail, used, depth + 1) if tail else ("module", submodule)
            return None
        full = ".".join([target, *tail])
        return self.lookup(full, facts["root"], used, depth + 1)

    # classes
    def class_info(self, qualified: str, root: Optional[str], used: Optional[Dependencies] = None,
                   depth: int = 0) -> Optional[ClassInfo]:
        """The class ``qualified`` names, when it is a class of the project."""
        found = self.lookup(qualified, root, used)
        if found is None or found[0] != "class":
            return None
        path, facts, name = found[1]
        key = (path, name)
        if key in self._class_cache:
            info = self._class_cache[key]
            if info is not None and used is not None:
                used.modules |= self._class_paths(info, root)
            return info
        self._class_cache[key] = None  # cyclic bases: plain class
        kind, flax_root = None, None
        class_facts = facts["classes"][name]
        for base in class_facts["bases"]:
            if base is None or depth > _MAX_DEPTH:
                continue
            base_found = self.lookup(base, facts["root"], used)
            if base_found is not None and base_found[0] == "external":
                flax_root = base_found[1]
                kind = _flax_kind(flax_root)
            else:
                base_info = self.class_info(base, facts["root"], used, depth + 1)
                if base_info is not None and base_info.kind is not None:
                    kind, flax_root = base_info.kind, base_info.flax_root
            if kind is not None:
                break
        info = ClassInfo(f"{facts['module']}.{name}", kind, flax_root, path, class_facts)
        self._class_cache[key] = info
        return info

    def _class_paths(self, info: ClassInfo, root: Optional[str]) -> set[str]:
        """The files a class's kind was read from: its own and those of its bases."""
        if info.qualified in self._paths_of_class:
            return self._paths_of_class[info.qualified]
        self._paths_of_class[info.qualified] = paths = {info.path}
        facts = self.by_path.get(info.path, {})
        for base in facts.get("classes", {}).get(info.qualified.rpartition(".")[2], {}).get("bases", ()):
            if base and base.split(".")[0] not in EXTERNAL_PACKAGES:
                base_info = self.class_info(base, facts["root"])
                if base_info is not None and base_info.path != info.path:
                    paths |= self._class_paths(base_info, root)
        return paths

    def bases(self, info: ClassInfo, used: Optional[Dependencies] = None) -> list[ClassInfo]:
        root = self.by_path[info.path]["root"]
        return [base for qualified in info.facts["bases"] if qualified
                and (base := self.class_info(qualified, root, used)) is not None]

    # instances
    def _memo(self, key: tuple, used: Optional[Dependencies], compute) -> Any:
        """``compute(dependencies)`` once per key (a function returning what another returns
        would otherwise be followed again and again); a key met again while it is being
        computed (recursion) is unknown. Each hit adds what the answer depended on."""
        found = self._answers.get(key, _MISSING)
        if found is _MISSING:
            self._answers[key] = (None, Dependencies())
            depends = Dependencies()
            found = self._answers[key] = (compute(depends), depends)
        if used is not None:
            used.modules |= found[1].modules
            used.calls |= found[1].calls
        return found[0]

    def instance_class(self, reference: Optional[list], root: Optional[str],
                       used: Optional[Dependencies] = None, depth: int = 0) -> Optional[str]:
        """The qualified class of the object a type reference denotes: a project class
        (absolute name) or a Flax class (canonical name); None when unknown."""
        if reference is None or depth > _MAX_DEPTH:
            return None
        return self._memo(("instance", repr(reference), root), used,
                          lambda depends: self._instance_class(reference, root, depends, depth))

    def _instance_class(self, reference: list, root: Optional[str], used: Dependencies,
                        depth: int) -> Optional[str]:
        mode = reference[0]
        if mode == "item":
            inner = self._tuple_items(reference[2], root, used, depth)
            position = reference[1]
            return self.instance_class(inner[position], root, used, depth + 1) \
                if inner is not None and position < len(inner) else None
        if mode not in ("call", "inst"):
            return None
        found = self.lookup(reference[1], root, used)
        if found is None:
            return None
        if found[0] == "external":
            return found[1]
        if found[0] == "class":
            path, facts, name = found[1]
            return f"{facts['module']}.{name}"
        if found[0] == "function" and mode == "call":
            path, facts, name = found[1]
            return _agreed(self.instance_class(returned, facts["root"], used, depth + 1)
                           for returned in facts["functions"][name]["returns"])
        if found[0] == "variable":
            path, facts, name = found[1]
            # calling a variable (``model(x)``) gives an unknown result
            return self.instance_class(facts["variables"][name], facts["root"], used, depth + 1) \
                if mode == "inst" else None
        return None

    def _tuple_items(self, reference, root, used, depth) -> Optional[list]:
        if reference is None or depth > _MAX_DEPTH:
            return None
        return self._memo(("items", repr(reference), root), used,
                          lambda depends: self._tuple_items_of(reference, root, depends, depth))

    def _tuple_items_of(self, reference, root, used, depth) -> Optional[list]:
        if reference[0] == "tuple":
            return reference[1]
        if reference[0] == "call":
            found = self.lookup(reference[1], root, used)
            if found is not None and found[0] == "function":
                path, facts, name = found[1]
                returned = [self._tuple_items(item, facts["root"], used, depth + 1)
                            for item in facts["functions"][name]["returns"]]
                if returned and all(item is not None for item in returned) and len({len(i) for i in returned}) == 1:
                    return returned[0] if len(returned) == 1 else None
        return None

    def attribute_class(self, info: ClassInfo, attribute: str, used: Optional[Dependencies] = None,
                        depth: int = 0) -> Optional[str]:
        """The class of ``<instance>.<attribute>``, when every assignment in the class (and
        its project bases) agrees on it."""
        references = info.facts["attributes"].get(attribute)
        root = self.by_path[info.path]["root"]
        if references is None:
            if depth > _MAX_DEPTH:
                return None
            return _agreed_or_none([self.attribute_class(base, attribute, used, depth + 1)
                                    for base in self.bases(info, used)])
        return _agreed(self.instance_class(reference, root, used) for reference in references)

    def element_class(self, info: ClassInfo, attribute: str, used: Optional[Dependencies] = None,
                      depth: int = 0) -> Optional[str]:
        """The class of ``<instance>.<attribute>[i]`` when the attribute is a container
        whose elements all agree on it."""
        references = info.facts.get("elements", {}).get(attribute)
        if references is None:
            if depth > _MAX_DEPTH or attribute in info.facts["attributes"]:
                return None
            return _agreed_or_none([self.element_class(base, attribute, used, depth + 1)
                                    for base in self.bases(info, used)])
        root = self.by_path[info.path]["root"]
        return _agreed(self.instance_class(reference, root, used) for reference in references) if references else None

    # call sites
    def call_sites(self, function: str, used: Optional[Dependencies] = None) -> list[tuple[str, dict]]:
        """``(root, arguments)`` for every call of ``function`` (an absolute name) in the run."""
        if self._calls is None:
            by_callee: dict[tuple[str, str], list[dict]] = {}  # each callee spelling is resolved once
            for facts in self.by_path.values():
                for callee, arguments in facts["calls"]:
                    by_callee.setdefault((facts["root"], callee), []).append(arguments)
            self._calls = {}
            for (root, callee), sites in by_callee.items():
                found = self.lookup(callee, root)
                if found is not None and found[0] == "function":
                    target = f"{found[1][1]['module']}.{found[1][2]}"
                    self._calls.setdefault(target, []).extend((root, arguments) for arguments in sites)
        if used is not None:
            used.calls.add(function)
        return self._calls.get(function, [])

    def parameter_class(self, function: str, parameter: str, root: Optional[str],
                        used: Optional[Dependencies] = None) -> Optional[str]:
        """The class of what a function's parameter holds: its annotation, or what every
        call site in the run passes there (at least one, all agreeing)."""
        found = self.lookup(function, root, used)
        if found is None or found[0] != "function":
            return None
        path, facts, name = found[1]
        function_facts = facts["functions"][name]
        if parameter in function_facts["annotations"]:
            return self.instance_class(function_facts["annotations"][parameter], facts["root"], used)
        params = function_facts["params"]
        position = str(params.index(parameter)) if parameter in params else None
        classes = []
        for call_root, arguments in self.call_sites(f"{facts['module']}.{name}", used):
            reference = arguments.get(parameter) or (arguments.get(position) if position else None)
            if not arguments or reference is None:
                return None
            classes.append(self.instance_class(reference, call_root, used))
        return _agreed(classes)

    def calls_digest(self, functions: Iterable[str]) -> str:
        return facts_digest([[function, self.call_sites(function)] for function in sorted(functions)])


def _shared_imports(imports: dict[str, Any]) -> dict[str, Any]:
    """The import summary less what only the file's own cheap tier reads."""
    return {key: value for key, value in imports.items() if key not in tier.OWN_SUMMARY_FIELDS}


def _flax_kind(qualified: str) -> Optional[str]:
    if qualified in _ROOTS:
        return _ROOTS[qualified]
    return VARIABLE if nnx_member(qualified) in VARIABLE_TYPES else None


def _agreed(classes: Iterable[Optional[str]]) -> Optional[str]:
    found = set()
    for qualified in classes:
        if qualified is None:
            return None
        found.add(qualified)
    return found.pop() if len(found) == 1 else None


def _agreed_or_none(classes: list[Optional[str]]) -> Optional[str]:
    known = {qualified for qualified in classes if qualified is not None}
    return known.pop() if len(known) == 1 else None


def _facts_job(path: str) -> tuple[str, Optional[dict[str, Any]]]:
    try:
        with collecting_once():
            return path, facts_of_file(path)
    except RecursionError:  # nested beyond what the walks allow: the file's own check reports it
        return path, None


def build(paths: Sequence[str], jobs: Optional[int] = None, parallel_threshold: int = 32) -> ProjectIndex:
    """The index of the ``.py`` files among ``paths`` (in parallel processes for many files)."""
    files = [path for path in paths if not path.endswith(NOTEBOOK_SUFFIX)]
    workers = jobs or os.cpu_count() or 1
    if workers <= 1 or len(files) < parallel_threshold:
        pairs = [_facts_job(path) for path in files]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                 initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            pairs = list(pool.map(_facts_job, files, chunksize=max(1, len(files) // (workers * 4))))
    return ProjectIndex({path: facts for path, facts in pairs if facts is not None})


class ProjectView:
    """The index as one file sees it: names resolved from the file's root, and a
    record of what its answers depended on (for the result cache)."""

    def __init__(self, index: ProjectIndex, path: str) -> None:
        self.index = index
        self.path = path
        facts = index.by_path.get(path)
        self.root, self.module = (facts["root"], facts["module"]) if facts else module_name(path)
        if self.root not in index.roots:  # a notebook beside the modules it imports
            index.roots.append(self.root)
        self.used = Dependencies()
        self._external: dict[str, Optional[str]] = {}

    def class_info(self, qualified: str) -> Optional[ClassInfo]:
        return self.index.class_info(qualified, self.root, self.used)

    def lookup(self, qualified: str) -> Optional[tuple[str, Any]]:
        return self.index.lookup(qualified, self.root, self.used)

    def external(self, qualified: str) -> Optional[str]:
        """The Flax/JAX name a project name re-exports (``shop.compat.nnx`` ->
        ``flax.nnx``), or None."""
        if qualified not in self._external:
            found = self.lookup(qualified)
            self._external[qualified] = found[1] if found is not None and found[0] == "external" else None
        return self._external[qualified]

    def instance_class(self, reference: list) -> Optional[str]:
        return self.index.instance_class(reference, self.root, self.used)

    def attribute_class(self, info: ClassInfo, attribute: str) -> Optional[str]:
        return self.index.attribute_class(info, attribute, self.used)

    def element_class(self, info: ClassInfo, attribute: str) -> Optional[str]:
        return self.index.element_class(info, attribute, self.used)

    def parameter_class(self, function: str, parameter: str) -> Optional[str]:
        return self.index.parameter_class(function, parameter, self.root, self.used)

    def dependencies(self) -> dict[str, Any]:
        """What to store with the file's cached findings (see ``dependencies_hold``)."""
        files = {path: [self.index.by_path[path]["digest"], self.index.facts_digest(path)]
                 for path in sorted(self.used.modules - {self.path}) if path in self.index.by_path}
        record: dict[str, Any] = {"files": files}
        if self.used.whole_run:
            record["run"] = self.index.run_digest()
        if self.used.calls:
            functions = sorted(self.used.calls)
            record["calls"] = [self.index.run_digest(), self.index.calls_digest(functions), functions]
        return record


def dependencies_hold(record: Any, digest_of: Callable[[str], Optional[str]], run_digest: Callable[[], str],
                      index: Callable[[], ProjectIndex]) -> bool:
    """Whether the facts a cached result depended on are unchanged. Cheap when the files
    are (their content digests match); otherwise the index (built on demand) compares the
    facts themselves, so an edit inside a function body of another file keeps the entry."""
    if not isinstance(record, dict):
        return False
    files = record.get("files", {})
    calls = record.get("calls")
    try:
        for path, (content, facts) in files.items():
            if digest_of(path) != content and index().facts_digest(path) != facts:
                return False
        if "run" in record and record["run"] != run_digest():
            return False
        if calls:
            recorded_run, recorded_calls, functions = calls
            if recorded_run != run_digest() and index().calls_digest(functions) != recorded_calls:
                return False
    except (TypeError, ValueError):  # not a record we wrote
        return False
    return True
