"""Load Linen variables into an NNX model: the checkpoint converter of the Linen migration.

Linen and NNX lay out every built-in layer's parameters identically (Dense and
Linear, Conv, Embed, the norms, BatchNorm statistics, attention); only the
submodule names differ.  ``load_linen_variables`` maps a Linen variables tree
(``{'params': ..., 'batch_stats': ...}``, as ``Module.init`` returns it or as a
checkpoint stores it) onto the state of an NNX model built by the converted code:

- Linen auto-names become the NNX attribute names nnxlint's conversion gives
  them (``Dense_0`` -> ``dense_0``, see ``nnxlint.conversion.naming``); explicit names
  (``name='encoder'``, ``setup`` attributes) are kept, but for one that is no
  identifier (``name='norm-pre-head'`` -> ``norm_pre_head``, ``naming.identifier_name``);
- a Linen list attribute element (``layers_0``) becomes the ``nnx.List`` entry
  ``layers/0``, and a module a loop creates (``Block_2``) the entry of the
  list named after its class (``blocks/2``, ``naming.nnx_list_name``), or of
  the one list whose elements are all of that class (a field holding one of
  several block classes: ``ResNetBlock_2`` -> ``blocks/2``);
- a Linen layer with no NNX twin kept in ``nnx.bridge.ToNNX`` (``ConvLocal``, after
  ``nnx.bridge.lazy_init``) keeps Linen's parameter names; handed to a class through a
  field that defaults to its twin (``conv=nn.ConvLocal`` for ``nn.Conv``), its Linen
  auto-name ``ConvLocal_0`` is the twin's ``conv_0``;
- the LSTM gate parameter ``if`` becomes ``if_`` (``if`` is a Python keyword);
- a GRU cell's per-gate layers (``ir``/``iz``/``in``, ``hr``/``hz``/``hn``)
  are concatenated into ``nnx.GRUCell``'s fused ``dense_i`` / ``dense_h`` in
  the order NNX splits them (``linen_map.FUSED_GATES``); Linen's ``hn`` bias,
  which ``nnx.GRUCell`` has no parameter for, loads into the ``hn_bias`` of the
  subclass the conversion builds (``linen_map.KEPT_GATE_PARAMETERS``,
  ``conversion/constructs/gru.py``); into a plain ``nnx.GRUCell`` it must be zero
  (it is at init);
- a stacked layer (``nn.scan`` with ``variable_axes={'params': 0}``) loads as
  it is: its leading layer axis is the one ``nnx.vmap`` gives the NNX stack;
- a partitioned value (``nn.with_partitioning`` / ``nn.with_logical_partitioning``
  boxes) is unboxed, and its axis names must be the NNX variable's
  ``out_sharding`` (what ``nnx.with_partitioning`` / ``kernel_metadata`` set),
  so that a sharded model stays sharded;
- ``cache`` (an attention decode cache, from ``init(..., decode=True)`` or an
  ``apply(..., mutable=['cache'])``) fills the ``nnx.Cache`` variables that
  ``init_cache`` created; it is optional, as caches are not part of a checkpoint;
- ``params`` fills the ``nnx.Param`` variables, ``batch_stats`` the
  ``nnx.BatchStat`` ones, and a collection of the user's own (``counter``) the
  model's ``nnx.Variable`` subclass that the conversion names after it
  (``Counter``, see ``nnxlint.conversion.linen_map.custom_variable_type``).

Every value is checked against the variable it replaces: shape and dtype must
agree (``nnx.update`` itself does not check shapes), every Linen entry must
find its NNX variable and every NNX variable of a loaded collection must be
filled.  Any mismatch raises ``TransplantError`` naming the path.

Example::

    variables = LinenModel().init(jax.random.key(0), x)
    model = NNXModel(rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import meta

from nnxlint.conversion.linen_map import (
    BRIDGED_LAYERS,
    FUSED_GATES,
    KEPT_GATE_PARAMETERS,
    UNFUSABLE_GATE_PARAMETERS,
    custom_variable_type,
)
from nnxlint.conversion.naming import identifier_name, nnx_attribute_name, nnx_list_name

COLLECTION_TYPES: dict[str, type[nnx.Variable]] = {"params": nnx.Param, "batch_stats": nnx.BatchStat}
# Loaded when given, never required: run-time state that a checkpoint leaves out.
TRANSIENT_COLLECTION_TYPES: dict[str, type[nnx.Variable]] = {"cache": nnx.Cache}
# Linen parameter names that are Python keywords and so renamed as NNX attributes.
RENAMED_PARAMETERS = {"if": "if_"}
_LIST_ELEMENT = re.compile(r"(?P<attribute>.+)_(?P<index>\d+)")

Path = tuple[Any, ...]


class TransplantError(ValueError):
    """The Linen variables do not fit the NNX model."""


def load_linen_variables(model: nnx.Module, variables: Mapping[str, Any]) -> None:
    """Replace ``model``'s variable values with the Linen ``variables``, in place."""
    if not isinstance(variables, Mapping):
        raise TransplantError(f"expected a mapping of Linen collections, got {type(variables).__name__}")
    known = {**COLLECTION_TYPES, **TRANSIENT_COLLECTION_TYPES}
    collection_types = {**known, **_custom_collection_types(model, set(variables) - set(known))}
    unknown = sorted(set(variables) - set(collection_types))
    if unknown:
        raise TransplantError(
            f"unknown Linen collection(s) {unknown}: expected the variables dict itself "
            f"(collections {sorted(COLLECTION_TYPES)}, or one whose nnx.Variable subclass in the model is "
            f"named after it), as Module.init returns it")
    for collection, variable_type in collection_types.items():
        state = nnx.state(model, variable_type)
        targets = dict(nnx.to_flat_state(state))
        if collection not in variables:
            if targets and collection not in TRANSIENT_COLLECTION_TYPES:
                raise TransplantError(
                    f"the NNX model has {variable_type.__name__} variables "
                    f"({_show(next(iter(targets)))}, ...) but the Linen variables have no {collection!r}")
            continue
        if not targets and collection in TRANSIENT_COLLECTION_TYPES:
            raise TransplantError(f"the Linen variables have {collection!r} but the NNX model has no "
                                  f"{variable_type.__name__} variables yet (call init_cache on it first)")
        aliases = _shared_variable_paths(model, targets)
        values = linen_collection_to_nnx_paths(
            variables[collection], {**targets, **{alias: targets[path] for alias, path in aliases.items()}},
            collection, _list_classes(model))
        values = {aliases.get(path, path): value for path, value in values.items()}
        missing = sorted(set(targets) - set(values), key=str)
        if missing:
            raise TransplantError(
                f"NNX {variable_type.__name__} variable(s) with no Linen value in {collection!r}: "
                f"{', '.join(_show(path) for path in missing)}")
        nnx.replace_by_pure_dict(state, _nest(values))
        nnx.update(model, state)


