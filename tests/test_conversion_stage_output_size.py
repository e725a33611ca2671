"""A class whose loop moves its running size by a rule that reads that size (BiT's
stage: ``nmid = self.nmid or x.shape[-1] // 4`` in each unit) ends with a size only
its ``__init__`` local holds.  A class that builds it must not read that local: the
stage stores it as ``self.out_features`` and the builder reads it from the module it
built (``constructs/built_output_size.py``), and the model computes what Linen does."""

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


def test_the_stage_stores_its_output_size_and_the_builder_reads_it_from_the_module():
    fixed, messages = convert(STAGED)
    assert fixed is not None, messages
    assert ("        x_features = in_features\n"
            "        for i in range(depth):\n"
            '            setattr(self, f"unit{i + 1}", Unit(x_features, nmid, rngs=rngs))\n'
            "            x_features = (nmid or x_features // 2) * 2\n"
            "        self.out_features = x_features\n") in fixed
    net = fixed[fixed.index("class Net"):]
    assert "def __init__(self, in_features: int, *, rngs: nnx.Rngs):" in net
    assert "self.dense_0 = nnx.Linear(self.stage_0.out_features, 3, rngs=rngs)" in net
    assert "x_features" not in net
    assert "out_features" not in fixed[fixed.index("class Unit"):fixed.index("class Stage")]  # its size is known


def test_a_builders_loop_reads_the_size_of_the_element_it_built_last():
    source = STAGED.replace("        x = Stage(2, 4)(x)\n",
                            "        for i in range(3):\n            x = Stage(2, name=f\"stage{i + 1}\")(x)\n")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert ('            setattr(self, f"stage{i + 1}", Stage(x_features, 2, rngs=rngs))\n'
            '            x_features = getattr(self, f"stage{i + 1}").out_features\n') in fixed
    jax = pytest.importorskip("jax")
    difference = max_relative_difference(
        source, fixed, lambda linen: linen["Net"](),
        lambda converted, nnx: converted["Net"](6, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 6)), [({}, "eval")])
    assert difference < 1e-5


def test_the_converted_model_computes_what_linen_does():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(STAGED)
    assert fixed is not None, messages
    difference = max_relative_difference(
        STAGED, fixed, lambda linen: linen["Net"](),
        lambda converted, nnx: converted["Net"](5, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
    assert difference < 1e-5


def test_a_size_set_only_under_a_branch_is_not_stored():
    """The running size exists only when the branch is taken: the stage stores nothing, and
    the builder takes the size of what follows as a parameter instead."""
    source = STAGED.replace("        for i in range(self.depth):\n            x = Unit(self.nmid, name=f\"unit{i + 1}\")(x)\n",
                            "        if self.depth:\n            for i in range(self.depth):\n"
                            "                x = Unit(self.nmid, name=f\"unit{i + 1}\")(x)\n")
    assert source != STAGED
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "out_features" not in fixed
    assert "def __init__(self, in_features: int, dense_0_in_features: int, *, rngs: nnx.Rngs):" in fixed
