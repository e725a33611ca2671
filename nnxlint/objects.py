"""What objects names hold: NNX module classes of the file and nnx.Optimizer instances.

Rules that ask "is this receiver an nnx.Optimizer?" or "does this class's
``__init__`` need ``rngs``?" share these answers.  Everything is static and
deliberately conservative: when in doubt, the answer is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import libcst as cst

from nnxlint import names
from nnxlint.context import FileContext
from nnxlint.names import Binding

MODULE_BASE = "flax.nnx.Module"


def top_level_classes(context: FileContext) -> dict[str, cst.ClassDef]:
    classes = {}
    for name, bindings in context.module_scope.bindings.items():
        node = bindings[-1].node
        if isinstance(node, cst.ClassDef):
            classes[name] = node
    return classes


def nnx_module_classes(context: FileContext) -> dict[str, cst.ClassDef]:
    """Top-level classes that subclass flax.nnx.Module, directly or through each other."""
    return context.memoized("nnx_module_classes", lambda: _subclasses_of(context, MODULE_BASE))


def is_module_class(context: FileContext, node: cst.CSTNode) -> bool:
    """Whether ``node`` is a top-level class of the file that subclasses flax.nnx.Module.

    Unlike ``nnx_module_classes`` (the last class of each name), this knows every
    definition of a name: notebooks and tutorials redefine ``MLP`` cell after cell,
    and a call refers to the definition in effect where it is made."""
    return id(node) in context.memoized("nnx_module_class_nodes", lambda: _module_class_nodes(context))


def _module_class_nodes(context: FileContext) -> set[int]:
    definitions = [(name, binding.node) for name, bindings in context.module_scope.bindings.items()
                   for binding in bindings if isinstance(binding.node, cst.ClassDef)]
    found: set[int] = set()
    module_names: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, node in definitions:
            if id(node) in found:
                continue
            for base in node.bases:
                if names.resolve(context.module_scope, base.value) == MODULE_BASE or (
                        isinstance(base.value, cst.Name) and base.value.value in module_names) or \
                        _project_module(context, base.value):
                    found.add(id(node))
                    module_names.add(name)
                    changed = True
                    break
    return found


def _subclasses_of(context: FileContext, base_name: str) -> dict[str, cst.ClassDef]:
    classes = top_level_classes(context)
    found: dict[str, cst.ClassDef] = {}
    changed = True
    while changed:
        changed = False
        for name, node in classes.items():
            if name in found:
                continue
            for base in node.bases:
                if names.resolve(context.module_scope, base.value) == base_name or (
                        isinstance(base.value, cst.Name) and base.value.value in found) or (
                        base_name == MODULE_BASE and _project_module(context, base.value)):
                    found[name] = node
                    changed = True
                    break
    return found


def _project_module(context: FileContext, base: cst.BaseExpression) -> bool:
    """``base`` names an NNX module class of another file of the project."""
    if context.project is None:
        return False
    info = context.project_class(base)
    return info is not None and info.kind == "module" and info.path != context.path


def method(class_node: cst.ClassDef, name: str) -> Optional[cst.FunctionDef]:
    body = class_node.body.body if isinstance(class_node.body, cst.IndentedBlock) else ()
    for statement in body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value == name:
            return statement
    return None


def all_params(function: cst.FunctionDef) -> Iterator[cst.Param]:
    return names.parameters(function.params)


def param_named(function: cst.FunctionDef, name: str) -> Optional[cst.Param]:
    return next((param for param in all_params(function) if param.name.value == name), None)


def requires_rngs(class_node: cst.ClassDef) -> bool:
    """Its ``__init__`` has an ``rngs`` parameter without a default."""
    init = method(class_node, "__init__")
    if init is None:
        return False
    param = param_named(init, "rngs")
    return param is not None and param.default is None and param.star == ""


def rngs_position(class_node: cst.ClassDef) -> Optional[int]:
    """Where ``rngs`` sits among ``__init__``'s positional parameters (after ``self``),
    or None when it can only be passed by keyword."""
    init = method(class_node, "__init__")
    if init is None:
        return None
    positional = [*init.params.posonly_params, *init.params.params][1:]
    return next((index for index, param in enumerate(positional) if param.name.value == "rngs"), None)


def holds_rngs(context: FileContext, expression: cst.BaseExpression) -> bool:
    """``nnx.Rngs(...)`` itself, or a name that holds one (see ``rngs_in_scope``)."""
    if isinstance(expression, cst.Call):
        return context.nnx_member(expression.func) == "Rngs"
    if isinstance(expression, cst.Name):
        binding = context.lookup(expression.value)
        return binding is not None and _holds_rngs(context, binding, expression.value)
    return False


def init_of_module_class(context: FileContext) -> Optional[tuple[cst.FunctionDef, cst.ClassDef]]:
    """The (``__init__``, class) the current node is in, for an NNX module class."""
    scopes = [scope for scope in context.scopes
              if not isinstance(scope.node, (cst.Lambda, *names.COMPREHENSIONS))]
    if len(scopes) < 3:
        return None
    function, owner = scopes[-1].node, scopes[-2].node
    if not (isinstance(function, cst.FunctionDef) and function.name.value == "__init__"
            and isinstance(owner, cst.ClassDef) and is_module_class(context, owner)):
        return None
    return function, owner


def rngs_in_scope(context: FileContext) -> Optional[str]:
    """A name visible here that holds an ``nnx.Rngs``: a parameter called ``rngs`` or
    annotated ``nnx.Rngs``, or a variable assigned ``nnx.Rngs(...)``."""
    for scope in reversed(context.scopes):
        if scope.is_class and scope is not context.scope:
            continue
        for name, bindings in scope.bindings.items():
            binding = bindings[-1]
            if context.lookup(name) is not binding:
                continue  # shadowed closer in
            if _holds_rngs(context, binding, name):
                return name
    return None


def _holds_rngs(context: FileContext, binding: Binding, name: str) -> bool:
    node = binding.node
    if isinstance(node, cst.Param):
        if node.star:
            return False
        annotation = node.annotation.annotation if node.annotation is not None else None
        if annotation is not None:
            return context.nnx_member(annotation) == "Rngs"
        return name == "rngs"
    value = assigned_value(node, name)
    return isinstance(value, cst.Call) and context.nnx_member(value.func) == "Rngs"


def assigned_value(node: Optional[cst.CSTNode], name: str) -> Optional[cst.BaseExpression]:
    """The value ``name`` gets from the assignment statement ``node`` (single target)."""
    if isinstance(node, cst.Assign) and len(node.targets) == 1:
        target = node.targets[0].target
        if isinstance(target, cst.Name) and target.value == name:
            return node.value
    if isinstance(node, cst.AnnAssign) and isinstance(node.target, cst.Name) and node.target.value == name:
        return node.value
    return None


@dataclass
class OptimizerInfo:
    """An ``nnx.Optimizer(model, ...)`` construction."""

    call: cst.Call
    model: Optional[cst.BaseExpression]  # the model expression it was built with
    model_binding: Optional[Binding]  # what a Name model referred to at construction


def optimizer_call(context: FileContext, value: Optional[cst.BaseExpression],
                   made_by: Optional[Binding] = None) -> Optional[OptimizerInfo]:
    """Info when ``value`` is an ``nnx.Optimizer(...)`` call (not ModelAndOptimizer);
    ``made_by`` is the binding of the variable it was assigned to, if any."""
    if not isinstance(value, cst.Call) or context.nnx_member(value.func) != "Optimizer":
        return None
    model = next((arg.value for arg in value.args if arg.keyword is None and not arg.star), None)
    if model is None:
        model = next((arg.value for arg in value.args if arg.keyword and arg.keyword.value == "model"), None)
    binding = None
    if isinstance(model, cst.Name):
        binding = context.lookup_as_of(model.value, made_by) if made_by else context.lookup(model.value)
    return OptimizerInfo(value, model, binding)


@dataclass
class CallSite:
    """A call of a function of this file, with what each argument is known to hold."""

    function: cst.FunctionDef
    optimizers: dict[str, OptimizerInfo]  # parameter name -> optimizer passed there
    arguments: dict[str, cst.BaseExpression]  # parameter name -> argument expression
    bindings: dict[str, Optional[Binding]]  # parameter name -> binding of a Name argument
    # parameter names passed something known not to be a plain nnx.Optimizer: an
    # ``nnx.ModelAndOptimizer`` (which keeps ``.model`` and ``update(grads)``) or an
    # instance of a class of the file (which may define them)
    others: set[str] = field(default_factory=set)


@dataclass
class OptimizerUse:
    """An expression used where an optimizer may be: ``<receiver>.update(...)``,
    ``<receiver>.model``.  ``node`` is what the rule reports and fixes."""

    node: cst.CSTNode
    local: Optional[OptimizerInfo] = None  # known at once (a variable of this scope)
    local_model: Optional[cst.BaseExpression] = None
    self_attribute: Optional[tuple[str, str]] = None  # (class, attribute) for ``self.<attribute>``
    parameter: Optional[tuple[cst.FunctionDef, str]] = None
    annotated: bool = False  # a parameter annotated nnx.Optimizer
    # known from the project: a function of another file returned it, every call site in
    # the project passes one, or its class derives from nnx.Optimizer
    inferred: bool = False


@dataclass
class ResolvedUse:
    node: cst.CSTNode
    model: Optional[cst.BaseExpression]  # what to pass as ``model``; None when unknown


class OptimizerTracker:
    """Finds the expressions that hold an ``nnx.Optimizer`` and the model each wraps.

    A rule feeds it every Assign and Call (``observe_assign``, ``observe_call``),
    records candidate uses with ``use(receiver, node)`` during the traversal, and
    gets them back with ``resolve()`` in ``leave_Module``, once every assignment
    and call site of the file has been seen (the order of methods in a class or
    of functions in the file does not matter).
    """

    def __init__(self, context: FileContext) -> None:
        self.context = context
        self.attribute_optimizers: dict[tuple[str, str], OptimizerInfo] = {}
        # (class, id(binding of a Name)) -> attribute: ``self.model = model``
        self.self_aliases: dict[tuple[str, int], str] = {}
        self.call_sites: list[CallSite] = []
        self.uses: list[OptimizerUse] = []
        # the file builds an nnx.ModelAndOptimizer (a subclass of nnx.Optimizer that keeps
        # ``.model`` and ``update(grads)``): a parameter annotated ``nnx.Optimizer`` may hold one
        self.model_and_optimizer = False

    def observe_assign(self, node: cst.Assign) -> None:
        owner = self.context.enclosing_class()
        if owner is None:
            return
        info = optimizer_call(self.context, node.value)
        for target in node.targets:
            attribute = self_attribute(target.target)
            if attribute is None:
                continue
            if info is not None:
                self.attribute_optimizers[(owner.name.value, attribute)] = info
            elif isinstance(node.value, cst.Name):
                binding = self.context.lookup(node.value.value)
                if binding is not None:
                    self.self_aliases[(owner.name.value, id(binding))] = attribute

    def observe_call(self, node: cst.Call) -> None:
        if self.context.nnx_member(node.func) == "ModelAndOptimizer":
            self.model_and_optimizer = True
        function = self._called_function(node.func)
        if function is None:
            return
        positional = [*function.params.posonly_params, *function.params.params]
        site = CallSite(function, {}, {}, {})
        for index, arg in enumerate(node.args):
            if arg.star:
                return  # *args / **kwargs: arguments cannot be mapped to parameters
            if arg.keyword is not None:
                name = arg.keyword.value
            elif index < len(positional):
                name = positional[index].name.value
            else:
                continue
            site.arguments[name] = arg.value
            if isinstance(arg.value, cst.Name):
                binding = self.context.lookup(arg.value.value)
                site.bindings[name] = binding
                info = optimizer_call(self.context, assigned_value(binding.node if binding else None,
                                                                   arg.value.value), binding)
                if info is not None:
                    site.optimizers[name] = info
                elif self._not_an_optimizer(assigned_value(binding.node if binding else None, arg.value.value)):
                    site.others.add(name)
        self.call_sites.append(site)

    def _not_an_optimizer(self, value: Optional[cst.BaseExpression]) -> bool:
        if not isinstance(value, cst.Call):
            return False
        if self.context.nnx_member(value.func) == "ModelAndOptimizer":
            return True
        if isinstance(value.func, cst.Name):
            binding = self.context.lookup(value.func.value)
            return binding is not None and isinstance(binding.node, cst.ClassDef)
        return False

    def _called_function(self, func: cst.BaseExpression) -> Optional[cst.FunctionDef]:
        """The file's own function a call goes to, through ``step = nnx.jit(fn)`` too."""
        seen: set[int] = set()
        if (isinstance(func, cst.Call) and func.args and isinstance(func.args[0].value, cst.Name)
                and not func.args[0].keyword and not func.args[0].star
                and self.context.resolve(func.func) != "functools.partial"):
            func = func.args[0].value  # a transform applied in place: ``nnx.jit(step)(opt, ...)``
        while isinstance(func, cst.Name):
            binding = self.context.lookup(func.value)
            node = binding.node if binding else None
            if isinstance(node, cst.FunctionDef):
                return node
            if node is None or id(node) in seen:  # ``f = wrap(f)`` refers to itself
                return None
            seen.add(id(node))
            value = assigned_value(node, func.value)
            if not (isinstance(value, cst.Call) and value.args
                    and self.context.resolve(value.func) is not None):  # a transform: nnx.jit(fn)
                return None
            func = value.args[0].value
        return None

    def use(self, receiver: cst.BaseExpression, node: cst.CSTNode) -> None:
        """Record ``node``, whose receiver may be an optimizer."""
        context = self.context
        if isinstance(receiver, cst.Name):
            binding = context.lookup(receiver.value)
            if binding is None:
                return
            info = optimizer_call(context, assigned_value(binding.node, receiver.value), binding)
            if info is not None:
                self.uses.append(OptimizerUse(node, local=info, local_model=self._model_here(info)))
            elif isinstance(binding.node, cst.Param):
                function = context.enclosing_function()
                optimizer = self._optimizer_kind(receiver)
                annotated = binding.node.annotation is not None and optimizer
                if function is not None and param_named(function, receiver.value) is binding.node:
                    self.uses.append(OptimizerUse(node, parameter=(function, receiver.value), annotated=annotated,
                                                  inferred=optimizer and not annotated))
            elif self._optimizer_kind(receiver):
                self.uses.append(OptimizerUse(node, inferred=True))
            return
        attribute = self_attribute(receiver)
        owner = context.enclosing_class()
        if attribute is not None and owner is not None:
            self.uses.append(OptimizerUse(node, self_attribute=(owner.name.value, attribute)))

    def _optimizer_kind(self, receiver: cst.BaseExpression) -> bool:
        """Whether ``receiver`` is known to hold an nnx.Optimizer (not a ModelAndOptimizer):
        by its annotation (``nnx.optimizer.Optimizer``, a subclass of another file), what a
        function returned, or what every call site in the project passes."""
        from nnxlint.analysis import OPTIMIZER, kind_of  # analysis builds on this module

        kind = kind_of(self.context, receiver)
        return kind is not None and kind.category == OPTIMIZER and kind.nnx_class in (None, "Optimizer")

    def _model_here(self, info: OptimizerInfo) -> Optional[cst.BaseExpression]:
        """The optimizer's model expression, if it still means the same object here."""
        model = info.model
        if isinstance(model, cst.Name):
            return model if self.context.lookup(model.value) is info.model_binding else None
        if self_attribute(model) is not None and self.context.enclosing_class() is not None:
            return model
        return None

    def resolve(self) -> list[ResolvedUse]:
        resolved = []
        for use in self.uses:
            if use.local is not None:
                resolved.append(ResolvedUse(use.node, use.local_model))
            elif use.self_attribute is not None:
                info = self.attribute_optimizers.get(use.self_attribute)
                if info is not None:
                    resolved.append(ResolvedUse(use.node, self._self_model(use.self_attribute[0], info)))
            elif use.parameter is not None:
                known, model = self._parameter_optimizer(*use.parameter)
                if known or use.inferred or (use.annotated and not self.model_and_optimizer
                                             and not self._passed_other(*use.parameter)):
                    resolved.append(ResolvedUse(use.node, model))
            elif use.inferred:
                resolved.append(ResolvedUse(use.node, None))
        return resolved

    def _self_model(self, owner: str, info: OptimizerInfo) -> Optional[cst.BaseExpression]:
        if self_attribute(info.model) is not None:
            return info.model
        if isinstance(info.model, cst.Name) and info.model_binding is not None:
            alias = self.self_aliases.get((owner, id(info.model_binding)))
            if alias is not None:
                return cst.Attribute(cst.Name("self"), cst.Name(alias))
        return None

    def _passed_other(self, function: cst.FunctionDef, parameter: str) -> bool:
        """Whether a call site passes ``parameter`` something that is no plain nnx.Optimizer."""
        return any(site.function is function and parameter in site.others for site in self.call_sites)

    def _parameter_optimizer(self, function: cst.FunctionDef,
                             parameter: str) -> tuple[bool, Optional[cst.BaseExpression]]:
        """Whether every call site passes an optimizer as ``parameter``, and, when they
        all also pass the model it wraps as the same other parameter, that one."""
        sites = [site for site in self.call_sites if site.function is function and parameter in site.arguments]
        if not sites or any(parameter not in site.optimizers for site in sites):
            return False, None
        choices: Optional[set[str]] = None
        for site in sites:
            info = site.optimizers[parameter]
            model = info.model.value if isinstance(info.model, cst.Name) else None
            matching = {name for name, argument in site.arguments.items()
                        if name != parameter and isinstance(argument, cst.Name) and argument.value == model
                        and site.bindings.get(name) is info.model_binding}
            choices = matching if choices is None else choices & matching
        return True, (cst.Name(choices.pop()) if choices and len(choices) == 1 else None)


def self_attribute(expression: Optional[cst.BaseExpression]) -> Optional[str]:
    """``'model'`` for ``self.model``."""
    if (isinstance(expression, cst.Attribute) and isinstance(expression.value, cst.Name)
            and expression.value.value == "self"):
        return expression.attr.value
    return None