def _custom_collection_types(model: nnx.Module, collections: set[str]) -> dict[str, type[nnx.Variable]]:
    """The model's Variable subclasses named after the given Linen collections."""
    by_name = {custom_variable_type(collection): collection for collection in collections}
    found: dict[str, type[nnx.Variable]] = {}
    for _, variable in nnx.to_flat_state(nnx.state(model)):
        collection = by_name.get(type(variable).__name__)
        if collection is not None:
            found[collection] = type(variable)
    return found


def _shared_variable_paths(model: nnx.Module, targets: Mapping[Path, Any]) -> dict[Path, Path]:
    """Every other path of a variable held in several places (a module passed to two
    submodules, as flax's wmt shares its embedding) -> the one NNX's state reports.
    Linen keeps such a variable where it was made, which may be any of them."""
    paths_by_variable: dict[int, list[Path]] = {}

    def walk(node: Any, path: Path) -> None:
        if isinstance(node, nnx.Variable):
            paths_by_variable.setdefault(id(node), []).append(path)
        elif nnx.graph.is_graph_node(node) or isinstance(node, (list, tuple, dict)):
            for key, child in nnx.graph.get_node_impl(node).node_dict(node).items():
                walk(child, path + (key,))

    walk(model, ())
    aliases = {}
    for paths in paths_by_variable.values():
        reported = [path for path in paths if path in targets]
        aliases.update({path: reported[0] for path in paths if reported and path not in targets})
    return aliases


