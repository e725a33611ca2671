"""NNX004: flax.training.train_state.TrainState."""

from __future__ import annotations

import libcst as cst

from nnxlint.rule import Invalid, Needs, Rule, Valid

TRAIN_STATE = "flax.training.train_state.TrainState"


class LinenTrainState(Rule):
    """## What it does
    Flags every use of `flax.training.train_state.TrainState`: `TrainState.create(...)`,
    a subclass of it, or the name passed around.

    ## Why is this bad?
    `TrainState` bundles Linen's `apply_fn`, the params dict and the optax state so
    that a jitted step can return a new one. With NNX the model owns its variables
    and `nnx.Optimizer(model, tx, wrt=nnx.Param)` owns the optax state;
    `optimizer.update(model, grads)` updates both in place under `nnx.jit`, and the
    step returns only what it computes (the loss). A `TrainState` subclass that
    carries `batch_stats` is not needed at all: BatchNorm statistics live in the
    model as `nnx.BatchStat`.

    ## Example
    ```python
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-3))
    state = state.apply_gradients(grads=grads)
    ```

    ## Use instead
    ```python
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    optimizer.update(model, grads)
    ```

    ## Fix safety
    No fix of its own: NNX002's unsafe whole-file conversion rewrites the train
    state together with the model and the jitted step.
    """

    code = "NNX004"
    name = "linen-train-state"
    summary = "Flax `TrainState` (Linen training state)"
    triggers = (Needs(refers=(TRAIN_STATE,), imports_only=True),)
    valid = (
        Valid("from flax import nnx\noptimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)\n"),
        Valid("from mylib import TrainState\nstate = TrainState.create()\n"),
        Valid("from flax.nnx import TrainState\n"),
    )
    invalid = (
        Invalid("from flax.training import train_state\n"
                "state = train_state.TrainState.create(apply_fn=f, params=p, tx=tx)\n", message="nnx.Optimizer"),
        Invalid("from flax.training.train_state import TrainState\n\nclass State(TrainState):\n"
                "    batch_stats: dict\n", message="BatchStat"),
        Invalid("import flax.training.train_state as ts\nstate = ts.TrainState.create(apply_fn=f, params=p, tx=tx)\n"),
    )

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        if any(self.context.resolve(base.value) == TRAIN_STATE for base in node.bases):
            self.report(node, f"`TrainState` subclass `{node.name.value}`: NNX keeps batch statistics in the "
                              "model (`nnx.BatchStat`) and optimizer state in `nnx.Optimizer`")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if self.context.resolve(node) == TRAIN_STATE:
            self._report_use(node)

    def visit_Name(self, node: cst.Name) -> None:
        if self.context.resolve(node) == TRAIN_STATE:
            self._report_use(node)

    def _report_use(self, node: cst.CSTNode) -> None:
        if not self._import_depth and not self._in_class_bases(node):
            self.report(node, "Flax `TrainState`: use `nnx.Optimizer(model, tx, wrt=nnx.Param)` and "
                              "`optimizer.update(model, grads)` under `nnx.jit`")

    def __init__(self, context) -> None:
        super().__init__(context)
        self._import_depth = 0  # names inside import statements are not uses

    def visit_Import(self, node: cst.Import) -> None:
        self._import_depth += 1

    def leave_Import(self, node: cst.Import) -> None:
        self._import_depth -= 1

    visit_ImportFrom, leave_ImportFrom = visit_Import, leave_Import

    def _in_class_bases(self, node: cst.CSTNode) -> bool:
        enclosing = self.context.enclosing_class()
        return enclosing is not None and any(base.value is node for base in enclosing.bases)
