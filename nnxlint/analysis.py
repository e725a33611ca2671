"""What the NNX pitfall rules (NNX104 and up) need to know about a file.

Which expressions hold an NNX module, optimizer, Variable or Rngs; what the
module classes of the file store on ``self`` (and so whether they hold a
BatchNorm, a Dropout, non-Param state); which functions go through a ``jax.*``
or ``nnx.*`` transform.  Names inside class bodies and methods are resolved
against the module's imports (a local shadowing ``nnx`` inside a method is not
seen); everything else answers "unknown" when in doubt, so that the rules built
on it stay quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import libcst as cst

from nnxlint import names
from nnxlint.context import FileContext
from nnxlint.context import walk as fast_walk
from nnxlint.flax_api import (
    FLAX_NNX, LAYER_VARIABLES, LINEN_MODULES_IN_NNX, LINEN_VARIABLE_HOLDERS, MODULE_CLASSES, NNX_TRANSFORM_FOR_JAX,
    NNX_TRANSFORM_KEYWORDS, OBJECT_VARIABLE_TREES, OBJECT_VARIABLES, OPTIMIZER_CLASSES, SUBMODULE_CONTAINERS,
    VARIABLE_TYPES, nnx_member,
)
from nnxlint import project as project_index
from nnxlint.objects import all_params, assigned_value, nnx_module_classes, top_level_classes
from nnxlint.rule import Fix

MODULE, OPTIMIZER, VARIABLE, RNGS = "module", "optimizer", "variable", "rngs"
# Other objects whose attributes may hold Variables (a metric, an nnx.Pytree, a plain
# class of the project), an nnx.State and a GraphDef (``of``: the module they mirror).
OBJECT, STATE, GRAPHDEF = "object", "state", "graphdef"
LINEN = "linen"  # an instance of a Linen module class (flax.linen's or the project's)
GRADIENT_TRANSFORMS = ("grad", "value_and_grad")
# nnx functions that return the state of the objects passed to them.
STATE_EXTRACTORS = frozenset({"state", "split", "variables"})
FUNCTOOLS_PARTIAL = "functools.partial"
# jax.random samplers of float arrays, what weights are drawn from (keys, permutations
# and integer draws are not weights).
RANDOM_SAMPLERS = frozenset({
    "normal", "uniform", "truncated_normal", "orthogonal", "multivariate_normal", "laplace", "logistic",
    "cauchy", "exponential", "gumbel", "lognormal",
})
# jax.numpy constructors of fresh arrays, what biases and scales start from.
ARRAY_CONSTRUCTORS = frozenset({"zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like"})
INITIALIZER_MODULES = ("flax.nnx.initializers.", "jax.nn.initializers.")
# Opting into Variables backed by mutable array references (hijax / refs), which
# are designed to be updated in place under plain JAX transforms.
MUTABLE_VARIABLE_APIS = frozenset({"var_defaults", "use_hijax", "use_refs", "vars_as", "use_mutable_arrays"})
MUTABLE_VARIABLE_SWITCHES = ("FLAX_MUTABLE_ARRAY", "flax_hijax_variable", "FLAX_HIJAX_VARIABLE")


_NNX_CATEGORIES = ((OPTIMIZER, OPTIMIZER_CLASSES), (VARIABLE, VARIABLE_TYPES), (RNGS, frozenset({"Rngs"})),
                   (MODULE, MODULE_CLASSES | frozenset(LINEN_VARIABLE_HOLDERS)), (STATE, frozenset({"State"})),
                   (OBJECT, frozenset(OBJECT_VARIABLES)))
# Kinds of the project index's classes (nnxlint.project) as categories here.
_PROJECT_CATEGORIES = {project_index.MODULE: MODULE, project_index.VARIABLE: VARIABLE,
                       project_index.OPTIMIZER: OPTIMIZER, project_index.PYTREE: OBJECT, project_index.LINEN: LINEN}
# Array attributes: ``<State>.value.shape`` reads a Variable's array, ``<State>.value.kernel``
# a submodule named ``value`` (attention's value projection).
ARRAY_ATTRIBUTES = frozenset({"shape", "dtype", "ndim", "size", "T", "astype", "reshape", "sum", "mean", "min",
                              "max", "item", "tolist", "at", "sharding", "devices", "nbytes", "copy"})


@dataclass(frozen=True)
class Kind:
    """What an expression holds: its category and, when known, its class."""

    category: str  # MODULE, OPTIMIZER, VARIABLE or RNGS
    nnx_class: Optional[str] = None  # 'Linear' for flax.nnx.Linear
    local_class: Optional[str] = None  # a class defined in this file
    call: Optional[cst.Call] = None  # the construction, when the expression is bound to one
    holds_array: bool = False  # a Variable known to hold a JAX array (a layer's kernel, ...)
    project_class: Optional[str] = None  # a class of another file of the project (absolute name)
    of: Optional["Kind"] = None  # for STATE and GRAPHDEF: the module they come from, when known


class FileIndex:
    """The module and Variable classes of a file and what their methods store on ``self``."""

    def __init__(self, context: FileContext) -> None:
        self.context = context
        self.classes = top_level_classes(context)
        self.module_classes = nnx_module_classes(context)
        self.variable_classes = self._subclasses_of(lambda qualified: nnx_member(qualified) in VARIABLE_TYPES,
                                                    project_index.VARIABLE)
        self.param_classes = self._subclasses_of(lambda qualified: nnx_member(qualified) == "Param")
        self.object_classes = set(self.classes) - set(self.module_classes) - self.variable_classes
        # nnx.Pytree subclasses (Modules are Pytrees too): plain containers of data refused
        self.pytree_classes = set(self.module_classes) | self._subclasses_of(
            lambda qualified: qualified in ("flax.nnx.Pytree", "flax.nnx.Object"), project_index.PYTREE)
        self._attributes: dict[str, dict[str, list[cst.BaseExpression]]] = {}
        # names the module binds to different classes (a notebook that redefines ``MLP`` cell
        # after cell): which definition a use means is not tracked, so they stay unknown
        self.redefined = {name for name, bindings in context.module_scope.bindings.items()
                          if self._ambiguous([binding.node for binding in bindings
                                              if isinstance(binding.node, cst.ClassDef)])}

    def resolve(self, expression: cst.BaseExpression) -> Optional[str]:
        return names.resolve(self.context.module_scope, expression)

    def _ambiguous(self, definitions: list[cst.ClassDef]) -> bool:
        """Several definitions of one name that may differ in what their instances hold:
        Variable subclasses are all alike (``class Count(nnx.Variable): pass`` twice);
        other classes are alike only when written identically."""
        if len(definitions) < 2:
            return False
        if all(any(nnx_member(self.resolve(base.value)) in VARIABLE_TYPES
                   or (isinstance(base.value, cst.Name) and base.value.value in self.variable_classes)
                   for base in node.bases) for node in definitions):
            return False
        return len({self.context.module.code_for_node(node) for node in definitions}) > 1

    def _subclasses_of(self, is_root: Callable[[Optional[str]], bool], project_kind: Optional[str] = None) -> set[str]:
        """Classes of the file deriving from a root: a Flax class, one of the file's own,
        or (``project_kind``) a class of that kind in another file."""
        found: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, node in self.classes.items():
                if name not in found and any(
                        is_root(self.resolve(base.value))
                        or (isinstance(base.value, cst.Name) and base.value.value in found)
                        or (project_kind is not None and self._project_kind(base.value) == project_kind)
                        for base in node.bases):
                    found.add(name)
                    changed = True
        return found

    def _project_kind(self, expression: cst.BaseExpression) -> Optional[str]:
        info = self.context.project_class(expression)
        return info.kind if info is not None else None

    def kind_of_class(self, expression: cst.BaseExpression, qualified: Optional[str],
                      call: Optional[cst.Call] = None) -> Optional[Kind]:
        """The kind of an instance of the class ``expression`` names (``qualified`` is what
        it resolves to); ``call`` is the construction, if there is one."""
        member = nnx_member(qualified)
        if member is not None or _linen_class(qualified):
            return self.kind_of_qualified(qualified, call)  # type: ignore[arg-type]
        if qualified is None and isinstance(expression, cst.Name) and expression.value not in self.redefined:
            if expression.value in self.module_classes:
                return Kind(MODULE, local_class=expression.value, call=call)
            if expression.value in self.variable_classes:
                return Kind(VARIABLE, local_class=expression.value, call=call)
            if expression.value in self.object_classes:
                return None  # a plain class of the file: its instances are not followed
        if self.context.project is not None and (qualified is None or not qualified.startswith("flax.")):
            absolute = self.context.project_name(expression)
            if absolute is not None:
                reference = ["call", absolute] if call is not None else ["inst", absolute]
                found = self.context.project.instance_class(reference)
                return self.kind_of_qualified(found, call) if found else None
        return None

    def kind_of_qualified(self, qualified: str, call: Optional[cst.Call] = None) -> Optional[Kind]:
        """The kind of an instance of a class named by its qualified name: a Flax class
        (canonical) or a class of the project."""
        if _linen_class(qualified):
            return Kind(LINEN, call=call)
        member = nnx_member(qualified)
        if member is not None:
            category = next((category for category, members in _NNX_CATEGORIES if member in members), None)
            return Kind(category, nnx_class=member, call=call) if category else None
        project = self.context.project
        info = project.class_info(qualified) if project is not None else None
        category = _PROJECT_CATEGORIES.get(info.kind) if info is not None else None  # type: ignore[arg-type]
        if category is None:
            return None
        return Kind(category, call=call, project_class=qualified)

    def kind_of_call(self, call: cst.Call, qualified: Optional[str]) -> Optional[Kind]:
        """The kind of object ``call`` constructs or returns; ``qualified`` is what its
        func resolves to."""
        member = nnx_member(qualified)
        if member in ("clone", "bridge.lazy_init") and call.args:  # a copy of its argument / the argument
            return kind_of(self.context, call.args[0].value)
        if qualified is None and isinstance(call.func, cst.Attribute) and call.func.attr.value == "lazy_init":
            owner = kind_of(self.context, call.func.value)  # ``bridge.ToNNX(...).lazy_init(x)`` returns the module
            return owner if owner is not None and owner.nnx_class in LINEN_VARIABLE_HOLDERS else None
        if member in ("state", "variables", "merge", "pop"):  # (``split`` returns a tuple: see ``_kind_of_item``)
            inner = kind_of(self.context, call.args[0].value) if call.args else None
            if member == "merge":
                return inner.of if inner is not None and inner.category == GRAPHDEF else None
            return Kind(STATE, nnx_class="State", call=call,  # the State itself, not one of its items
                        of=inner if member in ("state", "pop") and inner and inner.category == MODULE else None)
        return self.kind_of_class(call.func, qualified, call)

    def kind_of_annotation(self, annotation: cst.BaseExpression, qualified: Optional[str]) -> Optional[Kind]:
        return self.kind_of_class(annotation, qualified)

    # -- what module classes store ---------------------------------------------
    def attributes(self, class_name: str) -> dict[str, list[cst.BaseExpression]]:
        """``self.<attribute> = value`` in the methods of a class and of its local bases."""
        if class_name not in self._attributes:
            self._attributes[class_name] = {}  # guards against cyclic bases
            found: dict[str, list[cst.BaseExpression]] = {}
            node = self.classes[class_name]
            for base in node.bases:
                if isinstance(base.value, cst.Name) and base.value.value in self.classes:
                    for attribute, values in self.attributes(base.value.value).items():
                        found.setdefault(attribute, []).extend(values)
            for statement in _body(node.body):
                if isinstance(statement, cst.FunctionDef):
                    for attribute, value in self_assignments(statement):
                        found.setdefault(attribute, []).append(value)
            self._attributes[class_name] = found
        return self._attributes[class_name]

    def attribute_kind(self, owner: Kind, attribute: str) -> Optional[Kind]:
        """The kind of ``<owner>.<attribute>``, when every assignment agrees on it."""
        if owner.category == STATE:  # an nnx.State mirrors its module's attributes
            inner = self.attribute_kind(owner.of, attribute) if owner.of is not None else None
            if inner is not None and inner.category == MODULE:
                return Kind(STATE, of=inner)
            return inner if inner is not None and inner.category == VARIABLE else Kind(STATE)
        if owner.category not in (MODULE, OPTIMIZER, OBJECT):
            return None
        if owner.nnx_class is not None:
            if attribute in OBJECT_VARIABLE_TREES.get(owner.nnx_class, ()):
                return Kind(STATE)  # every leaf below is a Variable, as in an nnx.State
            if owner.nnx_class in LINEN_VARIABLE_HOLDERS:
                return None if attribute in LINEN_VARIABLE_HOLDERS[owner.nnx_class] else Kind(STATE)
            if owner.nnx_class in OBJECT_VARIABLES:
                variable = OBJECT_VARIABLES[owner.nnx_class].get(attribute)
                return Kind(VARIABLE, nnx_class=variable) if variable else None
            variable = LAYER_VARIABLES.get(owner.nnx_class, {}).get(attribute)
            return Kind(VARIABLE, nnx_class=variable, holds_array=True) if variable else None
        project = self.context.project
        if owner.project_class is not None:
            info = project.class_info(owner.project_class) if project is not None else None
            found = project.attribute_class(info, attribute) if info is not None else None
            return self.kind_of_qualified(found) if found else None
        values = self.attributes(owner.local_class or "").get(attribute, [])
        kind = _agreed([self.kind_of_value(value) for value in values])
        if kind is None and project is not None and owner.local_class:  # ``nnx.data(...)``, an annotation, a base
            info = project.class_info(f"{project.module}.{owner.local_class}")
            found = project.attribute_class(info, attribute) if info is not None else None
            return self.kind_of_qualified(found) if found else None
        return kind

    def element_kind(self, owner: Kind, attribute: str) -> Optional[Kind]:
        """The kind of ``<owner>.<attribute>[i]`` when the attribute is a container
        (``nnx.List([...])``, a list comprehension, ``nnx.Dict({...})``) whose
        elements all agree on it."""
        local_class = owner.local_class or self._defined_here(owner.project_class)
        if owner.category != MODULE:
            return None
        if local_class is None:
            project = self.context.project
            info = project.class_info(owner.project_class) if project and owner.project_class else None
            found = project.element_class(info, attribute) if info is not None else None
            return self.kind_of_qualified(found) if found else None
        kinds = []
        for value in self.attributes(local_class).get(attribute, []):
            if isinstance(value, cst.Call) and nnx_member(self.resolve(value.func)) in SUBMODULE_CONTAINERS and value.args:
                value = value.args[0].value
            kinds += [self.kind_of_value(element) for element in container_elements(value)]
        return _agreed(kinds)

    def _defined_here(self, project_class: Optional[str]) -> Optional[str]:
        """The name of a project class when this file defines it (an instance a function
        of the file returns), to read its attributes here."""
        name = (project_class or "").rpartition(".")[2]
        if name not in self.classes or name in self.redefined:
            return None
        return name if self.context.project_name(cst.Name(name)) == project_class else None

    def kind_of_value(self, value: cst.BaseExpression) -> Optional[Kind]:
        if isinstance(value, cst.Call):
            qualified = self.resolve(value.func)
            if qualified == "flax.nnx.data" and value.args:  # marks its argument as data
                return self.kind_of_value(value.args[0].value)
            return self.kind_of_call(value, qualified)
        return None

    def constructions(self, class_name: str, seen: Optional[set[str]] = None) -> Iterator[Kind]:
        """Every object a module class constructs into its attributes, through the
        file's other module classes too (``self.block = Block(...)``)."""
        seen = set() if seen is None else seen
        if class_name in seen or class_name not in self.classes:
            return
        seen.add(class_name)
        for values in self.attributes(class_name).values():
            for value in values:
                for call in _calls_in(value):
                    kind = self.kind_of_call(call, self.resolve(call.func))
                    if kind is None:
                        continue
                    yield kind
                    if kind.local_class is not None and kind.category == MODULE:
                        yield from self.constructions(kind.local_class, seen)

    def holds(self, kind: Optional[Kind], predicate: Callable[[Kind], bool]) -> bool:
        """Whether the module ``kind`` is, or constructs, an object matching ``predicate``."""
        if kind is None or kind.category != MODULE:
            return False
        if predicate(kind):
            return True
        return kind.local_class is not None and any(predicate(inner) for inner in self.constructions(kind.local_class))


