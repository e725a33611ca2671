"""A stack loop over ``zip`` of fields whose variable is named like a field, as
reinforcement-learning image encoders write it: ``for features, stride in
zip(self.features, self.strides)``.  The loop converts like one over a field
(``constructs/loop_stack.py``) and its variable is renamed (``features_``,
``constructs/shadowing_loop.py``), so ``__init__``, which takes the field as its
parameter ``features``, still reads the field after the loop."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

ENCODER = '''
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class Encoder(nn.Module):
    features: Sequence[int] = (6, 6, 4)
    strides: Sequence[int] = (2, 1, 1)

    @nn.compact
    def __call__(self, observations):
        x = observations.astype(jnp.float32) / 255.0
        for features, stride in zip(self.features, self.strides):
            x = nn.Conv(features, kernel_size=(3, 3), strides=(stride, stride), padding="VALID")(x)
            x = nn.relu(x)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(len(self.features))(x)
'''


def test_the_loop_over_zip_builds_the_list_and_its_variable_no_longer_hides_the_field():
    fixed, messages = convert(ENCODER)
    assert fixed is not None, messages
    assert ("        for features_, stride in zip(features, strides):\n"
            "            self.convs.append(nnx.Conv(x_features, features_, kernel_size=(3, 3), "
            "strides=(stride, stride), padding=\"VALID\", rngs=rngs))\n"
            "            x_features = features_\n") in fixed
    # the spatial axes run through the loop beside the features: the flattened size is theirs
    assert ("            x_features = features_\n"
            "            x_shape_1 = (x_shape_1 - 3) // stride + 1\n"
            "            x_shape_2 = (x_shape_2 - 3) // stride + 1\n") in fixed
    assert "self.dense_0 = nnx.Linear(x_shape_1 * x_shape_2 * x_features, len(features), rngs=rngs)" in fixed
    assert "for index, (features_, stride) in enumerate(zip(self.features, self.strides)):" in fixed
    assert convert(fixed)[0] is None


def test_the_converted_encoder_computes_what_linen_does_from_the_same_weights():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(ENCODER)
    assert fixed is not None, messages
    difference = max_relative_difference(
        ENCODER, fixed, lambda linen: linen["Encoder"](),
        lambda converted, nnx: converted["Encoder"](3, 12, 12, rngs=nnx.Rngs(0)),
        jax.random.uniform(jax.random.key(1), (2, 12, 12, 3), maxval=255.0), [({}, "eval")])
    assert difference < 1e-5
