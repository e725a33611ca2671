"""NNX108: a plain list / dict / tuple of submodules or arrays assigned to a module attribute."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from nnxlint.analysis import (
    MODULE, VARIABLE, attribute_of, container_elements, fresh_array, function_body_nodes, kind_of,
    method_of_module_class,
)
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid

_CONTAINER_NAMES = {cst.List: "list", cst.ListComp: "list", cst.Tuple: "tuple", cst.Dict: "dict",
                    cst.DictComp: "dict"}


class PlainContainerOfModules(Rule):
    """## What it does
    Flags `self.<name> = [...]` (or a tuple, a dict, a list or dict comprehension)
    in a method of an NNX module when the container holds submodules, Variables or
    arrays: `self.layers = [nnx.Linear(...) for _ in range(3)]`, and an empty
    `self.layers = []` / `{}` that the same method then fills with them
    (`self.layers.append(nnx.Linear(...))`, `self.heads[name] = Head(...)`).

    ## Why is this bad?
    Since Flax 0.12 a module treats a plain `list`/`dict`/`tuple` attribute as static
    and refuses one that holds data, at the assignment: `ValueError: Found data on
    value of type '<class 'list'>' assigned to static attribute 'layers' of Pytree
    type ... Static attributes should not contain data values.` Code written for
    Flax 0.10/0.11, where plain lists of layers worked, no longer constructs.

    ## Example
    ```python
    self.layers = [nnx.Linear(64, 64, rngs=rngs) for _ in range(3)]
    ```

    ## Use instead
    ```python
    self.layers = nnx.List([nnx.Linear(64, 64, rngs=rngs) for _ in range(3)])
    ```
    (`nnx.Dict({...})` for a dict; `nnx.data(...)` also marks a plain container as data.)

    ## Fix safety
    Unsafe: the fix wraps a list, list comprehension or tuple in `nnx.List(...)` and
    a dict in `nnx.Dict(...)`, which index, iterate, `len()` and `append` like the
    originals (checked on Flax 0.12.8) but are not `list`/`dict` subclasses:
    `isinstance(..., list)`, `+` with a list and `==` against a list behave
    differently, and a tuple becomes mutable.
    """

    code = "NNX108"
    name = "plain-container-of-modules"
    summary = "Plain list/dict/tuple of submodules on a module: ValueError since Flax 0.12"
    fixable = "unsafe"
    triggers = (Needs(uses=("flax.nnx",)),)
    valid = (
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs) for _ in range(3)])\n"),
        # plain containers of static values are fine
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, sizes):\n"
              "        self.sizes = [s * 2 for s in sizes]\n        self.names = ('a', 'b')\n"
              "        self.cache = {}\n"),
        # filled with static values only
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, sizes):\n"
              "        self.sizes = []\n        for s in sizes:\n            self.sizes.append(s * 2)\n"),
        # a local list, not an attribute
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, rngs):\n"
              "        layers = [nnx.Linear(2, 2, rngs=rngs) for _ in range(3)]\n"
              "        self.net = nnx.Sequential(*layers)\n"),
        # not a module
        Valid("from flax import nnx\n\nclass Holder:\n    def __init__(self, rngs):\n"
              "        self.layers = [nnx.Linear(2, 2, rngs=rngs)]\n"),
    )
    invalid = (
        Invalid(
            "from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, rngs: nnx.Rngs):\n"
            "        self.layers = [nnx.Linear(4, 4, rngs=rngs) for _ in range(3)]\n",
            fixed="from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, rngs: nnx.Rngs):\n"
                  "        self.layers = nnx.List([nnx.Linear(4, 4, rngs=rngs) for _ in range(3)])\n",
            unsafe=True, message="ValueError",
        ),
        Invalid(
            "from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, rngs):\n        pass\n\n"
            "class Net(nnx.Module):\n    def __init__(self, rngs):\n"
            "        self.heads = {'a': Block(rngs), 'b': Block(rngs)}\n        self.pair = Block(rngs), Block(rngs)\n",
            fixed="from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, rngs):\n        pass\n\n"
                  "class Net(nnx.Module):\n    def __init__(self, rngs):\n"
                  "        self.heads = nnx.Dict({'a': Block(rngs), 'b': Block(rngs)})\n"
                  "        self.pair = nnx.List((Block(rngs), Block(rngs)))\n",
            unsafe=True, count=2,
        ),
        Invalid(
            "import jax.numpy as jnp\nfrom flax import nnx\n\nclass Stats(nnx.Module):\n    def __init__(self):\n"
            "        self.moments = [jnp.zeros(3), jnp.ones(3)]\n"
            "        self.params = {name: nnx.Param(jnp.zeros(2)) for name in ('a', 'b')}\n",
            fixed="import jax.numpy as jnp\nfrom flax import nnx\n\nclass Stats(nnx.Module):\n"
                  "    def __init__(self):\n        self.moments = nnx.List([jnp.zeros(3), jnp.ones(3)])\n"
                  "        self.params = nnx.Dict({name: nnx.Param(jnp.zeros(2)) for name in ('a', 'b')})\n",
            unsafe=True, count=2,
        ),
        Invalid(
            "from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, n, rngs):\n"
            "        self.layers = []\n        for _ in range(n):\n"
            "            self.layers.append(nnx.Linear(4, 4, rngs=rngs))\n        self.heads = {}\n"
            "        self.heads['out'] = nnx.Linear(4, 1, rngs=rngs)\n",
            fixed="from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, n, rngs):\n"
                  "        self.layers = nnx.List([])\n        for _ in range(n):\n"
                  "            self.layers.append(nnx.Linear(4, 4, rngs=rngs))\n        self.heads = nnx.Dict({})\n"
                  "        self.heads['out'] = nnx.Linear(4, 1, rngs=rngs)\n",
            unsafe=True, count=2,
        ),
    )

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1:
            self._check(node.targets[0].target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._check(node.target, node.value)

    def _check(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        container = _CONTAINER_NAMES.get(type(value))
        found = method_of_module_class(self.context)
        if container is None or found is None:
            return
        params = [*found[0].params.posonly_params, *found[0].params.params]
        owner = params[0].name.value if params else None
        attribute = attribute_of(target, owner) if owner else None
        if attribute is None:
            return
        elements = list(container_elements(value))
        if not elements and isinstance(value, (cst.List, cst.Dict)):  # ``self.layers = []``, filled below
            elements = list(_added_later(found[0], owner, attribute))
        if not any(self._is_data(element) for element in elements):
            return
        wrapper = "Dict" if container == "dict" else "List"
        reference, imports = self.context.nnx_ref(wrapper)
        argument = value
        if isinstance(value, cst.Tuple) and not value.lpar:  # ``a, b`` needs its parentheses as an argument
            argument = value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        fix = Fix(f"wrap the {container} in `nnx.{wrapper}`", "unsafe",
                  {value: cst.Call(reference, [cst.Arg(argument)])}, imports)
        self.report(value, f"plain {container} of submodules/arrays assigned to `self.{attribute}`: "
                           f"ValueError since Flax 0.12 (static attributes cannot hold data); "
                           f"use `nnx.{wrapper}(...)`", fix)

    def _is_data(self, element: cst.BaseExpression) -> bool:
        kind = kind_of(self.context, element)
        if kind is not None:
            return kind.category in (MODULE, VARIABLE)
        return fresh_array(self.context, element) is not None


def _added_later(method: cst.FunctionDef, owner: str, attribute: str) -> Iterator[cst.BaseExpression]:
    """What the method puts into ``<owner>.<attribute>``: ``.append(v)``, ``.insert(i, v)``,
    ``.extend([...])``, ``[key] = v``."""
    for node in function_body_nodes(method):
        if (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
                and attribute_of(node.func.value, owner) == attribute and node.args):
            name = node.func.attr.value
            if name in ("append", "insert"):
                yield node.args[-1].value
            elif name == "extend":
                yield from container_elements(node.args[0].value)
        elif isinstance(node, cst.Assign):
            for target in node.targets:
                if isinstance(target.target, cst.Subscript) and attribute_of(target.target.value, owner) == attribute:
                    yield node.value
