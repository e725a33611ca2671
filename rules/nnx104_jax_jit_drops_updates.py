"""NNX104: a jax.jit / jax.pmap function that updates an NNX module or optimizer in place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import libcst as cst

from nnxlint.analysis import (
    MODULE, OPTIMIZER, FileIndex, Kind, TransformUse, call_transform, differentiated_names, file_index,
    function_body_nodes, function_of, function_transforms, imports_nnx, in_place_updates, kind_of,
    WatchesMutableVariables, nnx_transform_fix, returned_names, transform_of,
)
from nnxlint.flax_api import FLAX_NNX, STATEFUL_LAYERS
from nnxlint.objects import all_params, assigned_value
from nnxlint.rule import Invalid, Needs, Rule, Valid

_NNX_GRADIENTS = (("nnx", "grad"), ("nnx", "value_and_grad"))

@dataclass
class _Mutations:
    """What a function body does to its parameters."""

    explicit: dict[str, str] = field(default_factory=dict)  # parameter -> how (`optimizer.update`, ...)
    stateful_calls: set[str] = field(default_factory=set)  # parameters called as models
    takes_gradients: bool = False


class JaxJitDropsUpdates(WatchesMutableVariables, Rule):
    """## What it does
    Flags a function compiled with `jax.jit` or `jax.pmap` (as a decorator, through
    `functools.partial`, or as `jax.jit(train_step)`) that updates an NNX module or
    optimizer in place and does not return it: it calls `optimizer.update(...)` or
    `nnx.update(model, ...)`, assigns an attribute of the module, or computes
    gradients through a model that holds `BatchNorm`/`Dropout` state.
    Files that opt into hijax / array-ref Variables (`nnx.var_defaults(hijax=True)`,
    `FLAX_MUTABLE_ARRAY`), which are designed for in-place updates under `jax.jit`,
    are not checked.

    ## Why is this bad?
    Since Flax 0.11 NNX modules and optimizers are pytrees. `jax.jit` flattens them
    into arrays, traces the function on copies, and returns only what the function
    returns: every in-place update is silently dropped. The program runs without an
    error, but the loss never goes down, `optimizer.step` stays at 0, BatchNorm
    statistics never move and Dropout draws the same mask at every step.
    (Measured on Flax 0.12.8: three steps of a `jax.jit` train step give the same
    loss; with `nnx.jit`, the loss falls. The same with `jax.pmap` and `nnx.pmap`
    over two devices, with the same `axis_name`.) `nnx.jit` carries the state of its module
    arguments in and out of the compiled function.

    ## Example
    ```python
    @jax.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss
    ```

    ## Use instead
    ```python
    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss
    ```
    (Or return the updated objects, functional style:
    `return model, optimizer, loss`, and rebind them at the call site.)

    ## Fix safety
    The fix replaces `jax.jit` by `nnx.jit` (`jax.pmap` by `nnx.pmap`), keeping the
    keyword arguments, which `nnx.jit` accepts with the same meaning; it is not
    offered when the call passes one that `nnx.jit` lacks (`compiler_options`) or
    positional arguments after the function. It is safe when the function updates
    the object explicitly (`optimizer.update`, `nnx.update`, attribute
    assignment): those updates are what the code asks for. It is unsafe when the
    only update is the state a `BatchNorm`/`Dropout` keeps while gradients are
    taken: after the fix, calling the function advances RNG counters and running
    statistics, which changes later results.
    """

    code = "NNX104"
    name = "jax-jit-drops-updates"
    summary = "`jax.jit`/`jax.pmap` function updates an NNX module or optimizer in place: updates are dropped"
    fixable = "safe"
    # ``leave_Module`` checks nothing unless the file imports flax or flax.nnx (``imports_nnx``)
    triggers = (Needs(names=("jit", "pmap"), refers=("jax.jit", "jax.pmap"), imports_only=True,
                      imports=("flax", FLAX_NNX, f"{FLAX_NNX}.")),)
    valid = (
        Valid("import jax\nfrom flax import nnx\n\n@nnx.jit\ndef train_step(model, optimizer, x):\n"
              "    grads = nnx.grad(loss_fn)(model, x)\n    optimizer.update(model, grads)\n"),
        # functional style: the updated objects come back out
        Valid("import jax\nfrom flax import nnx\n\n@jax.jit\ndef train_step(model, optimizer, x):\n"
              "    loss, grads = nnx.value_and_grad(loss_fn)(model, x)\n    optimizer.update(model, grads)\n"
              "    return model, optimizer, loss\n"),
        # the updated state comes back out, to be put back with nnx.update by the caller
        Valid("import jax\nfrom flax import nnx\n\n@jax.jit\ndef train_step(model, optimizer, x):\n"
              "    optimizer.update(model, nnx.grad(loss_fn)(model, x))\n"
              "    return nnx.state((model, optimizer))\n"),
        # a pure forward pass works under jax.jit, even with Dropout (in eval mode, say)
        Valid("import jax\nfrom flax import nnx\n\nclass Net(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.drop = nnx.Dropout(0.5, rngs=rngs)\n\n@jax.jit\ndef predict(model: Net, x):\n"
              "    return model(x)\n"),
        # optax's functional update returns new state: nothing is mutated
        Valid("import jax\nimport optax\nfrom flax import nnx\n\n@jax.jit\ndef step(params, opt_state, x):\n"
              "    grads = jax.grad(loss)(params, x)\n    updates, opt_state = tx.update(grads, opt_state, params)\n"
              "    return optax.apply_updates(params, updates), opt_state\n"),
        # a dict-like update of a plain argument, not an optimizer
        Valid("import jax\nfrom flax import nnx\n\n@jax.jit\ndef step(stats, x):\n    stats.update(x)\n"
              "    return x\n"),
        Valid("import jax\n\n@jax.jit\ndef step(model, optimizer, x):\n    optimizer.update(model, x)\n"),
        # hijax / array-ref Variables are meant to be updated in place under jax.jit
        Valid("import jax\nfrom flax import nnx\nnnx.var_defaults(hijax=True)\n\n@jax.jit\n"
              "def train_step(model, optimizer, x):\n    optimizer.update(model, nnx.grad(loss_fn)(model, x))\n"),
        # the Flax 0.11 name of the switch (its mutable-arrays guide)
        Valid("import jax\nfrom flax import nnx\nwith nnx.use_mutable_arrays(True):\n    model = make()\n\n@jax.jit\n"
              "def train_step(model, optimizer, x):\n    optimizer.update(model, grads)\n    return x\n"),
    )
    invalid = (
        Invalid(
            "import jax\nfrom flax import nnx\n\n@jax.jit\ndef train_step(model, optimizer, x, y):\n"
            "    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)\n    optimizer.update(model, grads)\n"
            "    return loss\n",
            fixed="import jax\nfrom flax import nnx\n\n@nnx.jit\ndef train_step(model, optimizer, x, y):\n"
                  "    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)\n    optimizer.update(model, grads)\n"
                  "    return loss\n",
            message="silently dropped",
        ),
        Invalid(  # call form, and the model is returned but the optimizer is not
            "import jax\nfrom flax import nnx\n\ndef train_step(model, optimizer, x):\n"
            "    grads = nnx.grad(loss_fn)(model, x)\n    optimizer.update(model, grads)\n    return model\n\n"
            "train_step = jax.jit(train_step, donate_argnums=(0, 1))\n",
            fixed="import jax\nfrom flax import nnx\n\ndef train_step(model, optimizer, x):\n"
                  "    grads = nnx.grad(loss_fn)(model, x)\n    optimizer.update(model, grads)\n    return model\n\n"
                  "train_step = nnx.jit(train_step, donate_argnums=(0, 1))\n",
            message="`optimizer`",
        ),
        Invalid(
            "from functools import partial\nimport jax\nfrom flax import nnx as fx\n\n"
            "@partial(jax.pmap, axis_name='batch')\ndef step(model, optimizer, x):\n"
            "    grads = fx.grad(loss_fn)(model, x)\n    optimizer.update(model, grads)\n",
            fixed="from functools import partial\nimport jax\nfrom flax import nnx as fx\n\n"
                  "@partial(fx.pmap, axis_name='batch')\ndef step(model, optimizer, x):\n"
                  "    grads = fx.grad(loss_fn)(model, x)\n    optimizer.update(model, grads)\n",
        ),
        Invalid(  # only BatchNorm statistics are lost: the fix changes results, so it is unsafe
            "import jax\nfrom flax import nnx\n\nclass Net(nnx.Module):\n    def __init__(self, rngs):\n"
            "        self.bn = nnx.BatchNorm(3, rngs=rngs)\n\n@jax.jit\ndef grads_of(model: Net, x):\n"
            "    def loss_fn(model):\n        return model(x).sum()\n    return nnx.grad(loss_fn)(model)\n",
            fixed="import jax\nfrom flax import nnx\n\nclass Net(nnx.Module):\n    def __init__(self, rngs):\n"
                  "        self.bn = nnx.BatchNorm(3, rngs=rngs)\n\n@nnx.jit\ndef grads_of(model: Net, x):\n"
                  "    def loss_fn(model):\n        return model(x).sum()\n    return nnx.grad(loss_fn)(model)\n",
            unsafe=True,
        ),
        Invalid(  # the argument is known to be a module from the call site
            "import jax\nfrom flax import nnx\n\nclass Counter(nnx.Module):\n    def __init__(self):\n"
            "        self.calls = 0\n\ndef bump(counter, x):\n    counter.calls += 1\n    return x\n\n"
            "bump = jax.jit(bump)\nbump(Counter(), 1.0)\n",
            fixed="import jax\nfrom flax import nnx\n\nclass Counter(nnx.Module):\n    def __init__(self):\n"
                  "        self.calls = 0\n\ndef bump(counter, x):\n    counter.calls += 1\n    return x\n\n"
                  "bump = nnx.jit(bump)\nbump(Counter(), 1.0)\n",
        ),
        Invalid(  # differentiated by nnx.grad, so an NNX module: its attribute assignment is lost
            "import jax\nfrom flax import nnx\n\n@jax.jit\ndef step(model, x):\n"
            "    grads = nnx.grad(loss_fn)(model, x)\n    model.steps[...] += 1\n    return grads\n",
            fixed="import jax\nfrom flax import nnx\n\n@nnx.jit\ndef step(model, x):\n"
                  "    grads = nnx.grad(loss_fn)(model, x)\n    model.steps[...] += 1\n    return grads\n",
        ),
        Invalid(  # nnx.jit has no compiler_options: flagged, not fixed
            "import jax\nfrom flax import nnx\n\ndef step(model: nnx.Module, optimizer: nnx.Optimizer, g):\n"
            "    optimizer.update(model, g)\n\nstep = jax.jit(step, compiler_options={})\n",
        ),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.index: Optional[FileIndex] = None
        self.jitted: list[tuple[cst.FunctionDef, TransformUse]] = []
        # id(function) -> parameter -> kind of an argument some call passes there
        self.argument_kinds: dict[int, dict[str, Kind]] = {}

    def visit_Module(self, node: cst.Module) -> None:
        self.index = file_index(self.context)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        for use in function_transforms(self.context, node):
            if use.library == "jax" and use.name in ("jit", "pmap"):
                self.jitted.append((node, use))

    def visit_Call(self, node: cst.Call) -> None:
        transformed = call_transform(self.context, node)
        if transformed is not None:
            use, target = transformed
            function = function_of(self.context, target)
            if function is not None and use.library == "jax" and use.name in ("jit", "pmap"):
                self.jitted.append((function, use))
        function = self._called_function(node.func)
        if function is not None:
            self._record_arguments(function, node)

    def _called_function(self, func: cst.BaseExpression) -> Optional[cst.FunctionDef]:
        """The file's function a call runs, directly or through ``step = jax.jit(fn)``."""
        function = function_of(self.context, func)
        if function is not None or not isinstance(func, cst.Name):
            return function
        binding = self.context.lookup(func.value)
        value = assigned_value(binding.node if binding else None, func.value)
        if isinstance(value, cst.Call):
            transformed = call_transform(self.context, value)
            if transformed is not None:
                return function_of(self.context, transformed[1])
        return None

    def _record_arguments(self, function: cst.FunctionDef, call: cst.Call) -> None:
        positional = [*function.params.posonly_params, *function.params.params]
        kinds = self.argument_kinds.setdefault(id(function), {})
        for position, arg in enumerate(call.args):
            if arg.star:
                return  # *args / **kwargs: arguments no longer line up with parameters
            if arg.keyword is not None:
                parameter = arg.keyword.value
            elif position < len(positional):
                parameter = positional[position].name.value
            else:
                continue
            kind = kind_of(self.context, arg.value)
            if kind is not None:
                kinds.setdefault(parameter, kind)

    def leave_Module(self, node: cst.Module) -> None:
        if not imports_nnx(self.context) or self.mutable_variables:
            return
        for function, use in self.jitted:
            self._check(function, use)

    def _parameter_kinds(self, function: cst.FunctionDef) -> dict[str, Kind]:
        assert self.index is not None
        kinds = dict(self.argument_kinds.get(id(function), {}))
        for param in all_params(function):
            if param.annotation is not None:
                annotation = param.annotation.annotation
                kind = self.index.kind_of_annotation(annotation, self.index.resolve(annotation))
                if kind is not None:
                    kinds[param.name.value] = kind
        return kinds

    def _check(self, function: cst.FunctionDef, use: TransformUse) -> None:
        kinds = self._parameter_kinds(function)
        mutations = self._mutations(function, kinds)
        lost = dict(mutations.explicit)
        assert self.index is not None
        if mutations.takes_gradients:
            for parameter in sorted(mutations.stateful_calls - set(lost)):
                if self.index.holds(kinds.get(parameter), lambda kind: kind.nnx_class in STATEFUL_LAYERS):
                    lost[parameter] = "its BatchNorm/Dropout state"
        for parameter in returned_names(self.index, function):
            lost.pop(parameter, None)
        if not lost:
            return
        applicability = "safe" if set(lost) & set(mutations.explicit) else "unsafe"
        updated = ", ".join(f"`{parameter}` ({how})" for parameter, how in lost.items())
        self.report(use.reference,
                    f"`jax.{use.name}` function `{function.name.value}` updates {updated} in place without "
                    f"returning it: NNX modules are pytrees, so the updates are silently dropped; "
                    f"use `nnx.{use.name}`",
                    nnx_transform_fix(self.context, use, applicability))

    def _mutations(self, function: cst.FunctionDef, kinds: dict[str, Kind]) -> _Mutations:
        assert self.index is not None
        parameters = {param.name.value for param in all_params(function)}
        found = _Mutations()
        differentiated = differentiated_names(self.index, function)
        for name, call in differentiated:  # ``nnx.grad(f)(model)``: model is an NNX object
            if name in parameters and transform_of(self.index.resolve(call.func.func)) in _NNX_GRADIENTS:
                kinds.setdefault(name, Kind(MODULE))
        for update in in_place_updates(self.index, function):
            kind = kinds.get(update.name)
            known = kind is not None and kind.category in (MODULE, OPTIMIZER)
            if update.name in parameters and (known or not update.needs_known_object):
                found.explicit.setdefault(update.name, update.how)
        found.takes_gradients = bool(differentiated)
        for node in function_body_nodes(function):
            if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in parameters:
                found.stateful_calls.add(node.func.value)
        return found
