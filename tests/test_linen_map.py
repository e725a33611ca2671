"""The Linen -> NNX layer table against the installed Flax."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

flax_linen = pytest.importorskip("flax.linen")
from flax import nnx  # noqa: E402

from nnxlint.conversion.linen_map import LAYERS, SAME_FUNCTIONS, TWIN_FUNCTIONS, VARIABLE_TYPES  # noqa: E402

MAPPINGS = sorted({id(m): m for m in LAYERS.values()}.values(), key=lambda mapping: mapping.linen)


def _linen_fields(mapping):
    return [f for f in dataclasses.fields(getattr(flax_linen, mapping.linen)) if f.name not in ("parent", "name")]


def _linen_default(mapping, name):
    found = {f.name: f for f in _linen_fields(mapping)}[name]
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


def _nnx_parameters(mapping):
    return inspect.signature(getattr(nnx, mapping.nnx).__init__).parameters


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda mapping: mapping.linen)
def test_both_sides_exist_and_positional_names_match(mapping):
    linen_names = [f.name for f in _linen_fields(mapping)]
    assert linen_names[:len(mapping.linen_positional)] == list(mapping.linen_positional)
    parameters = _nnx_parameters(mapping)
    positional = [name for name, p in parameters.items()
                  if name != "self" and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional[:len(mapping.nnx_positional)] == list(mapping.nnx_positional)
    assert "rngs" in parameters


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda mapping: mapping.linen)
def test_every_keyword_named_exists(mapping):
    linen_names = {f.name for f in _linen_fields(mapping)}
    nnx_names = set(_nnx_parameters(mapping))
    for linen_name, nnx_name in mapping.renamed.items():
        assert linen_name in linen_names and nnx_name in nnx_names
    for name in (*mapping.same_defaults, *mapping.different_defaults):
        assert name in nnx_names, name
    for name in mapping.added:
        assert name in nnx_names
    if mapping.input_size:
        assert mapping.input_size in nnx_names
    if mapping.output_size:
        assert mapping.output_size in linen_names
    linen_call = inspect.signature(getattr(flax_linen, mapping.linen).__call__).parameters
    nnx_call = inspect.signature(getattr(nnx, mapping.nnx).__call__).parameters
    for linen_name, nnx_name in mapping.call_renamed.items():
        assert linen_name in linen_call and nnx_name in nnx_call
    assert list(linen_call)[2:2 + len(mapping.call_positional)] == list(mapping.call_positional)
    if mapping.mode_flag:
        assert mapping.mode_flag in linen_names and mapping.mode_flag in nnx_names


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda mapping: mapping.linen)
def test_every_linen_field_has_an_nnx_parameter_or_is_listed_without_one(mapping):
    nnx_names = set(_nnx_parameters(mapping))
    missing = [f.name for f in _linen_fields(mapping) if mapping.renamed.get(f.name, f.name) not in nnx_names]
    assert missing == list(mapping.no_equivalent)


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda mapping: mapping.linen)
def test_defaults_claimed_equal_are_equal(mapping):
    parameters = _nnx_parameters(mapping)
    for name in mapping.same_defaults:
        linen_default, nnx_default = _linen_default(mapping, name), parameters[name].default
        if callable(linen_default) and callable(nnx_default) and linen_default is not nnx_default:
            # initialisers are closures: equal when they draw the same numbers
            import jax
            key, shape = jax.random.key(0), (4, 3)
            assert (linen_default(key, shape) == nnx_default(key, shape)).all(), name
        else:
            assert linen_default == nnx_default, name
    for name, (linen_value, nnx_value) in mapping.different_defaults.items():
        assert _linen_default(mapping, name) == linen_value
        assert parameters[name].default == nnx_value


def test_functions_are_the_same_objects():
    for name in SAME_FUNCTIONS:
        assert getattr(flax_linen, name) is getattr(nnx, name), name



def test_twin_functions_have_the_same_signature_and_results():
    import jax.numpy as jnp
    tokens = jnp.array([[3, 1, 0], [2, 0, 0]])
    for name in TWIN_FUNCTIONS:
        linen_function, nnx_function = getattr(flax_linen, name), getattr(nnx, name)
        assert linen_function is not nnx_function, f"{name}: the same object belongs in SAME_FUNCTIONS"
        assert inspect.signature(linen_function) == inspect.signature(nnx_function), name
    for make in (lambda m: m.make_causal_mask(tokens),
                 lambda m: m.make_attention_mask(tokens > 0, tokens > 0, jnp.equal, dtype=jnp.int32),
                 lambda m: m.combine_masks(m.make_causal_mask(tokens), None,
                                           m.make_attention_mask(tokens > 0, tokens > 0))):
        linen_mask, nnx_mask = make(flax_linen), make(nnx)
        assert linen_mask.dtype == nnx_mask.dtype and (linen_mask == nnx_mask).all()


def test_collections_map_to_nnx_variable_types():
    for collection, name in VARIABLE_TYPES.items():
        assert issubclass(getattr(nnx, name), nnx.Variable), collection
    # the attention cache NNX makes in init_cache is of the type the ``cache`` collection maps to
    attention = nnx.MultiHeadAttention(2, 4, decode=True, rngs=nnx.Rngs(0))
    attention.init_cache((1, 3, 4))
    assert type(attention.cache_index) is getattr(nnx, VARIABLE_TYPES["cache"])


@pytest.mark.parametrize("mapping", [m for m in MAPPINGS if m.without_variables], ids=lambda mapping: mapping.linen)
def test_layers_listed_without_variables_hold_none_on_either_side(mapping):
    import jax
    import jax.numpy as jnp

    linen_layer = getattr(flax_linen, mapping.linen)(*(0.5 for _ in mapping.linen_positional[:1]))
    mode = {mapping.mode_flag: False} if mapping.mode_flag in mapping.call_positional else {}
    variables = linen_layer.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, jnp.ones((2, 3)), **mode)
    assert not jax.tree_util.tree_leaves(variables)
    nnx_layer = getattr(nnx, mapping.nnx)(*(0.5 for _ in mapping.nnx_positional[:1]), rngs=nnx.Rngs(0))
    assert not jax.tree_util.tree_leaves(nnx.state(nnx_layer, nnx.Param, nnx.BatchStat))