def _list_classes(model: nnx.Module) -> dict[Path, str]:
    """``nnx.List`` attributes whose elements are modules of one class -> that class's name."""
    classes: dict[Path, set[str]] = {}
    lists = {path for path, node in nnx.iter_graph(model) if isinstance(node, nnx.List)}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and path and path[:-1] in lists and isinstance(path[-1], int):
            classes.setdefault(path[:-1], set()).add(type(node).__name__)
    return {path: names.pop() for path, names in classes.items() if len(names) == 1}


def linen_collection_to_nnx_paths(collection: Mapping[str, Any], targets: Mapping[Path, nnx.Variable],
                                  collection_name: str = "params",
                                  list_classes: Mapping[Path, str] | None = None) -> dict[Path, Any]:
    """The arrays of one Linen collection keyed by the NNX state path they belong to.

    ``targets`` is the flat NNX state (path -> Variable) the values must fit;
    ``list_classes`` the model's lists of modules of one class (``_list_classes``).
    """
    prefixes = {path[:depth] for path in targets for depth in range(len(path) + 1)}
    found: dict[Path, Any] = {}

    def walk(node: Any, linen_path: tuple[str, ...], nnx_path: Path) -> None:
        if isinstance(node, Mapping):
            node = _fused_gates(node, nnx_path, prefixes, linen_path, collection_name)
            for key, child in node.items():
                walk(child, linen_path + (key,), _child_path(nnx_path, str(key), prefixes, linen_path + (key,),
                                                            collection_name, list_classes or {}))
            return
        variable = targets.get(nnx_path)
        if variable is None:
            raise TransplantError(f"Linen {collection_name} entry {_show(linen_path)} is a module in the "
                                  f"NNX model ({_show(nnx_path)}), not a variable")
        node, names = _unboxed(node)
        expected, given = tuple(variable.shape), tuple(getattr(node, "shape", ()))
        if expected != given:
            raise TransplantError(f"shape mismatch for {collection_name} {_show(linen_path)}: Linen has "
                                  f"{given}, the NNX variable {_show(nnx_path)} has {expected}")
        if getattr(node, "dtype", None) != variable.dtype:
            raise TransplantError(f"dtype mismatch for {collection_name} {_show(linen_path)}: Linen has "
                                  f"{getattr(node, 'dtype', type(node).__name__)}, the NNX variable "
                                  f"{_show(nnx_path)} has {variable.dtype}")
        sharding = variable.get_metadata().get("out_sharding")
        if names is not None and tuple(names) != tuple(sharding or ()):
            raise TransplantError(f"partitioning mismatch for {collection_name} {_show(linen_path)}: Linen names "
                                  f"its axes {tuple(names)}, the NNX variable {_show(nnx_path)} "
                                  f"{'has out_sharding ' + str(tuple(sharding)) if sharding else 'has none'}")
        found[nnx_path] = node

    walk(collection, (), ())
    return found


def _unboxed(node: Any) -> tuple[Any, tuple | None]:
    """A Linen value without its partitioning box, and the box's axis names."""
    if isinstance(node, meta.Partitioned):  # the value itself: no sharding constraint (the NNX variable has its own)
        return node.unbox(apply_constraint=False), node.names
    if isinstance(node, meta.AxisMetadata):
        return node.unbox(), getattr(node, "names", None)
    return node, None


