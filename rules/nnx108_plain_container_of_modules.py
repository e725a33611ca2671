"""NNX108: a plain list / dict / tuple of submodules or arrays assigned to a module attribute."""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import libcst as cst

from nnxlint import names
from nnxlint.analysis import (
    MODULE, VARIABLE, attribute_of, container_elements, fresh_array, function_body_nodes, kind_of,
    method_of_module_class,
)
from nnxlint.objects import assigned_value
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid

_CONTAINER_NAMES = {cst.List: "list", cst.ListComp: "list", cst.Tuple: "tuple", cst.Dict: "dict",
                    cst.DictComp: "dict", cst.GeneratorExp: "list"}
# Builtins that make a container from an iterable: ``list(layer for ...)``.
_CONTAINER_BUILTINS = {"list": "list", "tuple": "tuple", "dict": "dict"}
# Annotations of containers: ``list[nnx.Module]``, ``Sequence[Block]``, ``dict[str, Block]``.
_CONTAINER_ANNOTATIONS = {"list": "list", "List": "list", "Sequence": "list", "tuple": "tuple", "Tuple": "tuple",
                          "dict": "dict", "Dict": "dict", "Mapping": "dict"}


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
    triggers = (Needs(uses=("flax.nnx",), stores_containers=True),)  # what ``_contents`` recognizes
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
        # a module declared pytree=False keeps plain lists; an attribute annotated nnx.Data is data
        Valid("from flax import nnx\n\nclass M(nnx.Module, pytree=False):\n    def __init__(self, rngs):\n"
              "        self.layers = [nnx.Linear(2, 2, rngs=rngs)]\n"),
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    layers: nnx.Data[list]\n\n"
              "    def __init__(self, rngs):\n        self.layers = [nnx.Linear(2, 2, rngs=rngs)]\n"),
        # a generator stored as is, a list of static values built in a local
        Valid("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self, sizes):\n"
              "        names = []\n        for s in sizes:\n            names.append(str(s))\n"
              "        self.names = names\n        self.sizes = list(s * 2 for s in sizes)\n"),
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
        Invalid(  # a local list filled, then assigned; list(generator); clones of a layer
            "from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, n, rngs):\n"
            "        layers = []\n        for _ in range(n):\n"
            "            layers.append(nnx.Linear(4, 4, rngs=rngs))\n"
            "        self.layers = layers\n        self.more = list(nnx.Linear(4, 4, rngs=rngs) for _ in range(n))\n"
            "        layer = nnx.Linear(4, 4, rngs=rngs)\n        self.copies = [nnx.clone(layer) for _ in range(n)]\n",
            fixed="from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, n, rngs):\n"
                  "        layers = []\n        for _ in range(n):\n"
                  "            layers.append(nnx.Linear(4, 4, rngs=rngs))\n"
                  "        self.layers = nnx.List(layers)\n"
                  "        self.more = nnx.List(list(nnx.Linear(4, 4, rngs=rngs) for _ in range(n)))\n"
                  "        layer = nnx.Linear(4, 4, rngs=rngs)\n"
                  "        self.copies = nnx.List([nnx.clone(layer) for _ in range(n)])\n",
            unsafe=True, count=3,
        ),
        Invalid(  # a parameter annotated as a list of modules, on an nnx.Pytree
            "from typing import Sequence\nfrom flax import nnx\n\nclass Stack(nnx.Pytree):\n"
            "    def __init__(self, blocks: Sequence[nnx.Module], heads: dict[str, nnx.Linear]):\n"
            "        self.blocks = blocks\n        self.heads = heads\n",
            fixed="from typing import Sequence\nfrom flax import nnx\n\nclass Stack(nnx.Pytree):\n"
                  "    def __init__(self, blocks: Sequence[nnx.Module], heads: dict[str, nnx.Linear]):\n"
                  "        self.blocks = nnx.List(blocks)\n        self.heads = nnx.Dict(heads)\n",
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
        found = method_of_module_class(self.context, pytrees=True)
        if found is None or _keyword(found[1], "pytree") == "False":  # plain lists are allowed there
            return
        params = [*found[0].params.posonly_params, *found[0].params.params]
        owner = params[0].name.value if params else None
        attribute = attribute_of(target, owner) if owner else None
        if attribute is None or attribute in _data_annotated(self.context, found[1]):
            return
        contents = self._contents(found[0], owner, attribute, value)  # type: ignore[arg-type]
        if contents is None:
            return
        container, elements = contents
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

    def _contents(self, method: cst.FunctionDef, owner: str, attribute: str,
                  value: cst.BaseExpression) -> Optional[tuple[str, list[cst.BaseExpression]]]:
        """The plain container ``value`` is and what it holds: a literal or comprehension,
        ``list(generator)``, a local list filled before (``layers.append(...)``), or a
        parameter annotated ``list[nnx.Module]``."""
        container = _CONTAINER_NAMES.get(type(value))
        if container is not None:
            if isinstance(value, cst.GeneratorExp):
                return None  # a generator stored as is holds no data yet
            elements = list(container_elements(value))
            if not elements and isinstance(value, (cst.List, cst.Dict)):  # ``self.layers = []``, filled below
                elements = list(_added_later(method, lambda node: attribute_of(node, owner) == attribute))
            return container, elements
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Name) and len(value.args) == 1 \
                and value.func.value in _CONTAINER_BUILTINS and self.context.lookup(value.func.value) is None:
            argument = value.args[0].value
            if isinstance(argument, (cst.GeneratorExp, cst.ListComp, cst.List, cst.Tuple)):
                return _CONTAINER_BUILTINS[value.func.value], list(container_elements(argument))
            return None
        if not isinstance(value, cst.Name):
            return None
        binding = self.context.lookup(value.value)
        if binding is None:
            return None
        if isinstance(binding.node, cst.Param) and binding.node.annotation is not None:
            return _annotated_container(binding.node.annotation.annotation)
        local = assigned_value(binding.node, value.value)
        container = _CONTAINER_NAMES.get(type(local))
        if container is None or isinstance(local, cst.GeneratorExp):
            return None
        name = value.value
        return container, [*container_elements(local),  # type: ignore[arg-type]
                           *_added_later(method, lambda node: isinstance(node, cst.Name) and node.value == name)]

    def _is_data(self, element: cst.BaseExpression) -> bool:
        kind = kind_of(self.context, element)
        if kind is not None:
            return kind.category in (MODULE, VARIABLE)
        return fresh_array(self.context, element) is not None