# nnx layers whose whole state is nnx.Param (no RNG stream, statistics or cache).
PARAM_ONLY_LAYERS = frozenset({
    "Linear", "LinearGeneral", "Einsum", "Conv", "ConvTranspose", "Embed", "LayerNorm", "RMSNorm", "GroupNorm",
    "InstanceNorm", "PReLU",
})
_LITERALS = (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)


def params_only(index: FileIndex, kind: Optional[Kind], seen: Optional[set[str]] = None) -> bool:
    """Whether the module ``kind`` is known to hold nothing but ``nnx.Param``s: an nnx
    layer without other state (``nnx.Linear``, a ``Dropout`` built without ``rngs``), or
    a class of the file whose every attribute is such a layer, an ``nnx.Param``, a
    container of them or a literal.  Anything unknown (an attribute set from an
    argument, a raw array) answers False."""
    if kind is None or kind.category != MODULE:
        return False
    if kind.nnx_class is not None:
        if kind.nnx_class in PARAM_ONLY_LAYERS:
            return True
        call = kind.call
        if call is None or any(arg.star for arg in call.args):
            return False
        if kind.nnx_class == "Dropout":
            return not any(arg.keyword is not None and arg.keyword.value == "rngs" for arg in call.args)
        if kind.nnx_class == "Sequential":
            return all(_param_only_value(index, arg.value, seen or set()) for arg in call.args)
        return False
    name = kind.local_class
    seen = set() if seen is None else seen
    if name is None or name in seen or name not in index.classes:
        return name in seen if name else False  # a cycle adds nothing new
    seen.add(name)
    for base in index.classes[name].bases:  # state inherited from an nnx layer is not shown
        if not (index.resolve(base.value) == FLAX_NNX + ".Module"
                or (isinstance(base.value, cst.Name) and base.value.value in index.classes)):
            return False
    attributes = index.attributes(name)
    return bool(attributes) and all(_param_only_value(index, value, seen)  # an empty body shows nothing
                                    for values in attributes.values() for value in values)


