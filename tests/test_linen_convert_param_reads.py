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
