"""Transplant a trained Linen checkpoint into the converted NNX model and save its state with orbax.

Runs inside the isolated worker (``nnxlint.verify.user_worker``), because
building the NNX model imports the user's code.  Every array of the checkpoint
is mapped on its own, so that all problems are reported at once: Linen entries
with no NNX counterpart, shapes or dtypes that differ, NNX variables the
checkpoint does not fill.  Only a checkpoint that maps completely is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from nnxlint.transplant import COLLECTION_TYPES, TransplantError, linen_collection_to_nnx_paths, load_linen_variables
from nnxlint.verify.sites import ModelSpec
from nnxlint.verify.user_code import (
    BuildError, build_nnx_model, constructor_arguments, example_inputs, import_user_module, user_class,
    variable_type,
)


def read_checkpoint(path: Path, step: Optional[int]) -> tuple[Any, str]:
    """The restored tree and a description of what was read: a ``flax.serialization``
    msgpack file, an orbax PyTree checkpoint, or an orbax CheckpointManager directory
    (its latest step, or ``step``)."""
    if path.is_file():
        from flax import serialization

        try:
            return serialization.msgpack_restore(path.read_bytes()), f"msgpack file {path}"
        except Exception as error:
            raise BuildError(f"{path} is not a flax.serialization msgpack file: {type(error).__name__}: {error}")
    directory = _orbax_item(path, step)
    import orbax.checkpoint as ocp

    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            return checkpointer.restore(directory), f"orbax checkpoint {directory}"
    except Exception as error:
        raise BuildError(f"{directory}: orbax cannot restore it: {type(error).__name__}: {error}") from error


def _orbax_item(path: Path, step: Optional[int]) -> Path:
    if not path.is_dir():
        raise BuildError(f"{path}: no such checkpoint file or directory")
    if _is_orbax_tree(path) and step is None:
        return path
    steps = sorted(int(child.name) for child in path.iterdir() if child.is_dir() and child.name.isdigit())
    if not steps:
        raise BuildError(f"{path} is neither an orbax checkpoint nor a CheckpointManager directory of steps")
    if step is not None and step not in steps:
        raise BuildError(f"{path} has no step {step} (steps: {', '.join(map(str, steps))})")
    chosen = path / str(step if step is not None else steps[-1])
    if _is_orbax_tree(chosen):
        return chosen
    items = [child for child in sorted(chosen.iterdir()) if child.is_dir() and _is_orbax_tree(child)]
    if len(items) != 1:
        raise BuildError(f"{chosen} holds {len(items)} orbax items ({', '.join(item.name for item in items)}): "
                         "name one as the CHECKPOINT")
    return items[0]


def _is_orbax_tree(path: Path) -> bool:
    return (path / "_METADATA").is_file() or (path / "_CHECKPOINT_METADATA").is_file()


def linen_variables(tree: Any, subtree: Optional[str], model: nnx.Module) -> tuple[dict, list[str]]:
    """The Linen variables in a restored checkpoint, and the top-level entries left out.

    A ``{'params': ..., 'batch_stats': ...}`` dict (``Module.init``'s, or a saved
    ``TrainState``, whose ``step`` and ``opt_state`` are not model variables), or a
    bare params tree; ``subtree`` (``state/model``) selects one inside first."""
    for key in [part for part in (subtree or "").split("/") if part]:
        if not isinstance(tree, Mapping) or key not in tree:
            raise BuildError(f"--subtree {subtree}: the checkpoint has no entry {key!r} there"
                             + (f" (it has: {', '.join(map(str, tree))})" if isinstance(tree, Mapping) else ""))
        tree = tree[key]
    if not isinstance(tree, Mapping):
        raise BuildError("the checkpoint holds a single array, not a tree of Linen variables")
    if "params" not in tree:
        return {"params": tree}, []
    known = set(COLLECTION_TYPES) | {name for name in tree if variable_type(model, name) is not None}
    return ({name: value for name, value in tree.items() if name in known},
            sorted(str(name) for name in tree if name not in known))


def map_variables(model: nnx.Module, variables: Mapping[str, Any]) -> tuple[list[dict], list[str]]:
    """Every NNX variable filled (its collection, path, and the Linen subtree it came from), and every problem."""
    mapped: list[dict] = []
    problems: list[str] = []
    collections = dict(variables)
    for name in COLLECTION_TYPES:  # NNX variables the checkpoint must fill too
        collections.setdefault(name, {})
    for collection, tree in collections.items():
        found_type = variable_type(model, collection)
        if found_type is None:
            problems.append(f"the NNX model has no Variable type for the Linen collection {collection!r}")
            continue
        targets = dict(nnx.to_flat_state(nnx.state(model, found_type)))
        found: dict = {}
        if isinstance(tree, Mapping) and tree:
            _map_subtree(tree, (), targets, collection, found, problems)
        mapped += [{"collection": collection, "nnx": "/".join(map(str, nnx_path)), "from": linen}
                   for nnx_path, linen in found.items()]
        unfilled = sorted(set(targets) - set(found), key=str)
        if unfilled:
            problems.append(f"NNX {found_type.__name__} variable(s) left without a value from the checkpoint's "
                            f"{collection!r}: {', '.join('/'.join(map(str, path)) for path in unfilled)}")
    return mapped, problems


def _map_subtree(node: Mapping, path: tuple, targets: dict, collection: str, found: dict, problems: list[str]) -> None:
    """Map ``node`` (at ``path`` in the collection) as a whole; where that fails, each child on
    its own, down to the entries that do not fit, so every problem is reported once."""
    for key, child in node.items():
        if isinstance(child, Mapping) and not child:
            continue
        entry: Any = {key: child}
        for part in reversed(path):
            entry = {part: entry}
        try:
            arrays = linen_collection_to_nnx_paths(entry, targets, collection)
        except TransplantError as error:
            if isinstance(child, Mapping):
                _map_subtree(child, path + (key,), targets, collection, found, problems)
            else:
                problems.append(str(error))
            continue
        for nnx_path in arrays:
            found[nnx_path] = "/".join(map(str, path + (key,)))


def transplant_checkpoint(job: dict) -> dict:
    spec = ModelSpec(**job["spec"])
    module = import_user_module(Path(job["root"]), spec.relative)
    namespace = vars(module)
    nnx_class = user_class(module, spec, nnx.Module, "NNX Module")
    args, kwargs = constructor_arguments(spec, namespace)
    model = build_nnx_model(nnx_class, args, kwargs, example_inputs(spec, namespace), spec)
    tree, source = read_checkpoint(Path(job["checkpoint"]), job.get("step"))
    variables, ignored = linen_variables(tree, job.get("subtree"), model)
    mapped, problems = map_variables(model, variables)
    result = {"status": "fail" if problems else "pass", "checkpoint": source, "file": spec.relative,
              "class_name": spec.class_name, "ignored": ignored, "mapped": mapped, "problems": problems,
              "output": None}
    if problems:
        return result
    load_linen_variables(model, jax.tree.map(jnp.asarray, variables))
    output = Path(job["output"]).resolve()
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(output, nnx.state(model))
    result["output"] = str(output)
    result["arrays"] = {collection: len(jax.tree.leaves(tree)) for collection, tree in variables.items()}
    return result