def _param_only_value(index: FileIndex, value: cst.BaseExpression, seen: set[str]) -> bool:
    if isinstance(value, _LITERALS) or (isinstance(value, cst.Name) and value.value in ("True", "False", "None")):
        return True
    if isinstance(value, (cst.List, cst.Tuple, cst.ListComp, cst.Dict, cst.DictComp)):
        return all(_param_only_value(index, element, seen) for element in container_elements(value))
    if not isinstance(value, cst.Call):
        return False
    if nnx_member(index.resolve(value.func)) in SUBMODULE_CONTAINERS:
        return bool(value.args) and all(_param_only_value(index, arg.value, seen) for arg in value.args)
    kind = index.kind_of_value(value)
    if kind is None:
        return False
    if kind.category == VARIABLE:
        return kind.nnx_class == "Param" or (kind.local_class is not None and kind.local_class in index.param_classes)
    return params_only(index, kind, seen)


def _agreed(kinds: list[Optional[Kind]]) -> Optional[Kind]:
    """The kind all of ``kinds`` share (the first of them), or None."""
    if not kinds or any(kind is None for kind in kinds):
        return None
    classes = {(kind.category, kind.nnx_class, kind.local_class, kind.project_class)  # type: ignore[union-attr]
               for kind in kinds}
    return kinds[0] if len(classes) == 1 else None


