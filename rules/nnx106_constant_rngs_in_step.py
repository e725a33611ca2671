"""NNX106: a constant-seed nnx.Rngs made inside a transformed step and passed to a model call."""

from __future__ import annotations

import libcst as cst

from nnxlint.analysis import (
    MODULE, call_transform, function_of, function_transforms, is_constant_seed, kind_of, method_of_module_class,
)
from nnxlint.rule import Invalid, Needs, Rule, Valid


class ConstantRngsInStep(Rule):
    """## What it does
    Flags `model(x, rngs=nnx.Rngs(dropout=0))`, a call of a module (or of a
    function parameter) given an `nnx.Rngs` built from literal seeds, inside a
    function that is compiled or differentiated (`nnx.jit`/`jax.jit`/`pmap`,
    `nnx.grad`/`value_and_grad`, as a decorator or applied by name), inside a
    function nested in one, or inside a method of a module (its forward pass).
    A call that switches dropout off (`deterministic=True`, `train=False`) draws
    no mask and is not flagged.

    ## Why is this bad?
    The `Rngs` is created afresh at every call with the same seed, so every step
    draws the same keys: Dropout applies the same mask at every training step,
    which is not dropout any more. (Measured on Flax 0.12.8: two calls of an
    `nnx.jit` forward with `rngs=nnx.Rngs(dropout=0)` give identical outputs;
    without it, the Dropout's own stream advances and the outputs differ.)

    ## Example
    ```python
    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return ((model(x, rngs=nnx.Rngs(dropout=0)) - y) ** 2).mean()
        ...
    ```

    ## Use instead
    ```python
    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return ((model(x) - y) ** 2).mean()  # Dropout uses the stream it was built with
        ...
    ```
    (Or pass in a key that changes from step to step.)

    ## Fix safety
    No fix: dropping `rngs=` is right only when the model's Dropout layers were
    built with their own `rngs`, which the call site cannot show.
    """

    code = "NNX106"
    name = "constant-rngs-in-step"
    summary = "Constant-seed `nnx.Rngs` made inside a jitted/differentiated step: same dropout mask every step"
    triggers = (Needs(words=("rngs",), refers=("flax.nnx.Rngs",), imports_only=True),)
    valid = (
        # built once, outside the step: its counters advance
        Valid("from flax import nnx\nrngs = nnx.Rngs(dropout=0)\n\n@nnx.jit\ndef step(model, x):\n"
              "    return model(x, rngs=rngs)\n"),
        # constructing a layer with a constant seed is initialization, not a per-step draw
        Valid("from flax import nnx\n\n@nnx.jit\ndef create():\n    return nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"),
        # a seed that changes per call
        Valid("from flax import nnx\n\n@nnx.jit\ndef step(model, x, seed):\n"
              "    return model(x, rngs=nnx.Rngs(dropout=seed))\n"),
        # a one-off call while constructing
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.drop = nnx.Dropout(0.5)\n        self.probe = self.drop(x0, rngs=nnx.Rngs(0))\n"),
        # dropout switched off at the call: no mask is drawn (an inference / encoding step)
        Valid("from flax import nnx\n\n@nnx.jit\ndef encode_batch(model, videos):\n"
              "    return model(videos, deterministic=True, rngs=nnx.Rngs(0))\n"),
        Valid("from flax import nnx\n\n@nnx.jit\ndef eval_step(model, x):\n"
              "    return model(x, train=False, rngs=nnx.Rngs(dropout=0))\n"),
        # not inside a transformed function
        Valid("from flax import nnx\n\ndef evaluate(model, x):\n    return model(x, rngs=nnx.Rngs(dropout=0))\n"),
    )
    invalid = (
        Invalid(
            "from flax import nnx\n\n@nnx.jit\ndef train_step(model, optimizer, x, y):\n"
            "    def loss_fn(model):\n        return ((model(x, rngs=nnx.Rngs(dropout=0)) - y) ** 2).mean()\n"
            "    grads = nnx.grad(loss_fn)(model)\n    optimizer.update(model, grads)\n",
            message="same dropout mask",
        ),
        Invalid(  # in a module's forward pass: the same mask at every call
            "from flax import nnx\n\nclass Net(nnx.Module):\n    def __init__(self):\n"
            "        self.drop = nnx.Dropout(0.5)\n\n    def __call__(self, x):\n"
            "        return self.drop(x, rngs=nnx.Rngs(1))\n",
        ),
        Invalid(
            "import jax\nfrom flax import nnx\n\ndef loss_fn(model, x):\n"
            "    return model(x, rngs=nnx.Rngs(params=0, dropout=-1)).sum()\n\n"
            "grad_fn = nnx.value_and_grad(loss_fn)\n",
        ),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.transformed: set[int] = set()
        self.candidates: list[tuple[cst.Call, list[cst.FunctionDef]]] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if function_transforms(self.context, node):
            self.transformed.add(id(node))

    def visit_Call(self, node: cst.Call) -> None:
        found = call_transform(self.context, node)
        if found is not None:
            function = function_of(self.context, found[1])
            if function is not None:
                self.transformed.add(id(function))
        for arg in node.args:
            if arg.keyword is not None and arg.keyword.value == "rngs" and self._constant_rngs(arg.value):
                if not self._calls_model(node) or _dropout_off(node):
                    continue
                method = method_of_module_class(self.context)
                if method is not None:
                    if method[0].name.value != "__init__":  # runs once per construction, not per step
                        self._report(arg.value, f"`{method[1].name.value}.{method[0].name.value}`")
                else:
                    self.candidates.append((arg.value, list(self.context.enclosing(cst.FunctionDef))))

    def leave_Module(self, node: cst.Module) -> None:
        for rngs, functions in self.candidates:
            step = next((function for function in functions if id(function) in self.transformed), None)
            if step is not None:
                self._report(rngs, f"`{step.name.value}`, which is compiled or differentiated,")

    def _report(self, rngs: cst.BaseExpression, where: str) -> None:
        self.report(rngs, f"constant-seed `nnx.Rngs` made inside {where} and passed to a module call: every "
                          "call draws the same keys (the same dropout mask every step); let the Dropout use "
                          "its own stream or pass a key that changes")

    def _constant_rngs(self, value: cst.BaseExpression) -> bool:
        return (isinstance(value, cst.Call) and self.context.nnx_member(value.func) == "Rngs" and bool(value.args)
                and all(not arg.star and is_constant_seed(arg.value) for arg in value.args))

    def _calls_model(self, call: cst.Call) -> bool:
        """A call of a module instance (``model(x)``, ``self.dropout(x)``) or of a function parameter."""
        if kind_of(self.context, call) is not None:
            return False  # a construction
        func = call.func
        kind = kind_of(self.context, func)
        if kind is not None:
            return kind.category == MODULE
        if isinstance(func, cst.Name):
            binding = self.context.lookup(func.value)
            return binding is not None and isinstance(binding.node, cst.Param)
        return False


# Keyword arguments by which a call switches Dropout off, with the literal that does it.
_DROPOUT_OFF = {"deterministic": "True", "train": "False", "training": "False", "is_training": "False"}


def _dropout_off(call: cst.Call) -> bool:
    """``model(x, deterministic=True, ...)`` / ``train=False``: the call draws no dropout mask."""
    return any(arg.keyword is not None and isinstance(arg.value, cst.Name)
               and _DROPOUT_OFF.get(arg.keyword.value) == arg.value.value for arg in call.args)
