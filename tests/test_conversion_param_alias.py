"""A parameter made in ``setup`` under another attribute than its Linen name
(``self.weight = self.param('kernel', ...)``, the Hugging Face style): the NNX
attribute takes the parameter's name, so the transplant loads it by rule, and
every read of the attribute in the class follows."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

SCALED_NORM = '''
import jax
import jax.numpy as jnp
from flax import linen as nn


class ScaledNorm(nn.Module):
    dim: int
    eps: float = 1e-6

    def setup(self):
        self.scale = self.param("kernel", nn.initializers.ones, (self.dim,), jnp.float32)

    def _normalise(self, x):
        return x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + self.eps)

    def __call__(self, x):
        return self._normalise(x) * jnp.asarray(self.scale, jnp.float32)


class Residual(nn.Module):
    dim: int

    def setup(self):
        self.norm = ScaledNorm(self.dim)
        self.proj = nn.Dense(self.dim)

    def __call__(self, x):
        return x + self.proj(self.norm(x))
'''


def test_the_attribute_takes_the_parameters_name_and_reads_follow():
    fixed, messages = convert(SCALED_NORM)
    assert fixed is not None, messages
    assert "self.kernel = nnx.Param(nnx.initializers.ones(rngs.params(), (dim,), jnp.float32))" in fixed
    assert "return self._normalise(x) * jnp.asarray(self.kernel, jnp.float32)" in fixed
    assert "self.scale" not in fixed


def test_the_converted_model_computes_what_linen_does_from_transplanted_weights():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(SCALED_NORM)
    assert fixed is not None, messages
    difference = max_relative_difference(
        SCALED_NORM, fixed, lambda linen: linen["Residual"](4),
        lambda converted, nnx: converted["Residual"](4, 4, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 4)), [({}, "eval")])
    assert difference == 0.0


def test_a_name_the_class_already_uses_is_refused():
    source = SCALED_NORM.replace("    eps: float = 1e-6\n", "    eps: float = 1e-6\n    kernel: int = 3\n")
    fixed, messages = convert(source)
    assert fixed is None
    assert ("`self.param('kernel', ...)` stored as `self.scale`: the class already has a `kernel`"
            in messages["ScaledNorm"]), messages


# Gemma's ``Einsum``: the parameter's name is a field, so each instance may name it otherwise
FIELD_NAMED = '''
import jax.numpy as jnp
from flax import linen as nn


class Einsum(nn.Module):
    shape: tuple
    weight_name: str = "w"

    @nn.compact
    def __call__(self, eqn, x):
        w = self.param(self.weight_name, nn.initializers.normal(), self.shape)
        return jnp.einsum(eqn, x, w)


class TwoHeads(nn.Module):
    @nn.compact
    def __call__(self, x):
        q = Einsum((4, 3), weight_name="q_proj")("bd,dk->bk", x)
        k = Einsum((4, 3))("bd,dk->bk", x)
        return q * k
'''


def test_a_parameter_named_by_a_field_is_set_under_that_name():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(FIELD_NAMED)
    assert fixed is not None, messages
    assert "setattr(self, weight_name, nnx.Param(nnx.initializers.normal()(rngs.params(), shape)))" in fixed
    assert "w = getattr(self, self.weight_name)[...]" in fixed
    difference = max_relative_difference(
        FIELD_NAMED, fixed, lambda linen: linen["TwoHeads"](),
        lambda converted, nnx: converted["TwoHeads"](rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 4)), [({}, "eval")])
    assert difference == 0.0