def imports_nnx(context: FileContext) -> bool:
    """Whether the file imports flax.nnx (or flax) at module level."""
    return any(binding.qualified_name in ("flax", FLAX_NNX) or (binding.qualified_name or "").startswith(FLAX_NNX + ".")
               for bindings in context.module_scope.bindings.values() for binding in bindings)


def mutable_variables_switch(context: FileContext, node: cst.CSTNode) -> bool:
    """Whether ``node`` opts the file into hijax / array-ref Variables (``nnx.var_defaults``,
    ``"FLAX_MUTABLE_ARRAY"``), under which in-place updates inside ``jax.jit`` are by design.
    Cheap enough to ask of every Name, Attribute and string of a file."""
    if isinstance(node, cst.Name):
        return node.value in MUTABLE_VARIABLE_APIS and nnx_member(context.resolve(node)) in MUTABLE_VARIABLE_APIS
    if isinstance(node, cst.Attribute):
        return node.attr.value in MUTABLE_VARIABLE_APIS and nnx_member(context.resolve(node)) in MUTABLE_VARIABLE_APIS
    return isinstance(node, cst.SimpleString) and any(switch in node.value for switch in MUTABLE_VARIABLE_SWITCHES)


class WatchesMutableVariables:
    """Mixin for rules: ``self.mutable_variables`` turns true once the file opts into
    hijax / array-ref Variables (see ``mutable_variables_switch``)."""

    context: FileContext
    mutable_variables = False

    def _watch(self, node: cst.CSTNode) -> None:
        self.mutable_variables = self.mutable_variables or mutable_variables_switch(self.context, node)

    def visit_Name(self, node: cst.Name) -> None:
        self._watch(node)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._watch(node)

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        self._watch(node)


