"""A layer without variables (``nn.Dropout``) made in a branch inside a stack loop, as
reinforcement-learning MLPs write it (dropout and activation after every layer but the
last): ``__init__`` builds one per iteration and the call keeps its branch
(``constructs/branch_module.py``, ``built_every_iteration``); a layer with weights there
stays refused, because Linen numbers it by the iterations that took the branch."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

MLP = '''
from typing import Optional, Sequence

import flax.linen as nn


class MLP(nn.Module):
    sizes: Sequence[int]
    activate_last: bool = False
    rate: Optional[float] = None

    @nn.compact
    def __call__(self, x, training: bool = False):
        for i, size in enumerate(self.sizes):
            x = nn.Dense(size)(x)
            if i + 1 < len(self.sizes) or self.activate_last:
                x = nn.relu(x)
                if self.rate is not None:
                    x = nn.Dropout(rate=self.rate)(x, deterministic=not training)
        return x
'''


def test_the_dropouts_are_built_for_every_iteration_and_called_in_their_branch():
    fixed, messages = convert(MLP)
    assert fixed is not None, messages
    assert ("self.dropouts = nnx.List([nnx.Dropout(rate=rate, rngs=rngs) for i, size in enumerate(sizes)])"
            in fixed)
    assert ("            if i + 1 < len(self.sizes) or self.activate_last:\n"
            "                x = nnx.relu(x)\n"
            "                if self.rate is not None:\n"
            "                    x = self.dropouts[i](x)\n") in fixed
    assert convert(fixed)[0] is None


@pytest.mark.parametrize("rate, modes", [
    ("0.5", [({"training": False}, "eval")]),
    ("None", [({"training": False}, "eval"), ({"training": True}, "train")]),  # no dropout: train compares too
])
def test_the_converted_mlp_computes_what_linen_does_from_the_same_weights(rate, modes):
    jax = pytest.importorskip("jax")
    fixed, messages = convert(MLP)
    assert fixed is not None, messages
    difference = max_relative_difference(
        MLP, fixed, lambda linen: linen["MLP"]((8, 6, 2), rate=eval(rate)),
        lambda converted, nnx: converted["MLP"](3, (8, 6, 2), rate=eval(rate), rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (4, 3)), modes)
    assert difference < 1e-6


def test_a_layer_with_weights_in_a_branch_inside_the_loop_stays_refused():
    source = MLP.replace("x = nn.relu(x)", "x = nn.LayerNorm()(x)")
    fixed, messages = convert(source)
    assert fixed is None
    assert "submodules created inside a loop or branch are not converted" in messages["MLP"]
