"""NNX005: Linen mutable variable collections (apply(mutable=...), self.variable, self.sow)."""

from __future__ import annotations

import libcst as cst

from nnxlint.linen_usage import imports_linen, is_linen_class, linen_receiver
from nnxlint.rule import Invalid, Needs, Rule, Valid


class LinenMutableCollections(Rule):
    """## What it does
    Flags Linen's mutable variable collections: `apply(..., mutable=...)` or
    `state.apply_fn(..., mutable=...)` (whose
    result is the pair `(output, updated_collections)`), and, inside a Linen Module
    class, `self.variable(collection, name, ...)` and `self.sow(collection, name, value)`.

    ## Why is this bad?
    In Linen, state other than parameters lives in named collections that the
    caller must mark mutable and thread back by hand (`state.replace(batch_stats=
    updates['batch_stats'])`). In NNX it is a typed Variable in the module:
    `batch_stats` becomes `nnx.BatchStat` (updated in place under `nnx.jit`, with
    `model.train()` / `model.eval()` choosing whether BatchNorm updates it), a
    custom collection becomes a subclass of `nnx.Variable`, and `sow` becomes
    `self.sow(nnx.Intermediate, ...)` read back with `nnx.capture`.

    ## Example
    ```python
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    state = state.replace(batch_stats=updates["batch_stats"])
    ```

    ## Use instead
    ```python
    model.train()  # BatchNorm updates its nnx.BatchStat statistics in place
    logits = model(x)
    ```

    ## Fix safety
    No fix of its own: NNX002's unsafe whole-file conversion handles
    `mutable=[...]` with BatchNorm and with `self.variable` (an `nnx.BatchStat`,
    or an `nnx.Variable` subclass for a collection of the user's own, when its
    writes sit under `if not self.is_initializing():`); `self.sow` needs a
    manual conversion (the NNX002 finding says so).
    """

    code = "NNX005"
    name = "linen-mutable-collections"
    summary = "Linen mutable variable collections"
    triggers = (Needs(words=("mutable",), attributes=("apply", "apply_fn")),
                Needs(uses=("flax.linen",), words=("variable", "sow"), attributes=("variable", "sow")))
    valid = (
        Valid("from flax import nnx\nclass M(nnx.Module):\n    def __call__(self, x):\n"
              "        self.sow(nnx.Intermediate, 'h', x)\n        return x\n"),
        Valid("import flax.linen as nn\ny = model.apply(variables, x)\n"),
        Valid("class Plain:\n    def f(self):\n        return self.variable('a', 'b')\n"),
        # not Linen: an nnx.bridge module, a class with its own apply, a file without Linen
        Valid("from flax import nnx\n\nclass Bridge(nnx.bridge.Module):\n    pass\n\n"
              "y, updates = Bridge().apply(v, x, mutable=True)\n"),
        Valid("import flax.linen as nn\n\nclass Ensemble:\n    def apply(self, v, x, mutable):\n        return x\n\n"
              "model = Ensemble()\ny = model.apply(v, x, mutable=['stats'])\n"),
        Valid("import jax\ny = thing.apply(v, x, mutable=['batch_stats'])\n"),
    )
    invalid = (
        Invalid("import flax.linen as nn\nmodel = nn.BatchNorm()\n"
                "y, updates = model.apply(v, x, mutable=['batch_stats'])\n", message="nnx.BatchStat"),
        Invalid("import flax.linen as nn\nimport jax.numpy as jnp\n\nclass Counter(nn.Module):\n"
                "    @nn.compact\n    def __call__(self, x):\n"
                "        count = self.variable('counter', 'count', lambda: jnp.zeros((), jnp.int32))\n"
                "        count.value += 1\n        return x\n", message="nnx.Variable"),
        Invalid("import flax.linen as nn\n\nclass M(nn.Module):\n    @nn.compact\n    def __call__(self, x):\n"
                "        self.sow('intermediates', 'h', x)\n        return x\n", message="nnx.Intermediate"),
        Invalid("import flax.linen as nn\ny, updates = state.apply_fn(v, x, mutable=['batch_stats'])\n"),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute):
            return
        if func.attr.value in ("apply", "apply_fn") and any(
                arg.keyword is not None and arg.keyword.value == "mutable" for arg in node.args) \
                and self._linen_apply(func):
            self.report(node, "`apply(..., mutable=...)` threads Linen collections by hand: NNX keeps them "
                              "in the module (`nnx.BatchStat`, updated in place; `model.train()`/`model.eval()`)")
        elif isinstance(func.value, cst.Name) and func.value.value == "self" and self._in_linen_class():
            if func.attr.value == "variable":
                self.report(node, "`self.variable`: in NNX, store a Variable attribute in `__init__` "
                                  "(`nnx.BatchStat` for batch_stats, a subclass of `nnx.Variable` otherwise)")
            elif func.attr.value == "sow":
                self.report(node, "`self.sow(collection, ...)`: in NNX, `self.sow(nnx.Intermediate, ...)` "
                                  "read back with `nnx.capture`")

    def _linen_apply(self, func: cst.Attribute) -> bool:
        """``apply`` on a Linen model, or on an unknown receiver in a file that uses Linen
        (not ``nnx.bridge`` modules nor classes with an ``apply`` of their own);
        ``state.apply_fn`` is TrainState's Linen apply."""
        if func.attr.value == "apply_fn":
            return True
        receiver = linen_receiver(self.context, func.value)
        return receiver is True or (receiver is None and imports_linen(self.context))

    def _in_linen_class(self) -> bool:
        enclosing = self.context.enclosing_class()
        return enclosing is not None and any(
            self.context.resolve(base.value) == "flax.linen.Module" or is_linen_class(self.context, base.value)
            for base in enclosing.bases)