def file_index(context: FileContext) -> FileIndex:
    """The index of the file ``context`` checks, built once for all rules."""
    # held by the context itself: a weak-keyed table whose values point back at their
    # keys kept every file's index alive for the whole run
    return context.memoized("analysis.file_index", lambda: FileIndex(context))


def kind_of(context: FileContext, expression: cst.BaseExpression) -> Optional[Kind]:
    """What ``expression`` holds at the current point of the traversal, if the file shows it."""
    index = file_index(context)
    if isinstance(expression, cst.Call):
        return index.kind_of_call(expression, context.resolve(expression.func))
    if isinstance(expression, cst.Attribute):
        owner = kind_of(context, expression.value)
        return index.attribute_kind(owner, expression.attr.value) if owner else None
    if isinstance(expression, cst.Subscript):
        owner = kind_of(context, expression.value)
        if owner is not None and owner.category == STATE:  # ``state["linear"]["kernel"]``
            key = _string_key(expression)
            return index.attribute_kind(owner, key) if key else Kind(STATE)
        if isinstance(expression.value, cst.Attribute):
            owner = kind_of(context, expression.value.value)
            return index.element_kind(owner, expression.value.attr.value) if owner else None
        return None
    if not isinstance(expression, cst.Name):
        return None
    binding = context.lookup(expression.value)
    if binding is None:
        return None
    if isinstance(binding.node, cst.Param):
        return parameter_kind(context, binding.node)
    active = context.memoized("kind_of_active", set)
    if id(binding) in active:  # ``state = nnx.state(state)``: the name before is not followed
        return None
    active.add(id(binding))
    try:
        value = assigned_value(binding.node, expression.value)
        if isinstance(value, cst.Call):
            return index.kind_of_call(value, context.resolve(value.func))
        unpacked = _unpacked(binding.node, expression.value)
        return _kind_of_item(context, *unpacked) if unpacked else None
    finally:
        active.discard(id(binding))


def _linen_class(qualified: Optional[str]) -> bool:
    """A Linen module class: ``flax.linen.Dense`` (classes are capitalized, functions not),
    ``nnx.bridge.ToLinen``."""
    if nnx_member(qualified) in LINEN_MODULES_IN_NNX:
        return True
    return bool(qualified) and qualified.startswith("flax.linen.") and \
        qualified.rpartition(".")[2][:1].isupper()  # type: ignore[union-attr]


def _string_key(subscript: cst.Subscript) -> Optional[str]:
    """``'kernel'`` for ``x['kernel']``."""
    if len(subscript.slice) == 1 and isinstance(subscript.slice[0].slice, cst.Index):
        value = subscript.slice[0].slice.value
        if isinstance(value, cst.SimpleString) and value.evaluated_value is not None:
            return str(value.evaluated_value)
    return None


def _unpacked(node: Optional[cst.CSTNode], name: str) -> Optional[tuple[cst.Call, int]]:
    """``(call, i)`` when ``node`` is ``a, b, ... = call(...)`` and ``name`` is its ``i``-th target."""
    if not (isinstance(node, cst.Assign) and len(node.targets) == 1 and isinstance(node.value, cst.Call)
            and isinstance(node.targets[0].target, (cst.Tuple, cst.List))):
        return None
    elements = node.targets[0].target.elements
    if any(isinstance(element, cst.StarredElement) for element in elements):
        return None
    for position, element in enumerate(elements):
        if isinstance(element.value, cst.Name) and element.value.value == name:
            return node.value, position
    return None


def _kind_of_item(context: FileContext, call: cst.Call, position: int) -> Optional[Kind]:
    """The kind of item ``position`` of what ``call`` returns: ``nnx.split`` gives the
    GraphDef then States, a project function its ``return a, b``."""
    qualified = context.resolve(call.func)
    if nnx_member(qualified) == "split":
        module = kind_of(context, call.args[0].value) if call.args else None
        module = module if module is not None and module.category == MODULE else None
        return Kind(GRAPHDEF, of=module) if position == 0 else Kind(STATE, nnx_class="State", of=module, call=call)
    project = context.project
    absolute = context.project_name(call.func) if project is not None else None
    if absolute is None:
        return None
    found = project.instance_class(["item", position, ["call", absolute]])  # type: ignore[union-attr]
    return file_index(context).kind_of_qualified(found) if found else None


def parameter_kind(context: FileContext, param: cst.Param) -> Optional[Kind]:
    """From the annotation, ``self`` of a method of a module class of the file, or
    an unannotated parameter called ``rngs`` (Flax's convention for an ``nnx.Rngs``)."""
    index = file_index(context)
    if param.annotation is not None:
        annotation = _optional_of(param.annotation.annotation)
        return index.kind_of_annotation(annotation, context.resolve(annotation))
    if param.name.value == "rngs" and not param.star:
        return Kind(RNGS, nnx_class="Rngs")
    for position, scope in enumerate(context.scopes[1:], start=1):
        function = scope.node
        if not (isinstance(function, cst.FunctionDef) and any(p is param for p in all_params(function))):
            continue
        owner = context.scopes[position - 1].node
        if _first_param(function) is param and isinstance(owner, cst.ClassDef):
            if index.module_classes.get(owner.name.value) is owner:
                return Kind(MODULE, local_class=owner.name.value)
            if index.classes.get(owner.name.value) is owner and owner.name.value not in index.redefined:
                return Kind(OBJECT, local_class=owner.name.value)
        if isinstance(owner, cst.Module) and context.project is not None and not param.star:
            # a function of the module: what every call site in the project passes
            found = context.project.parameter_class(f"{context.project.module}.{function.name.value}",
                                                    param.name.value)
            return index.kind_of_qualified(found) if found else None
        return None
    return None


