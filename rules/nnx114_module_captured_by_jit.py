"""NNX114: a module or optimizer captured from outside a jitted function and updated inside it."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.analysis import (
    MODULE, OPTIMIZER, FileIndex, Kind, bound_names, call_transform, differentiated_names, file_index, function_of,
    function_transforms, in_place_updates, WatchesMutableVariables,
)
from nnxlint.objects import assigned_value
from nnxlint.rule import Invalid, Needs, Rule, Valid

_COMPILING_TRANSFORMS = ("jit", "pmap")


class ModuleCapturedByJit(WatchesMutableVariables, Rule):
    """## What it does
    Flags a function compiled with `nnx.jit`/`jax.jit` (or `pmap`) that updates,
    or takes gradients of, a module or optimizer it does not receive as an
    argument but reads from a module-level variable: `optimizer.update(model,
    grads)`, `nnx.update(model, ...)`, `model.attribute = ...`,
    `nnx.grad(loss_fn)(model)` where `model`/`optimizer` are globals.

    ## Why is this bad?
    A transform only manages the state of what it receives as arguments. A module
    reached through a closure belongs to the outer trace, so NNX refuses to change
    it from inside: `TraceContextError: Cannot mutate Param from a different trace
    level` (or `OptState`, `BatchStat`), and `nnx.grad` of it fails with
    `ValueError: Cannot extract graph node from different trace level`. (Measured
    on Flax 0.12.8, with `nnx.jit` and `jax.jit` alike; see also google/flax#3997.)
    A forward pass that changes nothing works, which is why the pattern slips in.
    A file that opts into hijax Variables (`nnx.var_defaults(hijax=True)`), which
    are updated in place across trace levels by design, is only checked for
    differentiated globals.

    ## Example
    ```python
    model = MLP(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def train_step(x, y):
        grads = nnx.grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
    ```

    ## Use instead
    ```python
    @nnx.jit
    def train_step(model, optimizer, x, y):
        grads = nnx.grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
    ```
    and call `train_step(model, optimizer, x, y)`.

    ## Fix safety
    No fix: the objects have to become parameters and every call site has to pass
    them.
    """

    code = "NNX114"
    name = "module-captured-by-jit"
    summary = "Module/optimizer captured by a jitted function and updated in it: TraceContextError"
    triggers = (Needs(uses=("flax.nnx",), names=_COMPILING_TRANSFORMS,
                      refers=("jax.jit", "jax.pmap", "flax.nnx.jit", "flax.nnx.pmap")),)
    valid = (
        Valid("from flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
              "optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)\n\n@nnx.jit\n"
              "def train_step(model, optimizer, x):\n    grads = nnx.grad(loss_fn)(model, x)\n"
              "    optimizer.update(model, grads)\n"),
        # a forward pass through a captured module changes nothing: it works
        Valid("from flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n\n@nnx.jit\n"
              "def predict(x):\n    return model(x)\n"),
        # a local that shadows the global
        Valid("from flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n\n@nnx.jit\n"
              "def step(state, x):\n    model = nnx.merge(graphdef, state)\n    model.kernel[...] = x\n"
              "    return nnx.state(model)\n"),
        # hijax Variables are updated in place across trace levels by design
        Valid("import jax\nfrom flax import nnx\nnnx.var_defaults(hijax=True)\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n\n"
              "@jax.jit\ndef step(x):\n    model.bias[...] = model.bias[...] + 1\n    return model(x)\n"),
        # not compiled
        Valid("from flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
              "optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)\n\n"
              "def train_step(x):\n    optimizer.update(model, nnx.grad(loss_fn)(model, x))\n"),
    )
    invalid = (
        Invalid(  # hijax Variables: in-place updates work, nnx.grad of a captured module does not
            "import jax\nfrom flax import nnx\nnnx.var_defaults(hijax=True)\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n\n"
            "@jax.jit\ndef step(x):\n    return nnx.grad(loss_fn)(model, x)\n",
            message="differentiates the global",
        ),
        Invalid(
            "import optax\nfrom flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, rngs):\n"
            "        self.linear = nnx.Linear(2, 1, rngs=rngs)\n\nmodel = MLP(nnx.Rngs(0))\n"
            "optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)\n\n@nnx.jit\n"
            "def train_step(x, y):\n    grads = nnx.grad(loss_fn)(model, x, y)\n    optimizer.update(model, grads)\n",
            count=2, message="different trace level",
        ),
        Invalid(
            "import jax\nfrom flax import nnx\nmodel = nnx.BatchNorm(3, rngs=nnx.Rngs(0))\n\n"
            "def reset(x):\n    model.mean[...] = x\n    return x\n\nreset = jax.jit(reset)\n",
        ),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.compiled: list[tuple[cst.FunctionDef, str]] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        for use in function_transforms(self.context, node):
            if use.name in _COMPILING_TRANSFORMS:
                self.compiled.append((node, f"{use.library}.{use.name}"))

    def visit_Call(self, node: cst.Call) -> None:
        found = call_transform(self.context, node)
        if found is not None and found[0].name in _COMPILING_TRANSFORMS:
            function = function_of(self.context, found[1])
            if function is not None:
                self.compiled.append((function, f"{found[0].library}.{found[0].name}"))

    def leave_Module(self, node: cst.Module) -> None:
        index = file_index(self.context)
        for function, transform in self.compiled:
            local = bound_names(function)
            uses = [] if self.mutable_variables else [
                (update.name, f"updates the global `{update.name}` ({update.how})")
                for update in in_place_updates(index, function)]
            uses += [(name, f"differentiates the global `{name}`") for name, _ in differentiated_names(index, function)]
            reported: set[str] = set()
            for name, action in uses:
                if name in local or name in reported:
                    continue
                kind = self._global_kind(index, name)
                if kind is None or kind.category not in (MODULE, OPTIMIZER):
                    continue
                reported.add(name)
                self.report(function.name, f"`{function.name.value}` ({transform}) {action}, which it does not "
                                           "receive as an argument: NNX cannot change it from a different trace "
                                           "level (TraceContextError / ValueError); pass it as an argument")

    @staticmethod
    def _global_kind(index: FileIndex, name: str) -> Optional[Kind]:
        binding = index.context.module_scope.lookup_here(name, None)
        value = assigned_value(binding.node if binding else None, name)
        return index.kind_of_value(value) if value is not None else None
