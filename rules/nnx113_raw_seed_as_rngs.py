"""NNX113: an int seed or a raw JAX key passed as ``rngs=`` to a built-in layer."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.analysis import is_constant_seed
from nnxlint.flax_api import RNGS_REQUIRED_LAYERS
from nnxlint.objects import assigned_value
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid

# jax.random functions that return one key (what a Linen user passes where NNX wants Rngs).
KEY_FUNCTIONS = frozenset({"jax.random.key", "jax.random.PRNGKey", "jax.random.fold_in"})
# Layers that need an nnx.Rngs object at construction (Dropout checks its type).
LAYERS_TAKING_RNGS = RNGS_REQUIRED_LAYERS | {"Dropout"}


class RawSeedAsRngs(Rule):
    """## What it does
    Flags `rngs=0` or `rngs=jax.random.key(0)` (an int seed or a raw JAX key, also
    through a variable bound to one) passed to a built-in NNX layer.

    ## Why is this bad?
    NNX layers take an `nnx.Rngs` object and draw from its streams
    (`rngs.params()`); they do not accept a seed or a key. Construction fails:
    `AttributeError: 'int' object has no attribute 'params'` (`'PRNGKeyArray'
    object ...` for a key), and for `nnx.Dropout`: `TypeError: rngs must be a
    Rngs, RngStream or None, but got <class 'int'>.` (Measured on Flax 0.12.8.)
    Linen code passed keys to `init`, which is where the habit comes from.

    ## Example
    ```python
    layer = nnx.Linear(3, 4, rngs=0)
    ```

    ## Use instead
    ```python
    layer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    ```

    ## Fix safety
    Safe: the fix wraps the value in `nnx.Rngs(...)`, which accepts an int seed or
    a key and seeds the default stream, from which `params` and `dropout` draw.
    The code failed before, and the layer now gets the randomness the author
    passed.
    """

    code = "NNX113"
    name = "raw-seed-as-rngs"
    summary = "Int seed or raw JAX key passed as `rngs=` to an NNX layer: AttributeError"
    fixable = "safe"
    triggers = (Needs(words=("rngs",), refers=tuple(f"flax.nnx.{layer}" for layer in LAYERS_TAKING_RNGS),
                      imports_only=True),)
    valid = (
        Valid("from flax import nnx\nlayer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))\n"),
        # Dropout's call takes a raw key
        Valid("import jax\nfrom flax import nnx\ny = drop(x, rngs=jax.random.key(0))\n"),
        # a module of the file may accept a seed itself
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.linear = nnx.Linear(2, 2, rngs=nnx.Rngs(rngs))\n\nm = M(rngs=0)\n"),
        Valid("from flax import nnx\nlayer = nnx.Linear(3, 4, rngs=rngs)\n"),
    )
    invalid = (
        Invalid("from flax import nnx\nlayer = nnx.Linear(3, 4, rngs=0)\n",
                fixed="from flax import nnx\nlayer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))\n", message="AttributeError"),
        Invalid(
            "import jax\nfrom flax import nnx as fx\nkey = jax.random.PRNGKey(0)\n"
            "conv = fx.Conv(1, 8, (3, 3), rngs=key)\ndrop = fx.Dropout(0.1, rngs=jax.random.key(1))\n",
            fixed="import jax\nfrom flax import nnx as fx\nkey = jax.random.PRNGKey(0)\n"
                  "conv = fx.Conv(1, 8, (3, 3), rngs=fx.Rngs(key))\n"
                  "drop = fx.Dropout(0.1, rngs=fx.Rngs(jax.random.key(1)))\n",
            count=2,
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        layer = self.context.nnx_member(node.func)
        if layer not in LAYERS_TAKING_RNGS:
            return
        for arg in node.args:
            if arg.keyword is None or arg.keyword.value != "rngs":
                continue
            what = self._seed_or_key(arg.value)
            if what is None:
                continue
            rngs, imports = self.context.nnx_ref("Rngs")
            fix = Fix("wrap it in `nnx.Rngs(...)`", "safe", {arg.value: cst.Call(rngs, [cst.Arg(arg.value)])}, imports)
            self.report(arg.value, f"{what} passed as `rngs=` to `nnx.{layer}`: layers take an `nnx.Rngs` "
                                   "(AttributeError: ... has no attribute 'params'); use `nnx.Rngs(...)`", fix)

    def _seed_or_key(self, value: cst.BaseExpression) -> Optional[str]:
        if isinstance(value, cst.Name):
            binding = self.context.lookup(value.value)
            bound = assigned_value(binding.node if binding else None, value.value)
            return self._seed_or_key(bound) if bound is not None and not isinstance(bound, cst.Name) else None
        if is_constant_seed(value):
            return "an int seed"
        if isinstance(value, cst.Call) and self.context.resolve(value.func) in KEY_FUNCTIONS:
            return "a raw JAX key"
        return None
