"""A class whose loop moves its running size by a rule that reads that size (BiT's
stage: ``nmid = self.nmid or x.shape[-1] // 4`` in each unit) ends with a size only
its ``__init__`` local holds.  A class that builds it must not read that local: the
size of what follows becomes an input-size parameter of the builder (``loop_stack.py``,
``ClassConverter.final_sizes``), and the model computes what Linen does."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

STAGED = '''
from typing import Optional

from flax import linen as nn


class Unit(nn.Module):
    nmid: Optional[int] = None

    @nn.compact
    def __call__(self, x):
        nmid = self.nmid or x.shape[-1] // 2
        return nn.relu(nn.Dense(nmid * 2)(x))


class Stage(nn.Module):
    depth: int
    nmid: Optional[int] = None

    @nn.compact
    def __call__(self, x):
        for i in range(self.depth):
            x = Unit(self.nmid, name=f"unit{i + 1}")(x)
        return x


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = Stage(2, 4)(x)
        return nn.Dense(3)(x)
'''


def test_the_builder_takes_the_size_after_the_stage_as_a_parameter_not_the_stages_local():
    fixed, messages = convert(STAGED)
    assert fixed is not None, messages
    assert ("        x_features = in_features\n"
            "        for i in range(depth):\n"
            '            setattr(self, f"unit{i + 1}", Unit(x_features, nmid, rngs=rngs))\n'
            "            x_features = (nmid or x_features // 2) * 2\n") in fixed
    net = fixed[fixed.index("class Net"):]
    assert "def __init__(self, in_features: int, dense_0_in_features: int, *, rngs: nnx.Rngs):" in net
    assert "x_features" not in net


def test_the_converted_model_computes_what_linen_does():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(STAGED)
    assert fixed is not None, messages
    difference = max_relative_difference(
        STAGED, fixed, lambda linen: linen["Net"](),
        lambda converted, nnx: converted["Net"](5, 8, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
    assert difference < 1e-5
