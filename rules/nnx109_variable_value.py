"""NNX109: deprecated ``.value`` access on an nnx.Variable."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.analysis import ARRAY_ATTRIBUTES, STATE, VARIABLE, Kind, fresh_array, kind_of
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid

_ELLIPSIS_INDEX = [cst.SubscriptElement(cst.Index(cst.Ellipsis()))]


class VariableValue(Rule):
    """## What it does
    Flags `.value` on an expression known to hold an `nnx.Variable` (`nnx.Param`,
    `nnx.BatchStat`, a `Variable` subclass of the file, ...): an attribute the class
    assigns a Variable to (`self.count = nnx.Variable(...)`), a variable bound to
    one, or a built-in layer's variable reached through the file's classes
    (`model.linear.kernel`). `.value` on anything else is left alone.

    ## Why is this bad?
    Since Flax 0.12.1 every `.value` read and write warns: `DeprecationWarning:
    '.value' access is now deprecated. For Variable[Array] instances use:
    variable[...] For other Variable types use: variable.get_value()`. The
    property is slated for removal.

    ## Example
    ```python
    self.count.value += 1
    y = x @ self.w.value
    self.cache.value = new_cache
    ```

    ## Use instead
    ```python
    self.count[...] += 1
    y = x @ self.w[...]
    self.cache.set_value(new_cache)
    ```

    ## Fix safety
    Reads become `v[...]` when the Variable is known to hold a JAX array (it was
    built from `jnp.*`/`jax.random.*`/an initializer, or it is a layer's
    `kernel`/`bias`/...), else `v.get_value()`: both return exactly what `.value`
    returned (in Flax 0.12.8 `.value` is `get_value()`), so they are safe. A write
    `v.value = x` becomes `v.set_value(x)`, what the `.value` setter calls: safe.
    `v.value += x` on a known array becomes `v[...] += x`, which is unsafe: when
    `x` changes the dtype or shape, `v[...] = ...` casts or broadcasts into the old
    array where `.value` replaced it. Other augmented assignments, chained
    (`a.value = b.value = x`) and annotated assignments are not fixed.
    """

    code = "NNX109"
    name = "variable-value"
    summary = "Deprecated `.value` on an `nnx.Variable`: use `v[...]` / `get_value()`"
    fixable = "safe"
    triggers = (Needs(uses=("flax.nnx",), words=("value",), attributes=("value",)),)
    valid = (
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self):\n"
              "        self.count = nnx.Variable(jnp.array(0))\n\n    def __call__(self):\n"
              "        self.count[...] += 1\n        return self.count.get_value()\n"),
        # not Variables: an enum, a dict entry, an unknown object
        Valid("import enum\nfrom flax import nnx\n\nclass Color(enum.Enum):\n    RED = 1\n\nx = Color.RED.value\n"
              "y = config.value\n"),
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, option):\n"
              "        self.option = option\n\n    def f(self):\n        return self.option.value\n"),
    )
    invalid = (
        Invalid(  # a Variable class defined twice (notebook cells) is still a Variable class
            "from flax import nnx\n\nclass Count(nnx.Variable):\n    pass\n\nclass Count(nnx.Variable):\n    pass\n\n"
            "c = Count(0)\nprint(c.value)\n",
            fixed="from flax import nnx\n\nclass Count(nnx.Variable):\n    pass\n\nclass Count(nnx.Variable):\n    pass\n\n"
                  "c = Count(0)\nprint(c.get_value())\n",
        ),
        Invalid(
            "import jax.numpy as jnp\nfrom flax import nnx\n\nclass Counter(nnx.Variable):\n    pass\n\n"
            "class M(nnx.Module):\n    def __init__(self, rngs):\n        self.count = Counter(jnp.array(0))\n"
            "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n        self.mode = nnx.Variable('train')\n\n"
            "    def __call__(self, x):\n        self.count.value += 1\n"
            "        self.mode.value = 'eval'\n        print(self.mode.value)\n"
            "        return x @ self.linear.kernel.value\n",
            fixed="import jax.numpy as jnp\nfrom flax import nnx\n\nclass Counter(nnx.Variable):\n    pass\n\n"
                  "class M(nnx.Module):\n    def __init__(self, rngs):\n        self.count = Counter(jnp.array(0))\n"
                  "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n        self.mode = nnx.Variable('train')\n\n"
                  "    def __call__(self, x):\n        self.count[...] += 1\n"
                  "        self.mode.set_value('eval')\n        print(self.mode.get_value())\n"
                  "        return x @ self.linear.kernel[...]\n",
            unsafe=True, count=4, message="deprecated",
        ),
        Invalid(
            "from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
            "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n\n"
            "model = M(nnx.Rngs(0))\nprint(model.linear.kernel.value.shape)\nw = nnx.Param(init(key, (3,)))\n"
            "w.value = w.value * 2\n",
            fixed="from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
                  "        self.linear = nnx.Linear(2, 2, rngs=rngs)\n\n"
                  "model = M(nnx.Rngs(0))\nprint(model.linear.kernel[...].shape)\nw = nnx.Param(init(key, (3,)))\n"
                  "w.set_value(w.get_value() * 2)\n",
            count=3,
        ),
        Invalid(  # an element of a list of layers
            "from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
            "        self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs) for _ in range(3)])\n\n"
            "    def first_kernel(self):\n        return self.layers[0].kernel.value\n",
            fixed="from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
                  "        self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs) for _ in range(3)])\n\n"
                  "    def first_kernel(self):\n        return self.layers[0].kernel[...]\n",
        ),
        Invalid(  # a chained assignment: flagged, not fixed
            "from flax import nnx\na = nnx.Variable(0)\nb = nnx.Variable(0)\na.value = b.value = 1\n",
            count=2,
        ),
        Invalid(  # augmented assignment on a Variable of unknown content: flagged, not fixed
            "from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, n):\n"
            "        self.total = nnx.BatchStat(n)\n\n    def add(self, x):\n        self.total.value += x\n",
        ),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.handled: set[int] = set()  # ``.value`` targets reported with their statement
        # ``<x>.value`` nodes followed by a State key (``.kernel``, ``['kernel']``): there
        # ``value`` names a submodule (attention's value projection), not Variable.value
        self.continued: set[int] = set()

    def visit_Subscript(self, node: cst.Subscript) -> None:
        if any(isinstance(element.slice, cst.Index) and isinstance(element.slice.value, cst.SimpleString)
               for element in node.slice):
            self.continued.add(id(node.value))

    def visit_Assign(self, node: cst.Assign) -> None:
        for assign_target in node.targets:
            target = assign_target.target
            if self._variable(target) is None:
                continue
            assert isinstance(target, cst.Attribute)
            self.handled.add(id(target))
            fix = None
            if len(node.targets) == 1:  # ``a.value = b.value = x`` has no one-call equivalent
                setter = cst.Call(cst.Attribute(target.value, cst.Name("set_value")), [cst.Arg(node.value)])
                fix = Fix("call `set_value(...)`", "safe", {node: cst.Expr(setter)})
            self._report(target, fix)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if self._variable(node.target) is not None:
            self.handled.add(id(node.target))
            self._report(node.target, None)  # type: ignore[arg-type]

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        kind = self._variable(node.target)
        if kind is None:
            return
        target = node.target
        assert isinstance(target, cst.Attribute)
        self.handled.add(id(target))
        fix = None
        if self._holds_array(kind):
            indexed = cst.Subscript(target.value, _ELLIPSIS_INDEX)
            fix = Fix("use `v[...]` in place of `v.value`", "unsafe", {target: indexed})
        self._report(target, fix)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if node.attr.value not in ARRAY_ATTRIBUTES:
            self.continued.add(id(node.value))
        if id(node) in self.handled:
            return
        kind = self._variable(node)
        if kind is None:
            return
        if self._holds_array(kind):
            fix = Fix("use `v[...]` in place of `v.value`", "safe", {node: cst.Subscript(node.value, _ELLIPSIS_INDEX)})
        else:
            getter = cst.Call(cst.Attribute(node.value, cst.Name("get_value")))
            fix = Fix("call `get_value()`", "safe", {node: getter})
        self._report(node, fix)

    def _variable(self, node: cst.BaseExpression) -> Optional[Kind]:
        """The Variable kind of ``<receiver>`` for ``<receiver>.value``."""
        if not (isinstance(node, cst.Attribute) and node.attr.value == "value"):
            return None
        kind = kind_of(self.context, node.value)
        if (kind is not None and kind.category == STATE and kind.nnx_class is None and kind.of is None
                and id(node) not in self.continued):
            return Kind(VARIABLE)  # an item of an nnx.State: a Variable, unless a submodule follows
        return kind if kind is not None and kind.category == VARIABLE else None

    def _holds_array(self, kind: Kind) -> bool:
        if kind.holds_array:
            return True
        arguments = kind.call.args if kind.call is not None else ()
        return bool(arguments) and arguments[0].keyword is None and (
            fresh_array(self.context, arguments[0].value) is not None or _is_jnp_call(self.context, arguments[0].value))

    def _report(self, node: cst.Attribute, fix: Optional[Fix]) -> None:
        self.report(node, "`.value` is deprecated since Flax 0.12.1 (DeprecationWarning): "
                          "read with `v[...]` or `v.get_value()`, write with `v[...] = x` or `v.set_value(x)`", fix)


def _is_jnp_call(context, expression: cst.BaseExpression) -> bool:
    """``jnp.array(0)``, ``jnp.eye(3)``: any jax.numpy call returns an array."""
    return isinstance(expression, cst.Call) and (context.resolve(expression.func) or "").startswith("jax.numpy.")