def _optional_of(annotation: cst.BaseExpression) -> cst.BaseExpression:
    """``X`` for ``X | None``, ``Optional[X]`` and ``"X"`` annotations (else the annotation)."""
    if isinstance(annotation, cst.SimpleString):
        try:
            parsed = cst.parse_expression(str(annotation.evaluated_value))
        except (cst.ParserSyntaxError, TypeError):
            return annotation
        return _optional_of(parsed)
    if isinstance(annotation, cst.BinaryOperation) and isinstance(annotation.operator, cst.BitOr):
        sides = [side for side in (annotation.left, annotation.right)
                 if not (isinstance(side, cst.Name) and side.value == "None")]
        return sides[0] if len(sides) == 1 else annotation
    if (isinstance(annotation, cst.Subscript) and len(annotation.slice) == 1
            and isinstance(annotation.slice[0].slice, cst.Index)
            and names.dotted_name(annotation.value) in ("Optional", "typing.Optional")):
        return annotation.slice[0].slice.value
    return annotation


def method_of_module_class(context: FileContext,
                           pytrees: bool = False) -> Optional[tuple[cst.FunctionDef, cst.ClassDef]]:
    """The (method, class) the traversal is directly in, for a module class of the file
    (with ``pytrees``, also for a class deriving from ``nnx.Pytree``)."""
    scopes = context.scopes
    if len(scopes) < 3:
        return None
    function, owner = scopes[-1].node, scopes[-2].node
    if not (isinstance(function, cst.FunctionDef) and isinstance(owner, cst.ClassDef)):
        return None
    index = file_index(context)
    if index.classes.get(owner.name.value) is not owner:
        return None
    if owner.name.value in index.module_classes or (pytrees and owner.name.value in index.pytree_classes):
        return function, owner
    return None


def self_assignments(function: cst.FunctionDef) -> Iterator[tuple[str, cst.BaseExpression]]:
    """``(attribute, value)`` for each ``self.<attribute> = value`` in a method body,
    ``self`` being the method's first parameter."""
    first = _first_param(function)
    if first is None:
        return
    owner = first.name.value
    for node in _walk_function_body(function):
        if isinstance(node, cst.Assign):
            for target in node.targets:
                attribute = attribute_of(target.target, owner)
                if attribute is not None:
                    yield attribute, node.value
        elif isinstance(node, cst.AnnAssign) and node.value is not None:
            attribute = attribute_of(node.target, owner)
            if attribute is not None:
                yield attribute, node.value


def attribute_of(target: cst.BaseExpression, owner: str) -> Optional[str]:
    """``'w'`` for ``<owner>.w``."""
    if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) and target.value.value == owner:
        return target.attr.value
    return None


def _first_param(function: cst.FunctionDef) -> Optional[cst.Param]:
    positional = [*function.params.posonly_params, *function.params.params]
    return positional[0] if positional else None


def _body(suite: cst.BaseSuite) -> Sequence[cst.CSTNode]:
    return suite.body if isinstance(suite, cst.IndentedBlock) else ()


def _walk_function_body(function: cst.FunctionDef) -> list[cst.CSTNode]:
    """Every node of a function body, without entering nested functions and classes."""
    return list(fast_walk(function.body, skip=(cst.FunctionDef, cst.ClassDef, cst.Lambda)))


def walk(node: cst.CSTNode) -> list[cst.CSTNode]:
    """Every node under ``node``, nested functions included."""
    return list(fast_walk(node))


