"""NNX110: optimizer.model, removed from nnx.Optimizer in Flax 0.11."""

from __future__ import annotations

import libcst as cst

from nnxlint.objects import OptimizerTracker
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid


class OptimizerModelAttribute(Rule):
    """## What it does
    Flags `optimizer.model` where `optimizer` is an `nnx.Optimizer` (known the
    same way as for NNX103: bound to an `nnx.Optimizer(...)` call, a `self`
    attribute assigned one, or a function parameter every call site fills with
    one).

    ## Why is this bad?
    Flax 0.11 removed the attribute:
    `AttributeError: Optimizer does not have attribute 'model' since Flax 0.11.0.
    To keep the previous behavior, use nnx.ModelAndOptimizer instead of
    nnx.Optimizer.`

    ## Example
    ```python
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    logits = optimizer.model(x)
    ```

    ## Use instead
    ```python
    logits = model(x)
    ```

    ## Fix safety
    Safe where the model is determined (the expression the optimizer was built
    with, still bound to the same object here): `optimizer.model` was that very
    object. No fix otherwise, and none for an assignment to `optimizer.model`.
    """

    code = "NNX110"
    name = "optimizer-model-attribute"
    summary = "`nnx.Optimizer.model` was removed in Flax 0.11"
    fixable = "safe"
    triggers = (Needs(uses=("flax.nnx",), words=("model",), attributes=("model",)),)
    valid = (
        Valid("from flax import nnx\nopt = nnx.ModelAndOptimizer(model, tx)\ny = opt.model(x)\n"),
        Valid("from flax import nnx\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)\ny = model(x)\n"),
        Valid("from flax import nnx\nclass Trainer:\n    def __init__(self, model):\n        self.model = model\n"),
        # annotated nnx.Optimizer, but every call passes a ModelAndOptimizer subclass, which keeps .model
        Valid("from flax import nnx\n\nclass TrainState(nnx.ModelAndOptimizer):\n    pass\n\n"
              "def train_step(optimizer: nnx.Optimizer, x):\n    return optimizer.model(x)\n\n"
              "state = TrainState(model, tx)\nnnx.jit(train_step)(state, x)\n"),
    )
    invalid = (
        Invalid(
            "from flax import nnx\nopt = nnx.Optimizer(net, tx, wrt=nnx.Param)\nlogits = opt.model(x)\n",
            fixed="from flax import nnx\nopt = nnx.Optimizer(net, tx, wrt=nnx.Param)\nlogits = net(x)\n",
            message="removed",
        ),
        Invalid(
            "from flax import nnx\n\n@nnx.jit\ndef step(model, optimizer, batch):\n"
            "    return optimizer.model(batch)\n\nmodel = make()\n"
            "optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)\nstep(model, optimizer, batch)\n",
            fixed="from flax import nnx\n\n@nnx.jit\ndef step(model, optimizer, batch):\n"
                  "    return model(batch)\n\nmodel = make()\n"
                  "optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)\nstep(model, optimizer, batch)\n",
        ),
        Invalid("from flax import nnx\nopt = nnx.Optimizer(net, tx, wrt=nnx.Param)\nopt.model = other\n"),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.tracker = OptimizerTracker(context)
        self.assigned: set[int] = set()  # ``opt.model = ...`` targets: reported, never rewritten

    def visit_Assign(self, node: cst.Assign) -> None:
        self.tracker.observe_assign(node)
        self.assigned.update(id(target.target) for target in node.targets)

    def visit_Call(self, node: cst.Call) -> None:
        self.tracker.observe_call(node)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if node.attr.value == "model":
            self.tracker.use(node.value, node)

    def leave_Module(self, node: cst.Module) -> None:
        for use in self.tracker.resolve():
            fix = None
            if use.model is not None and id(use.node) not in self.assigned:
                fix = Fix("use the model the optimizer was built with", "safe", {use.node: use.model})
            self.report(use.node, "`optimizer.model` was removed from `nnx.Optimizer` in Flax 0.11 "
                                  "(AttributeError): use the model object itself", fix)
