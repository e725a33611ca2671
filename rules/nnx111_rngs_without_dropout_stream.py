"""NNX111: an nnx.Rngs without a ``dropout`` or default stream given to a Dropout."""

from __future__ import annotations

import libcst as cst

from nnxlint.analysis import MODULE, RNGS, Kind, file_index, kind_of
from nnxlint.rule import Invalid, Needs, Rule, Valid

DROPOUT_STREAM = "dropout"


class RngsWithoutDropoutStream(Rule):
    """## What it does
    Flags an `nnx.Rngs(...)` that has named streams only, none of them `dropout`
    and no default (`nnx.Rngs(params=0)`), when it is passed to an `nnx.Dropout`
    or to a module of the file that builds an `nnx.Dropout` from its `rngs`.

    ## Why is this bad?
    `nnx.Dropout(rate, rngs=rngs)` takes its key stream with `rngs['dropout']` at
    construction. With only a `params` stream the model cannot be built: `KeyError:
    "No RngStream named 'dropout' found in Rngs."` Linen's `make_rng('dropout')`
    silently fell back to the `params` key, so code ported from Linen often passes
    `params` alone. A seed given positionally (`nnx.Rngs(0)`) is a default stream
    that every name falls back to, and works.

    ## Example
    ```python
    model = Model(rngs=nnx.Rngs(params=0))  # Model.__init__ builds an nnx.Dropout
    ```

    ## Use instead
    ```python
    model = Model(rngs=nnx.Rngs(params=0, dropout=1))
    ```

    ## Fix safety
    No fix: which seed the dropout stream should get is the author's decision
    (reusing the `params` seed would correlate the masks with the initial weights).
    """

    code = "NNX111"
    name = "rngs-without-dropout-stream"
    summary = "`nnx.Rngs` without a `dropout` or default stream reaches an `nnx.Dropout`: KeyError"
    triggers = (Needs(names=("Dropout",), refers=("flax.nnx.Rngs",)),)
    valid = (
        Valid("from flax import nnx\ndrop = nnx.Dropout(0.5, rngs=nnx.Rngs(params=0, dropout=1))\n"),
        Valid("from flax import nnx\ndrop = nnx.Dropout(0.5, rngs=nnx.Rngs(0))\n"),
        Valid("from flax import nnx\ndrop = nnx.Dropout(0.5, rngs=nnx.Rngs(0, params=1))\n"),
        Valid("from flax import nnx\ndrop = nnx.Dropout(0.5, rng_collection='noise', rngs=nnx.Rngs(noise=0))\n"),
        # the module has no Dropout
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n\nm = M(rngs=nnx.Rngs(params=0))\n"),
        Valid("from flax import nnx\nlinear = nnx.Linear(2, 2, rngs=nnx.Rngs(params=0))\n"
              "drop = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))\n"),
        Valid("from flax import nnx\ndrop = nnx.Dropout(0.5, rngs=nnx.Rngs(**seeds))\n"),
        # the Dropout makes its own Rngs
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n"
              "        self.drop = nnx.Dropout(0.1, rngs=nnx.Rngs(dropout=1))\n\nm = M(rngs=nnx.Rngs(params=0))\n"),
    )
    invalid = (
        Invalid("from flax import nnx\ndrop = nnx.Dropout(0.5, rngs=nnx.Rngs(params=0))\n", message="KeyError"),
        Invalid(
            "from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, rngs):\n"
            "        self.drop = nnx.Dropout(0.1, rngs=rngs)\n\nclass Model(nnx.Module):\n"
            "    def __init__(self, *, rngs: nnx.Rngs):\n        self.linear = nnx.Linear(2, 2, rngs=rngs)\n"
            "        self.block = Block(rngs)\n\nrngs = nnx.Rngs(params=0)\nmodel = Model(rngs=rngs)\n",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        built = kind_of(self.context, node)
        if built is None or built.category != MODULE:
            return
        for arg in node.args:
            if arg.star or (arg.keyword is not None and arg.keyword.value != "rngs"):
                continue
            rngs = kind_of(self.context, arg.value)
            if rngs is None or rngs.category != RNGS or rngs.call is None or not _lacks(rngs.call, DROPOUT_STREAM):
                continue
            if self._builds_dropout(built):
                self.report(rngs.call if arg.value is rngs.call else arg.value,
                            "`nnx.Rngs` has no `dropout` or default stream but reaches an `nnx.Dropout`: "
                            "KeyError: \"No RngStream named 'dropout' found in Rngs.\"; add `dropout=<seed>`")

    def _builds_dropout(self, built: Kind) -> bool:
        if built.nnx_class == "Dropout":  # this very call
            return not any(arg.keyword is not None and arg.keyword.value == "rng_collection"
                           for arg in built.call.args) if built.call else False
        return built.local_class is not None and any(
            _passes_rngs_to_dropout(kind) for kind in file_index(self.context).constructions(built.local_class))


def _passes_rngs_to_dropout(kind: Kind) -> bool:
    """An ``nnx.Dropout`` built from the ``rngs`` its module was given, under the default stream name."""
    if kind.nnx_class != "Dropout" or kind.call is None:
        return False
    keywords = {arg.keyword.value: arg.value for arg in kind.call.args if arg.keyword is not None}
    # ``rngs=rngs``: the Rngs the module was given, not one it makes itself
    return isinstance(keywords.get("rngs"), (cst.Name, cst.Attribute)) and "rng_collection" not in keywords


def _lacks(rngs_call: cst.Call, stream: str) -> bool:
    """``nnx.Rngs(params=0)``: named streams only (no default seed), ``stream`` not among them."""
    if not rngs_call.args:
        return False
    for arg in rngs_call.args:
        if arg.star or arg.keyword is None or arg.keyword.value in (stream, "default"):
            return False
    return True
