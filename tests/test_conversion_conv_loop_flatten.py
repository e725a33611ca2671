"""An image encoder whose convolutions come from a loop over fields and whose output is
flattened, read by its parent's next layer (jaxrl's DrQ networks write it so): the
encoder follows each spatial axis through the loop in ``__init__``
(``constructs/loop_stack.py``, strides and a ``padding: str`` field known by name),
decides its test of the rank (``constructs/rank_test.py``) and keeps the flattened size as
``out_features``; the parent, which has no convolution of its own, takes the rank its
encoder reads (``input_axes.convolution_rank``) and sizes its layer from the encoder."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

ENCODER = '''\
from typing import Sequence
import flax.linen as nn
import jax.numpy as jnp


class PixelEncoder(nn.Module):
    widths: Sequence[int] = (4, 6, 5)
    steps: Sequence[int] = (2, 1, 2)
    padding: str = "VALID"

    @nn.compact
    def __call__(self, frames):
        x = frames.astype(jnp.float32) / 4.0
        for width, step in zip(self.widths, self.steps):
            x = nn.Conv(width, kernel_size=(3, 3), strides=(step, step), padding=self.padding)(x)
            x = nn.relu(x)
        if x.ndim == 4:
            x = x.reshape([x.shape[0], -1])
        else:
            x = x.reshape([-1])
        return x


class ValueHead(nn.Module):
    latent: int = 7
    padding: str = "VALID"

    @nn.compact
    def __call__(self, frames):
        x = PixelEncoder(padding=self.padding, name="encoder")(frames)
        x = nn.tanh(nn.LayerNorm()(nn.Dense(self.latent)(x)))
        return nn.Dense(1)(x)
'''


def test_the_encoder_follows_its_spatial_axes_through_the_loop_and_keeps_the_flattened_size():
    fixed, messages = convert(ENCODER)
    assert fixed is not None, messages
    assert ("    def __init__(self, in_features: int, frames_shape_1: int, frames_shape_2: int, "
            "widths: Sequence[int] = (4, 6, 5), steps: Sequence[int] = (2, 1, 2), padding: str = \"VALID\", *, "
            "rngs: nnx.Rngs):\n") in fixed
    assert "        x_shape_1 = frames_shape_1\n" in fixed
    assert ("            x_shape_1 = (x_shape_1 - 3) // step + 1 if padding == 'VALID' "
            "else (x_shape_1 + step - 1) // step\n") in fixed
    assert "        self.out_features = x_shape_1 * x_shape_2 * x_features\n" in fixed
    # the parent reads the encoder's size; its own constructor takes the axes the encoder needs
    assert "        self.encoder = PixelEncoder(in_features, frames_shape_1, frames_shape_2, padding=padding, " \
           "rngs=rngs)\n" in fixed
    assert "        self.dense_0 = nnx.Linear(self.encoder.out_features, latent, rngs=rngs)\n" in fixed
    assert "        if x.ndim == 4:\n" in fixed  # the test stays in ``__call__`` as written


@pytest.mark.parametrize("padding, height, width", [("VALID", 13, 11), ("SAME", 9, 12), ("CIRCULAR", 10, 7)])
def test_the_converted_head_computes_what_linen_computes(padding, height, width):
    jnp = pytest.importorskip("jax.numpy")
    fixed, messages = convert(ENCODER)
    assert fixed is not None, messages
    frames = jnp.cos(jnp.arange(2 * height * width * 3, dtype=jnp.float32).reshape(2, height, width, 3)) * 8
    difference = max_relative_difference(
        ENCODER, fixed, lambda linen: linen["ValueHead"](padding=padding),
        lambda ns, nnx: ns["ValueHead"](3, height, width, padding=padding, rngs=nnx.Rngs(0)), frames,
        [({}, "eval")])
    assert difference <= 1e-5


def test_a_padding_field_of_no_stated_type_leaves_the_size_to_the_builder():
    untyped = ENCODER.replace('class PixelEncoder(nn.Module):\n    widths: Sequence[int] = (4, 6, 5)\n'
                              '    steps: Sequence[int] = (2, 1, 2)\n    padding: str = "VALID"',
                              'class PixelEncoder(nn.Module):\n    widths: Sequence[int] = (4, 6, 5)\n'
                              '    steps: Sequence[int] = (2, 1, 2)\n    padding: object = "VALID"')
    assert untyped != ENCODER
    fixed, messages = convert(untyped)
    # explicit padding pairs would size the axes otherwise: no expression of the field is given
    assert fixed is None or "out_features" not in fixed, fixed
