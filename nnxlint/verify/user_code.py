"""Importing and building the user's own models, inside an isolated worker process.

``nnxlint verify --against`` and ``nnxlint transplant`` build the user's Linen
and NNX models from their sources.  That means importing the user's code, which
only happens here, in a process of its own (``nnxlint.verify.user_worker``)
started with ``python -I -B``: neither the current directory nor
``PYTHONPATH`` is on ``sys.path``, only the user's project (the directory that
holds the model file's top-level package, and the repository root), and no
``__pycache__`` is written into it.

A model is described by its file, its constructor call as source text
(``Classifier(hidden=16)``, from the init site or ``--example``) and its example
inputs (source text evaluated in the file's namespace, or shapes).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import jax
import numpy as np

from nnxlint.verify.sites import ModelSpec

# Example inputs with a batch of one (the usual ``jnp.ones((1, ...))`` at init) are widened
# to this many rows for the comparisons: train-mode BatchNorm needs a real batch.
COMPARISON_BATCH = 8


class BuildError(Exception):
    """A model cannot be built: the reason, for the user."""


def import_user_module(root: Path, relative: str) -> ModuleType:
    """Import ``root/relative`` under its package name, with its project on ``sys.path``."""
    path = (root / relative).resolve()
    if not path.is_file():
        raise BuildError(f"{relative}: no such file under {root}")
    parts = [] if path.stem == "__init__" else [path.stem]
    package_root = path.parent
    while (package_root / "__init__.py").is_file():
        parts.insert(0, package_root.name)
        package_root = package_root.parent
    name = ".".join(parts)
    for entry in reversed(_unique([str(package_root), str(root.resolve())])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(name)
    except Exception as error:
        raise BuildError(f"importing {relative} as `{name}` raised {type(error).__name__}: {error}") from error
    if Path(getattr(module, "__file__", "") or "").resolve() != path:
        raise BuildError(f"{relative}: the module name `{name}` is already taken by "
                         f"{getattr(module, '__file__', 'a built-in module')}; rename the file")
    return module


def forget_user_modules(root: Path) -> None:
    """Drop every module imported from ``root`` (and ``root`` from ``sys.path``), so the
    same module names can be imported again from another tree."""
    prefix = str(root.resolve())  # the sys.path entry these modules were found through

    def under_root(location: object) -> bool:
        return isinstance(location, str) and (location == prefix or location.startswith(prefix + os.sep))

    for name, module in list(sys.modules.items()):
        locations = [getattr(module, "__file__", None)] + list(getattr(module, "__path__", None) or [])
        if any(under_root(location) for location in locations):
            del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path if not under_root(entry)]
    importlib.invalidate_caches()


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def evaluate(source: str, namespace: dict, what: str, relative: str) -> Any:
    try:
        return eval(compile(source, f"<{what}>", "eval"), dict(namespace))  # the user's own expression
    except Exception as error:
        raise BuildError(f"{what} `{source}` cannot be evaluated in {relative}'s module namespace "
                         f"({type(error).__name__}: {error})") from error


def constructor_arguments(spec: ModelSpec, namespace: dict) -> tuple[list, dict]:
    """The positional and keyword values of ``spec.constructor``, evaluated in ``namespace``."""
    try:
        tree = ast.parse(spec.constructor.strip(), mode="eval").body
    except SyntaxError as error:
        raise BuildError(f"the constructor `{spec.constructor}` is not a Python expression: {error.msg}") from error
    if isinstance(tree, ast.Name):
        return [], {}
    if not isinstance(tree, ast.Call):
        raise BuildError(f"the constructor `{spec.constructor}` must be a call such as `{spec.class_name}(...)`")
    where = f"a constructor argument (from {spec.origin})"
    args: list = []
    for arg in tree.args:
        if isinstance(arg, ast.Starred):
            args.extend(evaluate(ast.unparse(arg.value), namespace, where, spec.relative))
        else:
            args.append(evaluate(ast.unparse(arg), namespace, where, spec.relative))
    kwargs: dict = {}
    for keyword in tree.keywords:
        value = evaluate(ast.unparse(keyword.value), namespace, where, spec.relative)
        if keyword.arg is None:
            kwargs.update(value)
        else:
            kwargs[keyword.arg] = value
    return args, kwargs


def user_class(module: ModuleType, spec: ModelSpec, base: type, kind: str) -> type:
    cls = getattr(module, spec.class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise BuildError(f"{spec.relative} defines no {kind} class `{spec.class_name}`")
    return cls


def example_inputs(spec: ModelSpec, namespace: dict) -> list[jax.Array]:
    """The arrays ``init`` is called with: the given shapes, the init site's expressions,
    or, where those need the enclosing function's locals, the shapes the conversion inferred."""
    import jax.numpy as jnp

    if spec.input_shapes is not None:
        dtypes = spec.input_dtypes or ["float32"] * len(spec.input_shapes)
        return [jnp.ones(shape, dtype) for shape, dtype in zip(spec.input_shapes, dtypes)]
    arrays = []
    for source, shape in zip(spec.inputs, spec.static_shapes + [None] * len(spec.inputs)):
        try:
            arrays.append(jnp.asarray(evaluate(source, namespace, "the example input", spec.relative)))
        except BuildError as error:
            if shape is None or any(size is None for size in shape[1:]):
                raise BuildError(f"{error}; pass --input-shape") from error
            arrays.append(jnp.ones((1, *shape[1:]), jnp.float32))
    return arrays


