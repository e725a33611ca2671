"""Shapes through squeeze, expand_dims and ``a @ b`` (nnxlint/conversion/axis_shapes.py), and
``jnp.concatenate`` with a positional axis: an attention-pooling classifier in the style of
flax's sst2 converts on its own (rank unknown) and gives Linen's outputs from its weights."""

from __future__ import annotations

import libcst as cst
import pytest

from conversion_helpers import convert
from nnxlint.conversion.axis_shapes import expand_dims, matmul, squeeze
from nnxlint.conversion.shapes import ANY_AXES, SOME_AXES, Size, keeps_input_rank, open_shape

B, T, F = None, Size.number(5), Size("features")


def _axis(value: int) -> cst.BaseExpression:
    return cst.parse_expression(str(value))


def test_known_shapes_follow_numpy():
    assert squeeze((B, T, Size.number(1)), _axis(-1)) == (B, T)
    assert squeeze((B, Size.number(1), F), _axis(1)) == (B, F)
    assert squeeze((B, T, F), _axis(1)) is None  # numpy raises: the axis is not of size 1
    assert squeeze((B, T), None) is None  # every axis of size 1: not followed
    assert expand_dims((B, T), _axis(1)) == (B, Size.number(1), T)
    assert expand_dims((B, T), _axis(-1)) == (B, T, Size.number(1))
    assert matmul((B, Size.number(1), T), (B, T, F)) == (B, Size.number(1), F)
    assert matmul((T,), (B, T, F)) == (B, F)
    assert matmul((B, T, F), (F,)) is None  # a vector on the right: its axis is contracted away


def test_open_shapes_keep_the_last_axis_and_lose_the_input_rank():
    values = open_shape(F)
    assert squeeze(values, _axis(-1)) is None  # the last axis itself goes
    pooled = squeeze(matmul(None, values), _axis(1))
    assert pooled == (ANY_AXES, F) and pooled[0] is SOME_AXES
    assert not keeps_input_rank(pooled) and keeps_input_rank(values)
    assert expand_dims(values, _axis(-1)) is None


POOLING = '''\
import jax.numpy as jnp
import flax.linen as nn


class Pooler(nn.Module):
    hidden: int
    classes: int

    @nn.compact
    def __call__(self, values, lengths):
        mask = jnp.arange(values.shape[1])[None] < lengths[:, None]
        energy = nn.Dense(1, use_bias=False)(nn.tanh(nn.Dense(self.hidden)(values)))
        weights = nn.softmax(jnp.where(mask, energy.squeeze(-1), -jnp.inf), axis=-1)
        context = (jnp.expand_dims(weights, 1) @ values).squeeze(1)
        both = jnp.concatenate([values[:, 0, :], context], -1)
        return nn.Dense(self.classes)(both)
'''


def test_an_attention_pooler_converts_on_its_own_and_gives_linen_outputs():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, messages = convert(POOLING)
    assert fixed is not None, messages
    # the pooled context keeps the input's last axis; concatenated with a slice of it
    assert "self.dense_2 = nnx.Linear(in_features + in_features, classes, rngs=rngs)" in fixed
    linen_namespace: dict = {}
    exec(POOLING, linen_namespace)
    nnx_namespace: dict = {}
    exec(fixed, nnx_namespace)
    values = jax.random.normal(jax.random.key(1), (2, 5, 4))
    lengths = jnp.array([5, 3])
    linen_model = linen_namespace["Pooler"](hidden=3, classes=2)
    variables = linen_model.init(jax.random.key(0), values, lengths)
    model = nnx_namespace["Pooler"](4, hidden=3, classes=2, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    expected = linen_model.apply(variables, values, lengths)
    assert jnp.allclose(model(values, lengths), expected, rtol=1e-6, atol=0)


def test_a_plain_vmap_function_is_followed_per_example():
    from nnxlint import names
    from nnxlint.conversion.axis_shapes import batched, per_example, vmap_kind
    from nnxlint.conversion.file import FileConverter

    module = cst.parse_module(
        "import functools\nimport jax\n\n@jax.vmap\ndef flip(x, n):\n    return x\n\n"
        "@functools.partial(jax.vmap, in_axes=(0, None))\ndef shift(x, n):\n    return x\n\n"
        "def plain(x):\n    return x\n")
    env = FileConverter(module, names.collect_scope(module, None), "m.py").env
    kinds = {statement.name.value: vmap_kind(env, statement) for statement in module.body
             if isinstance(statement, cst.FunctionDef)}
    assert kinds == {"flip": True, "shift": None, "plain": False}  # None: mapped otherwise, not followed
    assert per_example((B, T, F)) == (T, F) and batched((F,)) == (None, F)
    assert per_example(open_shape(F)) == open_shape(F) == batched(open_shape(F))
