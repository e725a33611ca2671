"""NNX006: Linen lifted transforms (nn.scan, nn.vmap, nn.remat, nn.jit, ...)."""

from __future__ import annotations

import libcst as cst

from nnxlint.linen_usage import LINEN_TRANSFORMS, linen_transform
from nnxlint.rule import Invalid, Needs, Rule, Valid


class LinenTransform(Rule):
    """## What it does
    Flags every use of Linen's lifted transforms and scope tools: `nn.scan`,
    `nn.vmap`, `nn.remat`/`nn.checkpoint`, `nn.jit`, `nn.cond`, `nn.switch`,
    `nn.while_loop`, `nn.map_variables`, `nn.share_scope`, `nn.custom_vjp`,
    `nn.vjp`/`nn.jvp`, `nn.grad`/`nn.value_and_grad`, `nn.named_call`, ...

    ## Why is this bad?
    Lifted transforms apply JAX transforms to Linen modules by lifting over their
    variable collections (`variable_axes`, `variable_broadcast`, `split_rngs`).
    NNX has its own transforms that take modules as arguments: `nnx.scan`,
    `nnx.vmap` (with `nnx.split_rngs` or `rngs.split` for per-layer keys),
    `nnx.remat`, `nnx.jit`, `nnx.cond`, `nnx.while_loop`, `nnx.fori_loop`. The
    Linen -> NNX guide shows the pairs: a scanned RNN cell becomes `nnx.scan` with
    `nnx.Carry`; a stack of layers made with `nn.scan(..., variable_axes={'params': 0})`
    becomes layers created under `nnx.vmap` and applied with `nnx.scan`.

    ## Example
    ```python
    ScanBlocks = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=4)
    ```

    ## Use instead
    ```python
    @nnx.split_rngs(splits=4)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create_block(rngs: nnx.Rngs):
        return Block(rngs=rngs)

    self.blocks = create_block(rngs)
    ```

    ## Fix safety
    No fix of its own: the lifting arguments (which collections are split,
    broadcast or carried) decide the NNX structure. NNX002's conversion converts
    the layer stack `nn.scan(Block)` / `nn.scan(nn.remat(Block))` with
    `variable_axes={'params': 0}`, `split_rngs={'params': True}` and `length=`
    into the form above (applied with `nnx.scan`, and `nnx.remat`), the stacked
    parameters loading as they are, and `nn.remat(Block)` into `nnx.remat` of the
    block's `__call__`; any other lifted transform leaves the class without a fix.
    """

    code = "NNX006"
    name = "linen-transform"
    summary = "Linen lifted transform"
    triggers = (Needs(names=tuple(LINEN_TRANSFORMS), refers=("flax.linen",), imports_only=True),)
    valid = (
        Valid("from flax import nnx\nf = nnx.scan(step)\n"),
        Valid("import jax\nimport flax.linen as nn\nf = jax.vmap(g)\n"),
        Valid("import flax.linen as nn\ny = nn.relu(x)\n"),
    )
    invalid = (
        Invalid("import flax.linen as nn\nScanned = nn.scan(Block, variable_axes={'params': 0}, length=4)\n",
                message="nnx.scan"),
        Invalid("from flax import linen\nRematBlock = linen.remat(Block)\n", message="nnx.remat"),
        Invalid("from flax.linen import vmap\nV = vmap(Block, variable_axes={'params': 0})\n"),
        Invalid("import flax.linen as nn\n\n@nn.jit\nclass Fast(nn.Module):\n    pass\n", message="nnx.jit"),
    )

    def visit_Call(self, node: cst.Call) -> None:
        self._check(node.func, node)

    def visit_Decorator(self, node: cst.Decorator) -> None:
        if not isinstance(node.decorator, cst.Call):
            self._check(node.decorator, node)

    def _check(self, func: cst.BaseExpression, where: cst.CSTNode) -> None:
        transform = linen_transform(self.context, func)
        if transform is not None:
            self.report(where, f"Linen lifted transform `{transform}`: use {LINEN_TRANSFORMS[transform]}; "
                               "NNX002's fix converts `nn.scan` layer stacks and `nn.remat` of a class")
