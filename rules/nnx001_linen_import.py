"""NNX001: any use of flax.linen."""

from __future__ import annotations

import libcst as cst

from nnxlint.flax_api import is_linen
from nnxlint.names import dotted_name
from nnxlint.rule import Invalid, Needs, Rule, Valid


class LinenUsage(Rule):
    """## What it does
    Flags every import of `flax.linen` (in any form: `import flax.linen as nn`,
    `from flax import linen`, `from flax.linen import Dense`, submodules such as
    `flax.linen.initializers`) and every `flax.linen` attribute access through a
    plain `import flax`.

    ## Why is this bad?
    Linen is Flax's legacy API. Its modules keep state outside the object
    (`init`/`apply`, variable collections) and infer shapes lazily; Flax's own
    documentation and examples have moved to NNX, and new features land there.
    During a migration, each remaining use of `flax.linen` is a piece of work
    still to do; this rule counts them.

    ## Example
    ```python
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(10)(x)
    ```

    ## Use instead
    ```python
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, din: int, *, rngs: nnx.Rngs):
            self.linear = nnx.Linear(din, 10, rngs=rngs)

        def __call__(self, x):
            return self.linear(x)
    ```

    ## Fix safety
    No fix for the import itself: it goes away when the Linen code that uses it
    is converted (see NNX002).
    """

    code = "NNX001"
    name = "linen-usage"
    summary = "Use of the legacy Flax Linen API"
    triggers = (Needs(uses=("flax.linen",), words=("linen",)),)
    valid = (
        Valid("from flax import nnx\nmodel = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"),
        Valid("import flax\nx = flax.nnx.Linear\n"),
        Valid("from mylib import linen\n"),
        Valid("from . import linen\n"),
        Valid("import flax\nflax = object()\nflax.linen.Dense\n"),
    )
    invalid = (
        Invalid("import flax.linen as nn\n", message="flax.linen"),
        Invalid("from flax import linen\n"),
        Invalid("from flax import linen as fl, nnx\n"),
        Invalid("from flax.linen import Dense\n"),
        Invalid("from flax.linen.initializers import zeros\n"),
        Invalid("import flax.linen\n"),
        Invalid("import flax\nlayer = flax.linen.Dense(3)\n"),
        Invalid("import flax\ninit = flax.linen.initializers.zeros\n"),
        Invalid("import flax\nclass M(flax.linen.Module):\n    pass\n"),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self._import_depth = 0  # dotted names inside import statements are not uses

    def leave_Import(self, node: cst.Import) -> None:
        self._import_depth -= 1

    def leave_ImportFrom(self, node: cst.ImportFrom) -> None:
        self._import_depth -= 1

    def visit_Import(self, node: cst.Import) -> None:
        self._import_depth += 1
        if any(is_linen(dotted_name(alias.name)) for alias in node.names):
            self.report(node, "`flax.linen` imported: Linen is the legacy API, migrate to `flax.nnx`")

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self._import_depth += 1
        if node.relative or node.module is None:
            return
        module = dotted_name(node.module)
        names = () if isinstance(node.names, cst.ImportStar) else node.names
        if is_linen(module) or (module == "flax" and any(dotted_name(a.name) == "linen" for a in names)):
            self.report(node, "`flax.linen` imported: Linen is the legacy API, migrate to `flax.nnx`")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        # only the `flax.linen` link itself, once per chain (not `flax.linen.Dense` again)
        if self._import_depth == 0 and node.attr.value == "linen" and isinstance(node.value, cst.Name):
            if self.context.resolve(node) == "flax.linen":
                self.report(node, "`flax.linen` used: Linen is the legacy API, migrate to `flax.nnx`")
