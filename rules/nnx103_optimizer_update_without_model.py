"""NNX103: one-argument update() on an nnx.Optimizer."""

from __future__ import annotations

import libcst as cst

from nnxlint.edits import has_double_star, has_keyword, with_first_argument
from nnxlint.objects import OptimizerTracker
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid

_TRAIN_STEP = """\
from flax import nnx
import optax

@nnx.jit
def train_step(model, optimizer, x, y):
    grads = nnx.grad(lambda m: ((m(x) - y) ** 2).mean())(model)
    optimizer.update({model_arg}grads)

model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
train_step(model, optimizer, x, y)
"""


class OptimizerUpdateWithoutModel(Rule):
    """## What it does
    Flags `optimizer.update(grads)` on an `nnx.Optimizer`: the call form of Flax
    0.10 and earlier.

    An object is known to be an `nnx.Optimizer` when it is bound to an
    `nnx.Optimizer(...)` call (a variable, or a `self` attribute assigned in the
    class), annotated `nnx.Optimizer`, or a parameter of a function that this file
    calls with such an object (the `train_step(model, optimizer, ...)` form).
    `nnx.ModelAndOptimizer`, optax's `tx.update(grads, state)` and other classes'
    `update` methods are not flagged.

    ## Why is this bad?
    Since Flax 0.11 `update` takes the model as well; the old form fails with
    `TypeError: Missing required argument `grads`. As of Flax 0.11.0 update
    requires both (model, grads) arguments to be passed. If you want to keep the
    previous use nnx.ModelAndOptimizer instead of nnx.Optimizer.`

    ## Example
    ```python
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    ...
    optimizer.update(grads)
    ```

    ## Use instead
    ```python
    optimizer.update(model, grads)
    ```

    ## Fix safety
    Safe where the model is determined: the model passed is the expression the
    optimizer was built with (`self.model`, the same variable), or, in a function
    called as `train_step(model, optimizer, ...)`, the function's own parameter
    that every call site fills with the model the optimizer wraps. When the model
    cannot be determined, no fix is offered.
    """

    code = "NNX103"
    name = "optimizer-update-without-model"
    summary = "`nnx.Optimizer.update(grads)` without the model (Flax >= 0.11 needs `update(model, grads)`)"
    fixable = "safe"
    triggers = (Needs(uses=("flax.nnx",), words=("update",), attributes=("update",)),)
    valid = (
        Valid(_TRAIN_STEP.format(model_arg="model, ")),
        Valid("import optax\ntx = optax.adam(1e-3)\nupdates, state = tx.update(grads, state)\n"),
        Valid("from flax import nnx\nconfig = {}\nconfig.update(other)\n"),
        Valid("from flax import nnx\nopt = nnx.ModelAndOptimizer(model, tx)\nopt.update(grads)\n"),
        Valid("from flax import nnx\nclass Tracker:\n    def update(self, x): ...\nt = Tracker()\nt.update(1)\n"),
        Valid("from flax import nnx\ndef step(opt, grads):\n    opt.update(grads)\nstep(Tracker(), g)\n"),
        Valid("from flax import nnx\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nopt.update(model=model, grads=g)\n"),
        Valid("import functools\nfrom flax import nnx\nstep = functools.partial(step)\nstep(opt)\n"),
        # annotated nnx.Optimizer, but given an nnx.ModelAndOptimizer (a subclass that keeps update(grads))
        Valid("from flax import nnx\n\ndef train_step(optimizer: nnx.Optimizer, grads):\n    optimizer.update(grads)\n\n"
              "state = nnx.ModelAndOptimizer(model, tx)\nnnx.jit(train_step)(state, grads)\n"),
        Valid("from flax import nnx\n\nclass TrainState(nnx.ModelAndOptimizer):\n    pass\n\n"
              "def train_step(optimizer: nnx.Optimizer, grads):\n    optimizer.update(grads)\n\n"
              "state = TrainState(model, tx)\njit_decorator(train_step)(state, grads)\n"),
    )
    invalid = (
        Invalid(_TRAIN_STEP.format(model_arg=""), fixed=_TRAIN_STEP.format(model_arg="model, "),
                message="update(model, grads)"),
        Invalid(
            "from flax import nnx\nopt = nnx.Optimizer(net, tx, wrt=nnx.Param)\nopt.update(grads)  # step\n",
            fixed="from flax import nnx\nopt = nnx.Optimizer(net, tx, wrt=nnx.Param)\nopt.update(net, grads)  # step\n",
        ),
        Invalid(
            "from flax import nnx\n\nclass Trainer:\n    def step(self, grads):\n        self.optimizer.update(grads)\n\n"
            "    def __init__(self, model, tx):\n        self.model = model\n"
            "        self.optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)\n",
            fixed="from flax import nnx\n\nclass Trainer:\n    def step(self, grads):\n"
                  "        self.optimizer.update(self.model, grads)\n\n"
                  "    def __init__(self, model, tx):\n        self.model = model\n"
                  "        self.optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)\n",
        ),
        Invalid(  # the model variable is rebound after the optimizer was built: no fix
            "from flax import nnx\nmodel = make()\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nmodel = other\n"
            "opt.update(grads)\n",
        ),
        Invalid(  # annotated, but the model is unknown: reported without a fix
            "from flax import nnx\ndef apply(opt: nnx.Optimizer, grads):\n    opt.update(grads)\n",
        ),
        Invalid(
            "from flax import nnx\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nopt.update(grads=g)\n",
            fixed="from flax import nnx\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)\nopt.update(model, grads=g)\n",
        ),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.tracker = OptimizerTracker(context)

    def visit_Assign(self, node: cst.Assign) -> None:
        self.tracker.observe_assign(node)

    def visit_Call(self, node: cst.Call) -> None:
        self.tracker.observe_call(node)
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "update" and _is_old_form(node):
            self.tracker.use(func.value, node)

    def leave_Module(self, node: cst.Module) -> None:
        for use in self.tracker.resolve():
            fix = None
            if use.model is not None:
                fix = Fix(f"pass the model: `update({cst.Module([]).code_for_node(use.model)}, grads)`",
                          "safe", {use.node: with_first_argument(use.node, use.model)})
            self.report(use.node, "one-argument `update` on an `nnx.Optimizer`: since Flax 0.11 call "
                                  "`optimizer.update(model, grads)` (the old form raises TypeError)", fix)


def _is_old_form(call: cst.Call) -> bool:
    """``update(grads)`` / ``update(grads=g)`` / ``update(grads, value=loss)``: no model."""
    if has_double_star(call) or has_keyword(call, "model"):
        return False
    positional = [arg for arg in call.args if arg.keyword is None]
    if any(arg.star for arg in positional):
        return False
    grads_keyword = has_keyword(call, "grads")
    return (len(positional) == 1 and not grads_keyword) or (not positional and grads_keyword)
