"""NNX115: Linen's ``init``/``apply`` called on an NNX module."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.analysis import MODULE, Kind, kind_of
from nnxlint.flax_api import FLAX_NNX, LINEN_VARIABLE_HOLDERS
from nnxlint.objects import top_level_classes
from nnxlint.rule import Invalid, Needs, Rule, Valid

# Linen's functional interface: methods of flax.linen.Module that no nnx.Module has.
LINEN_METHODS = ("init", "init_with_output", "apply", "bind")


class LinenApiOnNnxModule(Rule):
    """## What it does
    Flags `init`, `init_with_output`, `apply` and `bind` called on an NNX module: a
    built-in layer (`nnx.Linear(...)`), or an instance of an `nnx.Module` class of
    the file or of another file of the run, unless that class defines the method.

    ## Why is this bad?
    These are Linen's functional interface; `nnx.Module` has none of them, so the
    call fails: `AttributeError: 'MLP' object has no attribute 'init'`. It is what a
    half-done migration leaves behind: the model class was converted to NNX
    (by hand, or by NNX002's conversion of a models file) while a training script
    that is not converted yet still calls `model.init(key, x)` and
    `model.apply(variables, x)`. Once the class is NNX, the Linen rules no longer
    see these calls as Linen, so this rule is what keeps them visible.

    ## Example
    ```python
    model = MLP(16, 32, rngs=nnx.Rngs(0))  # MLP is an nnx.Module now
    variables = model.init(jax.random.key(0), x)
    y = model.apply(variables, x)
    ```

    ## Use instead
    ```python
    model = MLP(16, 32, rngs=nnx.Rngs(0))  # its variables exist already
    y = model(x)
    ```

    ## Fix safety
    No fix: the surrounding training code (variables dicts, `TrainState`,
    `mutable=`) must change with it; NNX002's conversion rewrites training code
    together with the models it trains.
    """

    code = "NNX115"
    name = "linen-api-on-nnx-module"
    summary = "Linen `init`/`apply` called on an NNX module: AttributeError"
    triggers = (Needs(uses=("flax.nnx",), words=LINEN_METHODS, attributes=LINEN_METHODS),)
    valid = (
        Valid("import flax.linen as nn\nmodel = nn.Dense(3)\nvariables = model.init(key, x)\n"),
        # ``bridge.ToNNX`` has no ``apply`` of its own: its ``__getattr__`` forwards the Linen class's
        Valid("import flax.linen as nn\nfrom flax import nnx\n"
              "model = nnx.bridge.ToNNX(nn.Dense(3), rngs=nnx.Rngs(0))\ny = model.apply(variables, x)\n"),
        # a class with its own apply (or inheriting one from a class of the file)
        Valid("from flax import nnx\n\nclass Net(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n\n    def apply(self, x):\n"
              "        return self.linear(x)\n\nclass Wide(Net):\n    pass\n\ny = Wide(nnx.Rngs(0)).apply(x)\n"),
        Valid("import optax\nfrom flax import nnx\ntx = optax.adam(1e-3)\nopt_state = tx.init(params)\n"),
        # a base the run does not show may define it
        Valid("from flax import nnx\nfrom somewhere import Base\n\nclass Net(Base, nnx.Module):\n    pass\n\n"
              "v = Net().init(key, x)\n"),
    )
    invalid = (
        Invalid("import jax\nfrom flax import nnx\nlayer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
                "variables = layer.init(jax.random.key(0), x)\ny = layer.apply(variables, x)\n",
                count=2, message="AttributeError"),
        Invalid("from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, rngs):\n"
                "        self.linear = nnx.Linear(4, 2, rngs=rngs)\n\n    def __call__(self, x):\n"
                "        return self.linear(x)\n\ndef train(key, x):\n    model = MLP(rngs=nnx.Rngs(0))\n"
                "    params = model.init(key, x)['params']\n    return params\n",
                message="`MLP` is an NNX module"),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value in LINEN_METHODS):
            return
        method = func.attr.value
        kind = kind_of(self.context, func.value)
        if kind is None or kind.category != MODULE:
            return
        name = self._class_without(kind, method)
        if name is not None:
            self.report(node, f"`{name}` is an NNX module: it has no `{method}` (AttributeError); "
                              "its variables exist once it is built, call it directly: `model(x)`")

    def _class_without(self, kind: Kind, method: str) -> Optional[str]:
        """The module's class name when that class surely lacks ``method``, else None."""
        if kind.nnx_class in LINEN_VARIABLE_HOLDERS:  # ``bridge.ToNNX`` forwards the Linen class's methods
            return None
        if kind.nnx_class is not None:
            return f"nnx.{kind.nnx_class}"
        if kind.local_class is not None:
            classes = top_level_classes(self.context)
            node = classes.get(kind.local_class)
            return kind.local_class if node is not None and not self._local_defines(node, method, classes) else None
        if kind.project_class is not None and self.context.project is not None:
            info = self.context.project.class_info(kind.project_class)
            if info is not None and not self._project_defines(info, method):
                return kind.project_class.rpartition(".")[2]
        return None

    def _local_defines(self, node: cst.ClassDef, method: str, classes: dict[str, cst.ClassDef]) -> bool:
        """Whether the class or a base may define ``method`` (an unknown base may)."""
        for statement in node.body.body:
            if isinstance(statement, cst.FunctionDef) and statement.name.value == method:
                return True
            if isinstance(statement, cst.SimpleStatementLine) and any(
                    isinstance(small, (cst.Assign, cst.AnnAssign)) and method in _assigned_names(small)
                    for small in statement.body):
                return True
        for base in node.bases:
            if (self.context.resolve(base.value) or "").startswith(FLAX_NNX + "."):
                continue
            if isinstance(base.value, cst.Name) and base.value.value in classes:
                if self._local_defines(classes[base.value.value], method, classes):
                    return True
                continue
            info = self.context.project_class(base.value)
            if info is None or self._project_defines(info, method):
                return True
        return False

    def _project_defines(self, info, method: str) -> bool:
        if method in info.facts["methods"]:
            return True
        project = self.context.project
        known = project.index.bases(info, project.used)
        nnx_bases = [base for base in info.facts["bases"] if base and base.startswith(FLAX_NNX + ".")]
        if len(known) + len(nnx_bases) < len(info.facts["bases"]):
            return True  # a base the run does not show
        return any(self._project_defines(base, method) for base in known)


def _assigned_names(statement: cst.BaseSmallStatement) -> set[str]:
    targets = [target.target for target in statement.targets] if isinstance(statement, cst.Assign) \
        else [statement.target]
    return {target.value for target in targets if isinstance(target, cst.Name)}
