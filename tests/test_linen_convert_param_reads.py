"""``self.param(...)`` read in place inside an expression (a position embedding added
as ``x + self.param('pos_embedding', init, shape)``, as ViT-style models write it)
converts like an assigned one: an ``nnx.Param`` made in ``__init__``, read as
``self.name[...]`` where the call stood."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

POSITIONS = '''\
import flax.linen as nn


class Positions(nn.Module):
    length: int = 4

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8)(x)
        x = x + self.param('pos_embedding', nn.initializers.normal(0.02), (1, self.length, 8))
        return nn.Dense(2)(x * self.param('scale', nn.initializers.ones, (8,)))
'''


def test_a_param_read_inside_an_expression_becomes_an_nnx_param_read_in_place():
    fixed, messages = convert(POSITIONS)
    assert fixed is not None, messages
    assert "self.pos_embedding = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (1, length, 8)))" in fixed
    assert "x = x + self.pos_embedding[...]" in fixed
    assert "return self.dense_1(x * self.scale[...])" in fixed


def test_the_converted_model_computes_what_linen_computes():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(POSITIONS)
    assert fixed is not None, messages
    x = jax.random.normal(jax.random.key(1), (2, 4, 3))
    difference = max_relative_difference(
        POSITIONS, fixed, lambda linen: linen["Positions"](),
        lambda converted, nnx: converted["Positions"](3, rngs=nnx.Rngs(0)), x, [({}, "eval")])
    assert difference == 0.0


TEMPERATURE = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


def scaled_normal(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape)


class Temperature(nn.Module):
    start: float = 0.5

    @nn.compact
    def __call__(self):
        log_t = self.param("log_t", init_fn=lambda key: jnp.full((), jnp.log(self.start)))
        spread = self.param("spread", scaled_normal, (3,), scale=self.start)
        return jnp.exp(log_t) * spread
'''


def test_keyword_arguments_of_self_param_are_linen_s_init_fn_and_init_kwargs():
    fixed, messages = convert(TEMPERATURE)
    assert fixed is not None, messages
    # Linen: ``param(name, init_fn, *init_args, unbox=True, **init_kwargs)``; a lambda is called in parentheses
    assert "self.log_t = nnx.Param((lambda key: jnp.full((), jnp.log(start)))(rngs.params()))" in fixed
    assert "self.spread = nnx.Param(scaled_normal(rngs.params(), (3,), scale=start))" in fixed
    assert convert(fixed)[0] is None


def test_the_converted_temperature_computes_what_linen_computes():
    jax = pytest.importorskip("jax")
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, messages = convert(TEMPERATURE)
    assert fixed is not None, messages
    linen, converted = {}, {}
    exec(TEMPERATURE, linen)
    exec(fixed, converted)
    variables = linen["Temperature"](0.25).init(jax.random.key(0))
    model = converted["Temperature"](0.25, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    np.testing.assert_array_equal(np.asarray(model()), np.asarray(linen["Temperature"](0.25).apply(variables)))


@pytest.mark.parametrize("call, reason", [
    ('self.param("w", nn.initializers.zeros, (3,), unbox=False)', "`self.param(..., unbox=...)`"),
    ('self.param("w", *rest)', "`self.param` with starred arguments"),
    ('self.param("w", nn.initializers.zeros, init_fn=nn.initializers.ones)', "`self.param` given `init_fn` twice"),
])
def test_self_param_forms_without_an_nnx_twin_are_refused(call, reason):
    source = TEMPERATURE.replace('self.param("log_t", init_fn=lambda key: jnp.full((), jnp.log(self.start)))', call)
    fixed, messages = convert(source)
    assert fixed is None
    assert reason in messages["Temperature"]