def _fused_gates(node: Mapping[str, Any], nnx_path: Path, prefixes: set[Path], linen_path: tuple[str, ...],
                 collection_name: str) -> Mapping[str, Any]:
    """A Linen cell's per-gate layers concatenated into the NNX cell's fused ones; other nodes unchanged."""
    for cell, fused in FUSED_GATES.items():
        gates = {gate for gate_layers in fused.values() for gate in gate_layers}
        if set(node) != gates or not all(nnx_path + (layer,) in prefixes for layer in fused):
            continue
        kept = {}  # the unfusable parameters that the converted cell's subclass holds
        for gate, parameter in UNFUSABLE_GATE_PARAMETERS[cell]:
            attribute = KEPT_GATE_PARAMETERS.get(cell, {}).get((gate, parameter))
            if attribute is not None and nnx_path + (attribute,) in prefixes and parameter in node[gate]:
                kept[attribute] = node[gate][parameter]
                continue
            value = _unboxed(node[gate].get(parameter, 0))[0]
            if not isinstance(value, jax.core.Tracer) and np.any(np.asarray(value) != 0):
                raise TransplantError(
                    f"Linen {cell} {_show(linen_path)} has a nonzero {gate}/{parameter}, which nnx.{cell} has "
                    f"no parameter for (Linen's {cell} adds it inside the reset gate); only a cell whose "
                    f"{gate}/{parameter} is zero, as at init, loads exactly (the conversion builds a subclass "
                    f"that holds it as `{attribute}`)")
        return {**{layer: {parameter: jnp.concatenate([_unboxed(node[gate][parameter])[0] for gate in gate_layers],
                                                      axis=-1)
                           for parameter in _shared_parameters(node, gate_layers, cell)}
                   for layer, gate_layers in fused.items()}, **kept}
    return node


def _shared_parameters(node: Mapping[str, Any], gate_layers: tuple[str, ...], cell: str) -> list[str]:
    """The parameters every gate layer of a fused NNX layer has (those the NNX layer holds)."""
    unfusable = set(UNFUSABLE_GATE_PARAMETERS[cell])
    held = [{parameter for parameter in node[gate] if (gate, parameter) not in unfusable} for gate in gate_layers]
    return sorted(set.intersection(*held))


def _child_path(parent: Path, linen_key: str, prefixes: set[Path], linen_path: tuple[str, ...],
                collection_name: str, list_classes: Mapping[Path, str]) -> Path:
    candidates = [parent + (RENAMED_PARAMETERS.get(linen_key, linen_key),),
                  parent + (nnx_attribute_name(linen_key),), parent + (identifier_name(linen_key),)]
    element = _LIST_ELEMENT.fullmatch(linen_key)
    if element:
        candidates.append(parent + (element["attribute"], int(element["index"])))
        if element["attribute"][:1].isupper():  # an auto-name made in a loop
            candidates.append(parent + (nnx_list_name(element["attribute"]), int(element["index"])))
            holding = [path for path, name in list_classes.items()
                       if name == element["attribute"] and path[:-1] == parent]
            if len(holding) == 1:
                candidates.append(holding[0] + (int(element["index"]),))
        if element["attribute"] in BRIDGED_LAYERS:  # handed in for its twin: named as the twin's layers
            candidates.append(parent + (nnx_attribute_name(f"{BRIDGED_LAYERS[element['attribute']]}_"
                                                           f"{element['index']}"),))
    for candidate in candidates:
        if candidate in prefixes:
            return candidate
    available = sorted({str(path[len(parent)]) for path in prefixes if len(path) > len(parent)
                        and path[:len(parent)] == parent})
    raise TransplantError(f"Linen {collection_name} entry {_show(linen_path)} has no counterpart in the NNX "
                          f"model; at {_show(parent) or 'the top level'} it has: {', '.join(available) or 'nothing'}")


def _nest(flat: Mapping[Path, Any]) -> dict:
    nested: dict = {}
    for path, value in flat.items():
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return nested


def _show(path: Path) -> str:
    return "/".join(str(part) for part in path)