def _keyword(class_node: cst.ClassDef, name: str) -> Optional[str]:
    """The source of a class keyword: ``'False'`` for ``class M(nnx.Module, pytree=False)``."""
    for keyword in class_node.keywords:
        if keyword.keyword is not None and keyword.keyword.value == name and isinstance(keyword.value, cst.Name):
            return keyword.value.value
    return None


def _data_annotated(context, class_node: cst.ClassDef) -> set[str]:
    """Attributes the class body annotates ``nnx.Data[...]``: marked as data."""
    found = set()
    body = class_node.body.body if isinstance(class_node.body, cst.IndentedBlock) else ()
    for statement in body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if (isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name)
                        and isinstance(small.annotation.annotation, cst.Subscript)
                        and context.resolve(small.annotation.annotation.value) == "flax.nnx.Data"):
                    found.add(small.target.value)
    return found


def _annotated_container(annotation: cst.BaseExpression) -> Optional[tuple[str, list[cst.BaseExpression]]]:
    """``("list", [nnx.Module()])`` for ``list[nnx.Module]``: the container and a
    construction of the element class (whose kind is the elements')."""
    if not isinstance(annotation, cst.Subscript):
        return None
    container = _CONTAINER_ANNOTATIONS.get((names.dotted_name(annotation.value) or "").rpartition(".")[2])
    items = [element.slice.value for element in annotation.slice if isinstance(element.slice, cst.Index)]
    if container is None or not items:
        return None
    element = items[-1] if container == "dict" else items[0]
    return container, [cst.Call(element)]


def _added_later(method: cst.FunctionDef,
                 is_container: Callable[[cst.BaseExpression], bool]) -> Iterator[cst.BaseExpression]:
    """What the method puts into the container ``is_container`` recognizes: ``.append(v)``,
    ``.insert(i, v)``, ``.extend([...])``, ``[key] = v``."""
    for node in function_body_nodes(method):
        if (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
                and is_container(node.func.value) and node.args):
            name = node.func.attr.value
            if name in ("append", "insert"):
                yield node.args[-1].value
            elif name == "extend":
                yield from container_elements(node.args[0].value)
        elif isinstance(node, cst.Assign):
            for target in node.targets:
                if isinstance(target.target, cst.Subscript) and is_container(target.target.value):
                    yield node.value