def comparison_inputs(examples: list[jax.Array], random: np.random.Generator, integer_limit: int) -> list[np.ndarray]:
    """Random arrays shaped like the examples (a batch of one widened): normal floats, or
    integers below ``integer_limit`` (token ids)."""
    arrays = []
    for example in examples:
        if _is_key(example):  # a PRNG key argument (a VAE's sampling key) is passed as it is
            arrays.append(example)
            continue
        shape = tuple(example.shape)
        if shape and shape[0] == 1:
            shape = (COMPARISON_BATCH, *shape[1:])
        if np.issubdtype(example.dtype, np.integer):
            arrays.append(random.integers(0, integer_limit, shape).astype(example.dtype))
        elif example.dtype == np.bool_:
            arrays.append(random.integers(0, 2, shape).astype(bool))
        else:
            arrays.append(random.standard_normal(shape).astype(example.dtype))
    return arrays


def _is_key(array: jax.Array) -> bool:
    return jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key)


def integer_limit(examples: list[jax.Array], params: Any) -> int:
    """Token ids must index every embedding table: below the smallest table, else below
    the example's own largest id + 1."""
    from flax import traverse_util

    tables = [value.shape[0] for path, value in traverse_util.flatten_dict(params).items()
              if path[-1] == "embedding" and getattr(value, "ndim", 0) == 2]
    if tables:
        return min(tables)
    largest = [int(np.max(example)) for example in examples
               if not _is_key(example) and np.issubdtype(example.dtype, np.integer) and example.size]
    return max([2] + [value + 1 for value in largest])


def build_nnx_model(cls: type, args: list, kwargs: dict, examples: list[jax.Array], spec: ModelSpec):
    """``cls(*input sizes, *args, **kwargs, rngs=nnx.Rngs(0))``: the converted ``__init__``
    takes the input feature sizes Linen inferred first, named by the conversion's rule."""
    from flax import nnx

    from nnxlint.conversion.base import size_names

    init_parameters = inspect.signature(cls.__init__).parameters
    call_parameters = list(inspect.signature(cls.__call__).parameters.values())[1:]
    # the size parameters lead the signature; a field may have the first name (then the size has the second)
    leading = list(init_parameters)[1:]
    sizes = []
    for index, (parameter, example) in enumerate(zip(call_parameters, examples)):
        names = [name for name in size_names(parameter.name, index) if name not in kwargs]
        if leading and example.ndim and leading[0] in names:
            sizes.append(int(example.shape[-1]))
            leading.pop(0)
    try:
        # built under nnx.jit: its initialisers compile as one program, not one per operation
        return nnx.jit(lambda: cls(*sizes, *args, **kwargs, **(
            {"rngs": nnx.Rngs(0)} if "rngs" in init_parameters else {})))()
    except Exception as error:
        hint = " (pass --input-shape: the converted __init__ takes the input sizes first)" if (
            not examples and "in_features" in init_parameters) else ""
        raise BuildError(f"building the NNX `{spec.class_name}` raised {type(error).__name__}: {error}{hint}") \
            from error


def flat_leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def variable_type(model, collection: str) -> Optional[type]:
    """The model's ``nnx.Variable`` type for a Linen collection: Param, BatchStat, or the
    subclass the conversion named after a collection of the user's own (``counter`` -> ``Counter``)."""
    from flax import nnx

    from nnxlint.conversion.linen_map import custom_variable_type
    from nnxlint.transplant import COLLECTION_TYPES

    if collection in COLLECTION_TYPES:
        return COLLECTION_TYPES[collection]
    name = custom_variable_type(collection)
    return next((type(variable) for _, variable in nnx.to_flat_state(nnx.state(model))
                 if type(variable).__name__ == name), None)
