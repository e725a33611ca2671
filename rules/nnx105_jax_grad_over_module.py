"""NNX105: jax.grad / jax.value_and_grad differentiating an NNX module."""

from __future__ import annotations

from typing import Optional, Sequence

import libcst as cst

from nnxlint.analysis import (
    GRADIENT_TRANSFORMS, MODULE, Kind, TransformUse, call_transform, file_index, function_body_nodes, function_of,
    kind_of, nnx_transform_fix, optimizer_update, parameter_kind, params_only,
)
from nnxlint.objects import all_params, assigned_value
from nnxlint.rule import Invalid, Needs, Rule, Valid


class JaxGradOverModule(Rule):
    """## What it does
    Flags `jax.grad(f)` / `jax.value_and_grad(f)` where the differentiated
    argument is an NNX module: a module of the file or an `nnx` layer, a parameter
    annotated as one, the model an `optimizer.update(model, grads)` in the same
    function updates, or a parameter of `f` annotated as a module. A module the
    file shows to hold nothing but `nnx.Param`s (an `nnx.Linear`, a class whose
    attributes are such layers and Params) is not flagged: every leaf of that
    pytree is a parameter, and Flax 0.12 differentiates it with `jax.grad` as
    designed.

    ## Why is this bad?
    Since Flax 0.11 a module is a pytree, so `jax.grad` differentiates every leaf of
    it, not just the `nnx.Param`s. As soon as the model holds RNG state (any
    `nnx.Dropout` built with `rngs`), it fails with `TypeError: grad requires real-
    or complex-valued inputs (input dtype that is a sub-dtype of np.inexact), but got
    uint32. If you want to use Boolean- or integer-valued inputs, use vjp or set
    allow_int to True.` Without RNG state it runs, but it also differentiates
    BatchNorm statistics, returns a module-shaped object instead of an
    `nnx.State` of parameters, and drops the statistics the forward pass updated.
    `nnx.grad` differentiates the `nnx.Param`s only and carries the other state
    through.

    ## Example
    ```python
    loss, grads = jax.value_and_grad(loss_fn)(model, x, y)
    ```

    ## Use instead
    ```python
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    ```

    ## Fix safety
    Unsafe: the fix replaces `jax.grad` by `nnx.grad` (keeping `argnums`,
    `has_aux`, ...), which changes what the gradients are: an `nnx.State` holding
    only the parameters, where `jax.grad` returned a copy of the module with every
    float leaf. Code that feeds them to `optimizer.update(model, grads)` works with
    both; code that reads them as a module does not. No fix when `argnums` is
    passed positionally (`nnx.grad` takes it as a keyword only).
    """

    code = "NNX105"
    name = "jax-grad-over-module"
    summary = "`jax.grad`/`jax.value_and_grad` over an NNX module: fails with Dropout, differentiates non-Params"
    fixable = "unsafe"
    triggers = (Needs(names=GRADIENT_TRANSFORMS, refers=("jax.grad", "jax.value_and_grad"), imports_only=True),)
    valid = (
        Valid("import jax\nfrom flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
              "grads = nnx.grad(loss_fn)(model, x)\n"),
        # the functional style: gradients with respect to the parameter State
        Valid("import jax\nfrom flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
              "graphdef, params, rest = nnx.split(model, nnx.Param, ...)\n"
              "grads = jax.grad(loss_fn)(params, graphdef, rest, x)\n"),
        # the model is not the differentiated argument
        Valid("import jax\nfrom flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
              "grads = jax.grad(loss_fn, argnums=1)(model, x)\n"),
        Valid("import jax\nfrom flax import nnx\n\ndef step(params, x):\n    return jax.grad(loss_fn)(params, x)\n"),
        # every call of the step passes a module that holds only Params
        Valid("import jax\nfrom flax import nnx\nmodel = nnx.Linear(4, 2, rngs=nnx.Rngs(0))\n"
              "optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)\n\n"
              "def train_step(model, x):\n    grads = jax.grad(loss)(model, x)\n    optimizer.update(model, grads)\n\n"
              "train_step(model, x)\n"),
        # a module known to hold only nnx.Params: a pytree whose every leaf is a parameter, which
        # Flax 0.12 differentiates with jax.grad as designed (its own tests and guides do)
        Valid("import jax\nfrom flax import nnx\nmodel = nnx.Linear(4, 2, rngs=nnx.Rngs(0))\n"
              "grads = jax.grad(loss_fn)(model, x)\n"),
        Valid("import jax\nfrom flax import nnx\n\nclass DotReluDot(nnx.Module):\n    def __init__(self, depth, rngs):\n"
              "        self.dot1 = nnx.Linear(depth, depth, use_bias=False, rngs=rngs)\n"
              "        self.w2 = nnx.Param(rngs.params.normal((depth, depth)))\n\n"
              "def loss_fn(model: DotReluDot):\n    return model(x).mean()\n\n"
              "def train_step(model, optimizer, x):\n    loss, grads = jax.value_and_grad(loss_fn)(model)\n"
              "    optimizer.update(model, grads)\n"),
    )
    invalid = (
        Invalid(
            "import jax\nfrom flax import nnx\n\ndef train_step(model, optimizer, x, y):\n"
            "    loss, grads = jax.value_and_grad(loss_fn)(model, x, y)\n    optimizer.update(model, grads)\n"
            "    return loss\n",
            fixed="import jax\nfrom flax import nnx\n\ndef train_step(model, optimizer, x, y):\n"
                  "    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)\n    optimizer.update(model, grads)\n"
                  "    return loss\n",
            unsafe=True, message="nnx.value_and_grad",
        ),
        Invalid(
            "import jax\nfrom flax import nnx\n\nclass MLP(nnx.Module):\n    pass\n\nmodel = MLP()\n"
            "grad_fn = jax.grad(loss_fn, has_aux=True)\ngrads, aux = grad_fn(model, x)\n",
            fixed="import jax\nfrom flax import nnx\n\nclass MLP(nnx.Module):\n    pass\n\nmodel = MLP()\n"
                  "grad_fn = nnx.grad(loss_fn, has_aux=True)\ngrads, aux = grad_fn(model, x)\n",
            unsafe=True,
        ),
        Invalid(
            "import jax\nfrom flax import nnx\n\ndef loss_fn(model: nnx.Module, x):\n    return model(x).sum()\n\n"
            "grad_fn = jax.grad(loss_fn)\n",
            fixed="import jax\nfrom flax import nnx\n\ndef loss_fn(model: nnx.Module, x):\n"
                  "    return model(x).sum()\n\n"
                  "grad_fn = nnx.grad(loss_fn)\n",
            unsafe=True,
        ),
        Invalid(  # argnums positional: nnx.grad takes it as a keyword only, so no fix
            "import jax\nfrom flax import nnx\nmodel = nnx.BatchNorm(3, rngs=nnx.Rngs(0))\n"
            "grads = jax.grad(loss_fn, 1)(x, model)\n",
        ),
        Invalid(  # a Dropout with its own RNG stream: the TypeError case
            "import jax\nfrom flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, rngs):\n"
            "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n        self.drop = nnx.Dropout(0.1, rngs=rngs)\n\n"
            "def loss_fn(model: Block, x):\n    return model(x).sum()\n\ngrads = jax.grad(loss_fn)(Block(nnx.Rngs(0)), x)\n",
            fixed="import jax\nfrom flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, rngs):\n"
                  "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n        self.drop = nnx.Dropout(0.1, rngs=rngs)\n\n"
                  "def loss_fn(model: Block, x):\n    return model(x).sum()\n\ngrads = nnx.grad(loss_fn)(Block(nnx.Rngs(0)), x)\n",
            unsafe=True,
        ),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.reported: set[int] = set()
        # (use, enclosing function, parameter): a parameter known as a model only from
        # ``optimizer.update(model, grads)``; decided once the file's calls are seen
        self.pending: list[tuple[TransformUse, cst.FunctionDef, str]] = []
        # id(function) -> for each call of it, the kind of what it passes to each parameter
        self.call_sites: dict[int, list[dict[str, Optional[Kind]]]] = {}

    def visit_Call(self, node: cst.Call) -> None:
        self._observe_call(node)
        transformed = self._jax_gradient(node.func)
        if transformed is not None:  # jax.grad(f)(model, ...) or grad_fn(model, ...)
            use, argnums, function = transformed
            parameters = [*function.params.posonly_params, *function.params.params] if function else []
            for position in argnums:
                if position < len(node.args) and self._is_module(node.args[position]) and not (
                        position < len(parameters) and self._params_only_parameter(parameters[position])):
                    value = node.args[position].value
                    enclosing = self.context.enclosing_function()
                    if (kind_of(self.context, value) is None and isinstance(value, cst.Name)
                            and enclosing is not None):
                        self.pending.append((use, enclosing, value.value))
                    else:
                        self._report(use)
        found = call_transform(self.context, node)
        if found is not None and found[0].library == "jax" and found[0].name in GRADIENT_TRANSFORMS:
            use, target = found
            function = function_of(self.context, target)
            if function is not None:
                parameters = [*function.params.posonly_params, *function.params.params]
                for position in _argnums(use.arguments) or ():
                    if (position < len(parameters) and _annotated_module(self.context, parameters[position])
                            and not self._params_only_parameter(parameters[position])):
                        self._report(use)

    def _observe_call(self, node: cst.Call) -> None:
        """Record the kind of what a call of a function of this file passes to each parameter."""
        function = function_of(self.context, node.func)
        if function is None:
            return
        positional = [*function.params.posonly_params, *function.params.params]
        arguments: dict[str, Optional[Kind]] = {}
        for index, arg in enumerate(node.args):
            if arg.star:
                return
            name = arg.keyword.value if arg.keyword is not None else (
                positional[index].name.value if index < len(positional) else None)
            if name is not None:
                arguments[name] = kind_of(self.context, arg.value)
        self.call_sites.setdefault(id(function), []).append(arguments)

    def leave_Module(self, node: cst.Module) -> None:
        index = file_index(self.context)
        for use, function, parameter in self.pending:
            sites = self.call_sites.get(id(function), [])
            if sites and all(params_only(index, site.get(parameter)) for site in sites):
                continue  # every call passes a module that holds only nnx.Params
            self._report(use)

    def _jax_gradient(self, func: cst.BaseExpression
                      ) -> Optional[tuple[TransformUse, Sequence[int], Optional[cst.FunctionDef]]]:
        """For a call of ``jax.grad(f)`` or of a name bound to it: the transform, its argnums
        and ``f`` when it is a function of this file."""
        if isinstance(func, cst.Name):
            binding = self.context.lookup(func.value)
            func = assigned_value(binding.node if binding else None, func.value)  # type: ignore[assignment]
        if not isinstance(func, cst.Call):
            return None
        found = call_transform(self.context, func)
        if found is None or found[0].library != "jax" or found[0].name not in GRADIENT_TRANSFORMS:
            return None
        argnums = _argnums(found[0].arguments)
        return (found[0], argnums, function_of(self.context, found[1])) if argnums is not None else None

    def _params_only_parameter(self, param: cst.Param) -> bool:
        """A parameter annotated with a module known to hold only ``nnx.Param``s."""
        if param.annotation is None:
            return False
        return params_only(file_index(self.context), parameter_kind(self.context, param))

    def _is_module(self, arg: cst.Arg) -> bool:
        if arg.keyword is not None or arg.star:
            return False
        kind = kind_of(self.context, arg.value)
        if kind is not None:
            return kind.category == MODULE and not params_only(file_index(self.context), kind)
        return isinstance(arg.value, cst.Name) and arg.value.value in self._updated_models()

    def _updated_models(self) -> set[str]:
        """Names the enclosing function passes as the model of ``optimizer.update(model, grads)``."""
        function = self.context.enclosing_function()
        if function is None:
            return set()
        parameters = {param.name.value for param in all_params(function)}
        found = set()
        for node in function_body_nodes(function):
            update = optimizer_update(node)
            if update is not None and isinstance(update[1], cst.Name) and update[1].value in parameters:
                found.add(update[1].value)
        return found

    def _report(self, use: TransformUse) -> None:
        if id(use.reference) in self.reported:
            return
        self.reported.add(id(use.reference))
        self.report(use.reference,
                    f"`jax.{use.name}` over an NNX module: differentiates every leaf (TypeError on Dropout's "
                    f"uint32 RNG count, BatchNorm statistics too); use `nnx.{use.name}`",
                    nnx_transform_fix(self.context, use, "unsafe"))


def _argnums(arguments: Sequence[cst.Arg]) -> Optional[list[int]]:
    """The differentiated positions: ``argnums`` given positionally or by keyword; None if not literal."""
    value: Optional[cst.BaseExpression] = None
    for position, arg in enumerate(arguments):
        if arg.keyword is None and position == 0 and not arg.star:
            value = arg.value
        elif arg.keyword is not None and arg.keyword.value == "argnums":
            value = arg.value
    if value is None:
        return [0]
    elements = [element.value for element in value.elements] if isinstance(value, cst.Tuple) else [value]
    if not all(isinstance(element, cst.Integer) for element in elements):
        return None
    return [int(element.value) for element in elements]  # type: ignore[union-attr]


def _annotated_module(context, param: cst.Param) -> bool:
    kind = parameter_kind(context, param) if param.annotation is not None else None
    return kind is not None and kind.category == MODULE
