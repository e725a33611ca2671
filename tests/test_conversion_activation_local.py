"""An activation chosen from a string field into a local (``activation = nn.relu`` or
``nn.tanh``), as RL actor-critics write it, keeps the shape of what it is called on
(``constructs/activation_locals.py``): the layers after it take their input size from
the class, not as constructor parameters."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

SOURCE = '''
import flax.linen as nn


class ActorCritic(nn.Module):
    actions: int = 3
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        if self.activation == "relu":
            activation = nn.relu
        else:
            activation = nn.tanh
        hidden = activation(nn.Dense(8)(x))
        hidden = activation(nn.Dense(8)(hidden))
        return nn.Dense(self.actions)(hidden)
'''


def test_the_layers_after_the_activation_know_their_input_size():
    fixed, messages = convert(SOURCE)
    assert fixed is not None, messages
    assert "def __init__(self, in_features: int, actions: int = 3, activation: str = \"tanh\", *, " \
        "rngs: nnx.Rngs):" in fixed
    assert "self.dense_1 = nnx.Linear(8, 8, rngs=rngs)" in fixed
    assert "activation = nnx.relu" in fixed and "activation = nnx.tanh" in fixed


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_converted_class_matches_linen(activation):
    jax = pytest.importorskip("jax")
    fixed, messages = convert(SOURCE)
    assert fixed is not None, messages
    difference = max_relative_difference(
        SOURCE, fixed, lambda linen: linen["ActorCritic"](activation=activation),
        lambda converted, nnx: converted["ActorCritic"](5, activation=activation, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
    assert difference < 1e-6


@pytest.mark.parametrize("other", [
    "activation = lambda y: y.sum(-1, keepdims=True)",  # not an elementwise function
    "activation = self.pick()",  # a value the class computes
])
def test_a_local_bound_to_anything_else_is_not_followed(other):
    fixed, messages = convert(SOURCE.replace("activation = nn.tanh", other))
    assert fixed is None or "dense_1_in_features" in fixed, fixed
