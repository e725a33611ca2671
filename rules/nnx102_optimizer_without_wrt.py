"""NNX102: nnx.Optimizer(...) without wrt."""

from __future__ import annotations

import libcst as cst

from nnxlint.edits import has_double_star, has_keyword, with_keyword
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid


class OptimizerWithoutWrt(Rule):
    """## What it does
    Flags `nnx.Optimizer(model, tx)` calls that do not pass `wrt`.

    ## Why is this bad?
    Since Flax 0.11 `wrt` is a required keyword-only argument; the call fails with
    `TypeError: Missing required argument `wrt`. As of Flax 0.11.0 the `wrt`
    argument is required, if you want to keep the previous use
    nnx.ModelAndOptimizer instead of nnx.Optimizer.` Code written for Flax 0.10,
    where `wrt` defaulted to `nnx.Param`, stops working.

    ## Example
    ```python
    optimizer = nnx.Optimizer(model, optax.adam(1e-3))
    ```

    ## Use instead
    ```python
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    ```

    ## Fix safety
    Safe: `wrt=nnx.Param` is exactly what Flax 0.10 used when `wrt` was left out,
    so the optimizer updates the same variables as before. (`nnx.ModelAndOptimizer`,
    the compatibility class, still defaults `wrt` and is not flagged.)
    """

    code = "NNX102"
    name = "optimizer-without-wrt"
    summary = "`nnx.Optimizer` without the required `wrt` argument"
    fixable = "safe"
    triggers = (Needs(names=("Optimizer",), refers=("flax.nnx.Optimizer",), imports_only=True),)
    valid = (
        Valid("from flax import nnx\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)\n"),
        Valid("from flax import nnx\nopt = nnx.ModelAndOptimizer(model, tx)\n"),
        Valid("from flax import nnx\nopt = nnx.Optimizer(model, tx, **options)\n"),
        Valid("import optax\nclass Optimizer: ...\nopt = Optimizer(model, tx)\n"),
        Valid("from flax import nnx\nfrom mylib import Optimizer\nopt = Optimizer(model, tx)\n"),
    )
    invalid = (
        Invalid(
            "from flax import nnx\nimport optax\n\noptimizer = nnx.Optimizer(model, optax.adam(1e-3))  # keep\n",
            fixed="from flax import nnx\nimport optax\n\n"
                  "optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)  # keep\n",
            message="wrt",
        ),
        Invalid(
            "from flax.nnx import Optimizer\nopt = Optimizer(\n    model,\n    tx,\n)\n",
            fixed="from flax.nnx import Optimizer\nfrom flax import nnx\nopt = Optimizer(\n    model,\n    tx, wrt=nnx.Param,\n)\n",
        ),
        Invalid(
            "import flax\nopt = flax.nnx.Optimizer(model, tx)\n",
            fixed="import flax\nopt = flax.nnx.Optimizer(model, tx, wrt=flax.nnx.Param)\n",
        ),
        Invalid(
            "from flax import nnx as fx\nopt = fx.Optimizer(model, tx=tx)\n",
            fixed="from flax import nnx as fx\nopt = fx.Optimizer(model, tx=tx, wrt=fx.Param)\n",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        if self.context.nnx_member(node.func) != "Optimizer":
            return
        if has_double_star(node) or has_keyword(node, "wrt"):
            return
        param, imports = self.context.nnx_ref("Param")
        fix = Fix("add `wrt=nnx.Param` (what Flax 0.10 defaulted to)", "safe",
                  {node: with_keyword(node, "wrt", param)}, imports)
        self.report(node, "`nnx.Optimizer` without `wrt`: required since Flax 0.11 (TypeError); "
                          "pass `wrt=nnx.Param`", fix)
