"""A submodule always called in eval mode (its train/eval argument left to an eval
default, or written as the eval literal) runs on an eval view of itself
(``constructs/pinned_mode.py``), so the parent's ``train()`` does not switch it; and
the output size of a block whose loop runs over ``enumerate`` of a field is the last
value, which its parent passes on."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

CRITIC = '''
from typing import Optional, Sequence

import flax.linen as nn


class MLP(nn.Module):
    sizes: Sequence[int]
    rate: Optional[float] = 0.5

    @nn.compact
    def __call__(self, x, training: bool = False):
        for i, size in enumerate(self.sizes):
            x = nn.Dense(size)(x)
            if i + 1 < len(self.sizes):
                x = nn.Dropout(rate=self.rate)(nn.relu(x), deterministic=not training)
        return x


class Critic(nn.Module):
    @nn.compact
    def __call__(self, x, training: bool = False):
        h = MLP((8, 6))(x)
        h = nn.BatchNorm(use_running_average=not training)(h)
        return MLP((5, 1))(h, training=False)
'''


def test_children_always_in_eval_mode_run_on_an_eval_view():
    fixed, messages = convert(CRITIC)
    assert fixed is not None, messages
    assert "self.mlp_1 = MLP(6, (5, 1), rngs=rngs)" in fixed  # the last of ``(8, 6)``
    view = "nnx.view(self.mlp_{}, deterministic=True, use_running_average=True, raise_if_not_found=False)"
    assert f"h = {view.format(0)}(x)" in fixed
    assert f"return {view.format(1)}(h)" in fixed
    assert convert(fixed)[0] is None


def test_the_converted_critic_computes_what_linen_does_in_train_and_eval_mode():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(CRITIC)
    assert fixed is not None, messages
    difference = max_relative_difference(
        CRITIC, fixed, lambda linen: linen["Critic"](),
        lambda converted, nnx: converted["Critic"](3, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (4, 3)), [({"training": False}, "eval"), ({"training": True}, "train")])
    assert difference < 1e-5


@pytest.mark.parametrize("call, reason", [
    ("MLP((5, 1))(h, training=True)", "a submodule always called in train mode is not converted"),
    ("MLP((5, 1))(h, self.always)", "fixed for the module that is not a literal"),
])
def test_other_fixed_modes_are_refused(call, reason):
    source = CRITIC.replace("return MLP((5, 1))(h, training=False)", f"return {call}").replace(
        "class Critic(nn.Module):\n", "class Critic(nn.Module):\n    always: bool = False\n\n")
    fixed, messages = convert(source)
    assert fixed is None
    assert reason in messages["Critic"]
