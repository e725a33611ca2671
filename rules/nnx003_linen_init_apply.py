"""NNX003: Linen's functional init/apply on a module instance."""

from __future__ import annotations

import libcst as cst

from nnxlint.linen_usage import is_linen_instance
from nnxlint.rule import Invalid, Needs, Rule, Valid

_GUIDANCE = {
    "init": "NNX builds variables eagerly: `Model(..., rngs=nnx.Rngs(seed))` replaces `model.init(key, x)`",
    "init_with_output": "NNX builds variables eagerly: construct `Model(..., rngs=nnx.Rngs(seed))`, then call it",
    "apply": "NNX modules hold their state: call `model(x)` (`method=` becomes `model.method(x)`; "
             "`rngs=` and `mutable=` go away)",
}


class LinenInitApply(Rule):
    """## What it does
    Flags `init`, `init_with_output` and `apply` called on a Linen module instance
    (a Linen layer or a class of the file that subclasses `flax.linen.Module`,
    constructed in place or bound to a name in the same scope).

    ## Why is this bad?
    `init`/`apply` is Linen's functional interface: variables live in dicts that
    the program threads through every call. In NNX the module owns its variables:
    it is built eagerly (`Model(..., rngs=nnx.Rngs(0))`, which also needs the
    input sizes Linen inferred from the example input) and called directly.

    ## Example
    ```python
    model = MLP(hidden=32)
    params = model.init(jax.random.key(0), jnp.ones((1, 16)))["params"]
    logits = model.apply({"params": params}, x)
    ```

    ## Use instead
    ```python
    model = MLP(16, hidden=32, rngs=nnx.Rngs(0))
    logits = model(x)
    ```

    ## Fix safety
    No fix of its own: `init` and `apply` change together with the model class and
    the training loop, so NNX002's unsafe whole-file conversion rewrites them.
    """

    code = "NNX003"
    name = "linen-init-apply"
    summary = "Linen `init`/`apply` on a module instance"
    triggers = (Needs(uses=("flax.linen",), words=tuple(_GUIDANCE), attributes=tuple(_GUIDANCE)),)
    valid = (
        Valid("from flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\ny = model(x)\n"),
        Valid("import flax.linen as nn\nimport optax\ntx = optax.adam(1e-3)\nstate = tx.init(params)\n"),
        Valid("import flax.linen as nn\nclass Thing:\n    pass\nThing().apply(x)\n"),
    )
    invalid = (
        Invalid("import flax.linen as nn\nmodel = nn.Dense(3)\nvariables = model.init(key, x)\n"
                "y = model.apply(variables, x)\n", count=2, message="NNX"),
        Invalid("import flax.linen as nn\n\nclass M(nn.Module):\n    pass\n\ny = M().apply(v, x, method='encode')\n",
                message="model(x)"),
        Invalid("from flax import linen\n\nclass M(linen.Module):\n    pass\n\ndef f(key, x):\n"
                "    m = M()\n    return m.init_with_output(key, x)\n"),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in _GUIDANCE \
                and is_linen_instance(self.context, func.value):
            self.report(node, f"Linen `{func.attr.value}`: {_GUIDANCE[func.attr.value]}")
