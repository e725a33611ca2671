"""NNX107: a freshly made array stored on a module in ``__init__`` instead of an nnx.Param."""

from __future__ import annotations

import libcst as cst

from nnxlint.analysis import (
    ARRAY_CONSTRUCTORS, INITIALIZER_MODULES, RANDOM_SAMPLERS, VARIABLE, attribute_of, file_index, fresh_array,
    method_of_module_class,
)
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid


class RawArrayAttribute(Rule):
    """## What it does
    Flags `self.<name> = <array>` in the `__init__` of an NNX module when the array
    is made the way weights are: drawn from `jax.random` (`normal`, `uniform`,
    `truncated_normal`, ...), built by `jnp.zeros/ones/full/empty(_like)`, produced
    by an initializer (`nnx.initializers.lecun_normal()(key, shape)`,
    `jax.nn.initializers.*`) or by `rngs.params.normal(shape)`.
    Files that pick what is trained with a filter of their own
    (`nnx.Optimizer(..., wrt=is_param)`, `nnx.DiffState`) are not checked: such a
    filter can select raw arrays on purpose. Neither is an attribute the class
    also assigns something other than a fresh array (`self.pe =
    self.pe.at[...].set(...)`, `self.cache = new_cache`): that is a buffer the
    code maintains itself, not a weight; nor is an attribute named as a cache
    (`self.cache_k = jnp.zeros(...)`, Flax's own naming for key/value caches).

    ## Why is this bad?
    Since Flax 0.12 a module accepts a raw array attribute without complaint, but
    it is not an `nnx.Param`: `nnx.grad` returns no gradient for it and
    `nnx.Optimizer(model, tx, wrt=nnx.Param)` skips it, so it keeps its initial
    value for the whole training run, silently. (Measured on Flax 0.12.8:
    `nnx.grad` of a loss over such an attribute gives an empty `State({})`.)
    Raw arrays reassigned later also depend on graph mode to propagate (Flax's
    planned tree mode drops them).

    ## Example
    ```python
    class Scale(nnx.Module):
        def __init__(self, n: int, rngs: nnx.Rngs):
            self.w = jax.random.normal(rngs.params(), (n,))
    ```

    ## Use instead
    ```python
    class Scale(nnx.Module):
        def __init__(self, n: int, rngs: nnx.Rngs):
            self.w = nnx.Param(jax.random.normal(rngs.params(), (n,)))
    ```
    Wrap state that is not meant to be trained in `nnx.Variable` (or a subclass,
    like `nnx.BatchStat`) instead.

    ## Fix safety
    Unsafe: wrapping the array in `nnx.Param` changes what is trained (the
    optimizer now updates it) and the state's structure (checkpoints saved before
    hold a raw array). Arithmetic, indexing, `.shape`, `.at[...]` and `jnp`
    functions accept a `Param` as they accepted the array, but on Flax 0.12.8
    `param != x` and `param < x` raise where the array compared elementwise: read
    `self.w[...]` there. If the array is a constant or a buffer, use
    `nnx.Variable` instead of taking the fix.
    """

    code = "NNX107"
    name = "raw-array-attribute"
    summary = "Array stored on a module without `nnx.Param`: never trained"
    fixable = "unsafe"
    # what ``fresh_array`` recognizes: a JAX sampler or constructor, an initializer, or a
    # sampler method of an ``nnx.Rngs`` (``rngs.params.normal(...)``)
    triggers = (Needs(uses=("flax.nnx",), words=("__init__",), refers=(
                    *(f"jax.random.{name}" for name in sorted(RANDOM_SAMPLERS)),
                    *(f"jax.numpy.{name}" for name in sorted(ARRAY_CONSTRUCTORS)),
                    *(module.rstrip(".") for module in INITIALIZER_MODULES))),
                Needs(uses=("flax.nnx",), words=("__init__",), attributes=tuple(sorted(RANDOM_SAMPLERS))))
    valid = (
        Valid("import jax\nfrom flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs: nnx.Rngs):\n"
              "        self.w = nnx.Param(jax.random.normal(rngs.params(), (3,)))\n"),
        # a key, a constant table: not weights
        Valid("import jax\nimport jax.numpy as jnp\nfrom flax import nnx\n\nclass M(nnx.Module):\n"
              "    def __init__(self, n):\n        self.key = jax.random.key(0)\n"
              "        self.mask = jnp.tril(jnp.ones((n, n)))\n        self.ids = jnp.arange(n)\n"),
        # state written during the call, not in __init__
        Valid("import jax.numpy as jnp\nfrom flax import nnx\n\nclass M(nnx.Module):\n"
              "    def __call__(self, x):\n        self.last = jnp.zeros_like(x)\n        return x\n"),
        # not a module
        Valid("import jax.numpy as jnp\n\nclass Buffer:\n    def __init__(self):\n        self.data = jnp.zeros(3)\n"),
        Valid("import jax.numpy as jnp\nfrom flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self):\n"
              "        w = jnp.zeros(3)\n        self.w = nnx.Param(w)\n"),
        # wrapped afterwards
        Valid("import jax.numpy as jnp\nfrom flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self):\n"
              "        self.w = jnp.zeros(3)\n        self.w = nnx.Param(self.w)\n"),
        # a constant table computed in steps, a cache the module rewrites: buffers, not weights
        Valid("import jax.numpy as jnp\nfrom flax import nnx\n\nclass PositionalEncoding(nnx.Module):\n"
              "    def __init__(self, d, n):\n        self.pe = jnp.zeros((n, d))\n"
              "        self.pe = self.pe.at[:, 0::2].set(jnp.sin(jnp.arange(n)[:, None]))\n"),
        Valid("import jax.numpy as jnp\nfrom flax import nnx\n\nclass Attention(nnx.Module):\n"
              "    def __init__(self, n, d):\n        self.cache = jnp.zeros((n, d))\n\n"
              "    def __call__(self, x, i):\n        self.cache = self.cache.at[i].set(x)\n        return self.cache\n"),
        Valid("import jax.numpy as jnp\nfrom flax import nnx\n\nclass Attention(nnx.Module):\n"
              "    def __init__(self, b, n, h, d):\n        self.cache_k = jnp.zeros((b, n, h, d))\n"),
        # raw arrays trained on purpose, through a filter of the file's own (Flax's "array leaves" example)
        Valid("import jax.numpy as jnp\nfrom flax import nnx\n\nclass Linear(nnx.Module):\n"
              "    def __init__(self, din, dout):\n        self.b = jnp.zeros((dout,))\n\n"
              "def is_param(path, value):\n    return path[-1] == 'b'\n\n"
              "optimizer = nnx.Optimizer(Linear(2, 3), tx, wrt=is_param)\n"),
    )
    invalid = (
        Invalid(
            "import jax\nfrom flax import nnx\n\nclass Scale(nnx.Module):\n    def __init__(self, n, rngs: nnx.Rngs):\n"
            "        self.w = jax.random.normal(rngs.params(), (n,))  # weights\n",
            fixed="import jax\nfrom flax import nnx\n\nclass Scale(nnx.Module):\n"
                  "    def __init__(self, n, rngs: nnx.Rngs):\n"
                  "        self.w = nnx.Param(jax.random.normal(rngs.params(), (n,)))  # weights\n",
            unsafe=True, message="never trained",
        ),
        Invalid(
            "import jax.numpy as jnp\nfrom flax import nnx\n\nclass Affine(nnx.Module):\n"
            "    def __init__(self, n, rngs):\n        init = nnx.initializers.lecun_normal()\n"
            "        self.kernel = nnx.initializers.lecun_normal()(rngs.params(), (n, n))\n"
            "        self.bias = jnp.zeros((n,))\n        self.scale = rngs.params.uniform((n,))\n",
            fixed="import jax.numpy as jnp\nfrom flax import nnx\n\nclass Affine(nnx.Module):\n"
                  "    def __init__(self, n, rngs):\n        init = nnx.initializers.lecun_normal()\n"
                  "        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (n, n)))\n"
                  "        self.bias = nnx.Param(jnp.zeros((n,)))\n"
                  "        self.scale = nnx.Param(rngs.params.uniform((n,)))\n",
            unsafe=True, count=3,
        ),
        Invalid(
            "import jax\nfrom flax.nnx import Module\n\nclass Bias(Module):\n    def __init__(self):\n"
            "        self.b: jax.Array = jax.numpy.zeros(4)\n",
            fixed="import jax\nfrom flax.nnx import Module\nfrom flax import nnx\n\nclass Bias(Module):\n"
                  "    def __init__(self):\n        self.b: jax.Array = nnx.Param(jax.numpy.zeros(4))\n",
            unsafe=True,
        ),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.custom_filters = False
        self.found: list[tuple[cst.BaseExpression, str, str]] = []  # (array, attribute, how it is made)

    def visit_Call(self, node: cst.Call) -> None:
        self.custom_filters = self.custom_filters or self._trains_by_custom_filter(node)

    def leave_Module(self, node: cst.Module) -> None:
        if self.custom_filters:
            return
        for value, attribute, made_by in self.found:
            param, imports = self.context.nnx_ref("Param")
            fix = Fix("wrap the array in `nnx.Param`", "unsafe", {value: cst.Call(param, [cst.Arg(value)])}, imports)
            self.report(value, f"`self.{attribute}` holds an array from {made_by} that is not an `nnx.Param`: "
                               "it is never trained (no gradient, the optimizer skips it); wrap it in `nnx.Param` "
                               "(or `nnx.Variable` if it is not a weight)", fix)

    def _trains_by_custom_filter(self, call: cst.Call) -> bool:
        """``nnx.Optimizer(..., wrt=is_param)`` or ``nnx.DiffState(...)``: the file chooses
        what is trained by its own filter, which can select raw arrays (Flax's
        "array leaves" example does)."""
        member = self.context.nnx_member(call.func)
        if member == "DiffState":
            return True
        return member == "Optimizer" and any(
            arg.keyword is not None and arg.keyword.value == "wrt"
            and self.context.resolve(arg.value) != "flax.nnx.Param"
            for arg in call.args)

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1:
            self._check(node.targets[0].target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._check(node.target, node.value)

    def _check(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        found = method_of_module_class(self.context)
        if found is None or found[0].name.value != "__init__":
            return
        method, owner = found
        params = [*method.params.posonly_params, *method.params.params]
        attribute = attribute_of(target, params[0].name.value) if params else None
        made_by = fresh_array(self.context, value) if attribute else None
        if (attribute is None or made_by is None or "cache" in attribute.lower()
                or self._wrapped_elsewhere(owner, attribute) or self._recomputed(owner, attribute)):
            return
        self.found.append((value, attribute, made_by))

    def _recomputed(self, owner: cst.ClassDef, attribute: str) -> bool:
        """The class also assigns the attribute something other than a fresh array:
        ``self.pe = self.pe.at[:, 0::2].set(jnp.sin(...))`` (a table computed in
        steps), ``self.cache = new_cache`` (state written by a method). Such an
        array is a buffer the code maintains itself, not a weight left untrained."""
        values = file_index(self.context).attributes(owner.name.value).get(attribute, [])
        return any(fresh_array(self.context, value) is None for value in values)

    def _wrapped_elsewhere(self, owner: cst.ClassDef, attribute: str) -> bool:
        """``self.w = nnx.Param(self.w)`` (or any Variable) somewhere in the class."""
        index = file_index(self.context)
        return any(kind is not None and kind.category == VARIABLE
                   for kind in map(index.kind_of_value, index.attributes(owner.name.value).get(attribute, [])))
