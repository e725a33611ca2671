"""NNX112: nnx.split with Param-only filters on a model that holds other state."""

from __future__ import annotations

import libcst as cst

from nnxlint.analysis import MODULE, RNGS, VARIABLE, Kind, file_index, kind_of
from nnxlint.rule import Invalid, Needs, Rule, Valid


class NonExhaustiveSplit(Rule):
    """## What it does
    Flags `nnx.split(model, nnx.Param)` (filters that select parameters only, no
    `...`) when the file shows that the model holds state besides its parameters:
    a `BatchNorm` (statistics), a `Dropout` built with `rngs` (an RNG key and
    counter), an `nnx.Rngs`, or a Variable other than `nnx.Param`.

    ## Why is this bad?
    `nnx.split` must account for every piece of state. With state left over it
    raises at once: `ValueError: Non-exhaustive filters, got a non-empty remainder:
    ...`, and a `graphdef, params` pair taken some other way cannot be merged back
    (`nnx.merge(graphdef, params)` raises `ValueError: Incorrect number of leaves`).
    A model of `Linear` layers only splits fine, and so does one whose `Dropout`
    was built without `rngs` (it holds no state), which is why the pattern survives
    until a BatchNorm or a Dropout with its own stream is added. (Measured on Flax
    0.12.8.) Filter lists that name other types besides `nnx.Param` are not
    checked: whether they cover the rest depends on the types.

    ## Example
    ```python
    graphdef, params = nnx.split(model, nnx.Param)
    model = nnx.merge(graphdef, params)
    ```

    ## Use instead
    ```python
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model = nnx.merge(graphdef, params, rest)
    ```
    (`nnx.state(model, nnx.Param)` when only the parameters are needed.)

    ## Fix safety
    No fix: adding `...` adds a value to unpack and to pass to every `nnx.merge`
    of the result, which may be far from the split.
    """

    code = "NNX112"
    name = "non-exhaustive-split"
    summary = "`nnx.split(model, nnx.Param)` on a model with other state: ValueError (non-exhaustive filters)"
    triggers = (Needs(names=("split",), refers=("flax.nnx.split",), imports_only=True),)
    valid = (
        # the class is redefined later (a notebook): the model was built from the first, Param-only one
        Valid("from flax import nnx\n\nclass Model(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n\nmodel = Model(nnx.Rngs(0))\n"
              "graphdef, params = nnx.split(model, nnx.Param)\n\nclass Model(nnx.Module):\n"
              "    def __init__(self, rngs):\n        self.linear = nnx.Linear(2, 2, rngs=rngs)\n"
              "        self.bn = nnx.BatchNorm(2, rngs=rngs)\n"),
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.bn = nnx.BatchNorm(2, rngs=rngs)\n\nmodel = M(nnx.Rngs(0))\n"
              "graphdef, params, rest = nnx.split(model, nnx.Param, ...)\n"),
        # parameters only: the split is exhaustive
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n        self.drop = nnx.Dropout(0.1)\n\n"
              "model = M(nnx.Rngs(0))\ngraphdef, params = nnx.split(model, nnx.Param)\n"),
        # filters that also select the other state
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.bn = nnx.BatchNorm(2, rngs=rngs)\n\nmodel = M(nnx.Rngs(0))\n"
              "graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)\n"),
        Valid("from flax import nnx\ngraphdef, params = nnx.split(model, nnx.Param)\n"),
    )
    invalid = (
        Invalid(
            "from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
            "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n        self.bn = nnx.BatchNorm(2, rngs=rngs)\n\n"
            "model = M(nnx.Rngs(0))\ngraphdef, params = nnx.split(model, nnx.Param)\n"
            "model = nnx.merge(graphdef, params)\n",
            message="Non-exhaustive",
        ),
        Invalid(
            "from flax import nnx\n\nclass Block(nnx.Module):\n"
            "    def __init__(self, rngs):\n        self.drop = nnx.Dropout(0.1, rngs=rngs)\n\n"
            "class Net(nnx.Module):\n    def __init__(self, rngs):\n        self.block = Block(rngs)\n\n"
            "def params_of(model: Net):\n    return nnx.split(model, nnx.Param)[1]\n",
        ),
        Invalid(
            "import jax.numpy as jnp\nfrom flax import nnx\n\nclass Count(nnx.Variable):\n    pass\n\n"
            "class Net(nnx.Module):\n    def __init__(self):\n        self.steps = Count(jnp.array(0))\n\n"
            "graphdef, params = nnx.split(Net(), nnx.Param)\n",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        if self.context.resolve(node.func) != "flax.nnx.split":
            return
        positional = [arg.value for arg in node.args if arg.keyword is None and not arg.star]
        if len(positional) < 2 or len(positional) != len(node.args):
            return
        model, filters = positional[0], positional[1:]
        if not all(self.context.resolve(f) == "flax.nnx.Param" for f in filters):
            return
        kind = kind_of(self.context, model)
        if kind is None or kind.category != MODULE:
            return
        if file_index(self.context).holds(kind, self._non_param_state):
            self.report(node, "`nnx.split` with Param-only filters on a model that holds other state "
                              "(BatchNorm statistics, Dropout RNG state, Variables): ValueError: Non-exhaustive "
                              "filters; add `...` as the last filter and merge the rest back")

    def _non_param_state(self, kind: Kind) -> bool:
        if kind.category == RNGS:
            return True
        if kind.category == VARIABLE:
            return kind.nnx_class not in (None, "Param") or (
                kind.local_class is not None and kind.local_class not in file_index(self.context).param_classes)
        if kind.nnx_class == "BatchNorm":
            return True
        if kind.nnx_class == "Dropout" and kind.call is not None:
            return any(arg.keyword is not None and arg.keyword.value == "rngs"
                       and not (isinstance(arg.value, cst.Name) and arg.value.value == "None")
                       for arg in kind.call.args)
        return False