def container_elements(value: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    """The values a list, tuple or dict literal or comprehension holds."""
    if isinstance(value, (cst.List, cst.Tuple)):
        for element in value.elements:
            yield element.value
    elif isinstance(value, (cst.ListComp, cst.GeneratorExp)):
        yield value.elt
    elif isinstance(value, cst.Dict):
        for element in value.elements:
            if isinstance(element, cst.DictElement):
                yield element.value
    elif isinstance(value, cst.DictComp):
        yield value.value


def _calls_in(value: cst.BaseExpression) -> Iterator[cst.Call]:
    for node in walk(value):
        if isinstance(node, cst.Call):
            yield node


def returned_names(index: FileIndex, function: cst.FunctionDef) -> set[str]:
    """Names whose objects the function hands back: returned alone, in a tuple, list or
    dict, or as their state (``nnx.state((model, optimizer))``).  A name only called
    (``return model(x)``) or differentiated (``return nnx.grad(f)(model)``) is not."""
    found: set[str] = set()
    for node in _walk_function_body(function):
        if isinstance(node, cst.Return) and node.value is not None:
            found |= _handed_back(index, node.value)
    return found


def _handed_back(index: FileIndex, value: cst.BaseExpression) -> set[str]:
    if isinstance(value, cst.Name):
        return {value.value}
    if isinstance(value, (cst.Tuple, cst.List, cst.Set)):
        return {name for element in value.elements for name in _handed_back(index, element.value)}
    if isinstance(value, cst.Dict):
        return {name for element in value.elements if isinstance(element, cst.DictElement)
                for name in _handed_back(index, element.value)}
    if isinstance(value, cst.Call) and nnx_member(index.resolve(value.func)) in STATE_EXTRACTORS:
        return {name for arg in value.args for name in _handed_back(index, arg.value)}
    return set()


def function_body_nodes(function: cst.FunctionDef) -> list[cst.CSTNode]:
    """Every node of the function's body, nested functions included (a loss function
    defined inside a train step runs inside it)."""
    return walk(function.body)


def optimizer_update(statement: cst.CSTNode) -> Optional[tuple[str, Optional[cst.BaseExpression]]]:
    """``(receiver, model)`` for a statement ``receiver.update(model, grads)``: nnx.Optimizer's
    in-place update.  optax's ``tx.update(...)`` returns new state, so it is never a bare
    statement, and a dict's ``update`` takes one argument."""
    if not (isinstance(statement, cst.Expr) and isinstance(statement.value, cst.Call)):
        return None
    call = statement.value
    func = call.func
    positional = [arg for arg in call.args if arg.keyword is None and not arg.star]
    if (isinstance(func, cst.Attribute) and func.attr.value == "update" and isinstance(func.value, cst.Name)
            and len(positional) == 2 and len(call.args) == 2):
        return func.value.value, positional[0].value
    return None


def fresh_array(context: FileContext, expression: cst.BaseExpression) -> Optional[str]:
    """How ``expression`` makes a new float array, if it is one of the ways weights are
    made: ``jax.random.normal(...)``, ``jnp.zeros(...)``, ``initializer(key, shape)``,
    ``rngs.params.normal(shape)``.  None otherwise."""
    if not isinstance(expression, cst.Call):
        return None
    qualified = context.resolve(expression.func) or ""
    module, _, function = qualified.rpartition(".")
    if (module == "jax.random" and function in RANDOM_SAMPLERS) or (
            module == "jax.numpy" and function in ARRAY_CONSTRUCTORS):
        return f"`{module.replace('jax.numpy', 'jnp')}.{function}`"
    if isinstance(expression.func, cst.Call):
        initializer = context.resolve(expression.func.func) or ""
        if initializer.startswith(INITIALIZER_MODULES):
            return "an initializer"
    func = expression.func
    if isinstance(func, cst.Attribute) and func.attr.value in RANDOM_SAMPLERS:
        root = func.value.value if isinstance(func.value, cst.Attribute) else func.value
        kind = kind_of(context, root)
        if kind is not None and kind.category == RNGS:
            return f"`Rngs.{func.attr.value}`"
    return None


@dataclass(frozen=True)
class Update:
    """An in-place update of the object a name holds, in a function body."""

    name: str
    how: str  # "`optimizer.update`", "`nnx.update`", "attribute assignment"
    node: cst.CSTNode
    # an attribute assignment updates a module only if the name is known to hold one
    needs_known_object: bool = False


def in_place_updates(index: FileIndex, function: cst.FunctionDef) -> list[Update]:
    """Updates of named objects in a function body (nested functions included):
    ``optimizer.update(model, grads)`` (both), ``nnx.update(model, ...)``,
    ``model.attribute = ...`` / ``model.attribute[...] += ...``."""
    found = []
    for node in function_body_nodes(function):
        update = optimizer_update(node)
        if update is not None:
            receiver, model = update
            found.append(Update(receiver, f"`{receiver}.update`", node))
            if isinstance(model, cst.Name):
                found.append(Update(model.value, f"`{receiver}.update`", node))
        if isinstance(node, cst.Call) and index.resolve(node.func) == "flax.nnx.update" and node.args:
            target = node.args[0].value
            if isinstance(target, cst.Name):
                found.append(Update(target.value, "`nnx.update`", node))
        targets: list[cst.BaseExpression] = []
        if isinstance(node, cst.Assign):
            targets = [target.target for target in node.targets]
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
            targets = [node.target]
        for target in targets:
            root = _attribute_root(target)
            if root is not None:
                found.append(Update(root, "attribute assignment", node, needs_known_object=True))
    return found


def differentiated_names(index: FileIndex, function: cst.FunctionDef) -> list[tuple[str, cst.Call]]:
    """``(name, call)`` for each ``grad(f)(name, ...)`` (jax or nnx grad / value_and_grad)
    in a function body: the first argument is what is differentiated by default."""
    found = []
    for node in function_body_nodes(function):
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Call):
            transform = transform_of(index.resolve(node.func.func))
            if transform is not None and transform[1] in GRADIENT_TRANSFORMS and node.args:
                first = node.args[0].value
                found.append((first.value if isinstance(first, cst.Name) else "", node))
    return found


def _attribute_root(target: cst.BaseExpression) -> Optional[str]:
    """``'model'`` for ``model.a.b`` or ``model.a[...]`` (a Name alone is a rebinding, not a mutation)."""
    if not isinstance(target, (cst.Attribute, cst.Subscript)):
        return None
    while isinstance(target, (cst.Attribute, cst.Subscript)):
        target = target.value
    return target.value if isinstance(target, cst.Name) else None


def bound_names(function: cst.FunctionDef) -> set[str]:
    """Names a function (with its nested functions) binds: parameters, assignment and
    loop targets, nested definitions.  The other names it uses come from outside."""
    found: set[str] = set()
    for node in [function, *walk(function.body)]:
        if isinstance(node, (cst.FunctionDef, cst.Lambda)):
            found |= {param.name.value for param in all_params(node)}  # type: ignore[arg-type]  # Lambda too
            if isinstance(node, cst.FunctionDef) and node is not function:
                found.add(node.name.value)
        elif isinstance(node, cst.Assign):
            for target in node.targets:
                found |= set(names.target_names(target.target))
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor)):
            found |= set(names.target_names(node.target))
        elif isinstance(node, cst.AsName):
            found |= set(names.target_names(node.name))
        elif isinstance(node, (cst.Global, cst.Nonlocal)):
            found -= {item.name.value for item in node.names}
    return found


# -- transforms ------------------------------------------------------------
@dataclass(frozen=True)
class TransformUse:
    """One application of a transform: ``@jax.jit``, ``jax.jit(f, ...)``,
    ``@partial(jax.jit, ...)``.  ``reference`` is the ``jax.jit`` expression itself."""

    library: str  # "jax" or "nnx"
    name: str  # "jit", "pmap", "grad", "value_and_grad"
    reference: cst.BaseExpression
    arguments: Sequence[cst.Arg]  # the arguments besides the function

    def movable_to_nnx(self) -> bool:
        """Whether ``nnx.<name>`` accepts the same arguments with the same meaning."""
        allowed = NNX_TRANSFORM_KEYWORDS[self.name]
        return all(arg.keyword is not None and arg.keyword.value in allowed and not arg.star
                   for arg in self.arguments)


def transform_name(context: FileContext, expression: cst.BaseExpression) -> Optional[tuple[str, str]]:
    """``("jax", "jit")`` for ``jax.jit``, ``("nnx", "grad")`` for ``nnx.grad``."""
    return transform_of(context.resolve(expression))


def transform_of(qualified: Optional[str]) -> Optional[tuple[str, str]]:
    if qualified in NNX_TRANSFORM_FOR_JAX:
        return "jax", NNX_TRANSFORM_FOR_JAX[qualified]
    member = nnx_member(qualified)
    if member in NNX_TRANSFORM_KEYWORDS:
        return "nnx", member
    return None


def decorator_transform(context: FileContext, decorator: cst.BaseExpression) -> Optional[TransformUse]:
    """The transform a decorator applies: ``@jax.jit``, ``@jax.jit(static_argnums=1)``,
    ``@partial(jax.jit, static_argnums=1)``."""
    found = transform_name(context, decorator)
    if found is not None:
        return TransformUse(*found, decorator, ())
    if not isinstance(decorator, cst.Call):
        return None
    found = transform_name(context, decorator.func)
    if found is not None:
        return TransformUse(*found, decorator.func, decorator.args)
    if context.resolve(decorator.func) == FUNCTOOLS_PARTIAL and decorator.args and not decorator.args[0].keyword:
        found = transform_name(context, decorator.args[0].value)
        if found is not None:
            return TransformUse(*found, decorator.args[0].value, decorator.args[1:])
    return None


def call_transform(context: FileContext, call: cst.Call) -> Optional[tuple[TransformUse, cst.BaseExpression]]:
    """For ``jax.jit(f, ...)``: the transform and the transformed expression ``f``."""
    found = transform_name(context, call.func)
    if found is None or not call.args or call.args[0].keyword is not None or call.args[0].star:
        return None
    return TransformUse(*found, call.func, call.args[1:]), call.args[0].value


def function_transforms(context: FileContext, function: cst.FunctionDef) -> list[TransformUse]:
    return [use for decorator in function.decorators
            if (use := decorator_transform(context, decorator.decorator)) is not None]


def nnx_transform_fix(context: FileContext, use: TransformUse, applicability: str) -> Optional[Fix]:
    """Replace ``jax.<transform>`` by ``nnx.<transform>``, when the arguments allow it."""
    if use.library != "jax" or not use.movable_to_nnx():
        return None
    replacement, imports = context.nnx_ref(use.name)
    return Fix(f"use `nnx.{use.name}` instead of `jax.{use.name}`", applicability,  # type: ignore[arg-type]
               {use.reference: replacement}, imports)


def function_of(context: FileContext, expression: cst.BaseExpression) -> Optional[cst.FunctionDef]:
    """The function of this file a Name refers to here, also through a rebinding by a
    transform of itself (``step = jax.jit(step)``)."""
    if not isinstance(expression, cst.Name):
        return None
    binding = context.lookup(expression.value)
    while binding is not None and not isinstance(binding.node, cst.FunctionDef):
        value = assigned_value(binding.node, expression.value)
        if not (isinstance(value, cst.Call) and value.args and isinstance(value.args[0].value, cst.Name)
                and value.args[0].value.value == expression.value and transform_name(context, value.func)):
            return None
        binding = _binding_before(context, expression.value, binding)
    return binding.node if binding is not None else None  # type: ignore[return-value]


def _binding_before(context: FileContext, name: str, binding: names.Binding) -> Optional[names.Binding]:
    """The binding of ``name`` that ``binding`` replaced in its scope."""
    for scope in context.scopes:
        candidates = scope.bindings.get(name, [])
        if any(candidate is binding for candidate in candidates):
            earlier = [candidate for candidate in candidates if candidate.index < binding.index]
            return earlier[-1] if earlier else None
    return None


def is_constant_seed(expression: cst.BaseExpression) -> bool:
    """An int literal (``0``, ``-1``), the seed of an ``nnx.Rngs`` that never changes."""
    if isinstance(expression, cst.UnaryOperation) and isinstance(expression.operator, cst.Minus):
        expression = expression.expression
    return isinstance(expression, cst.Integer)

