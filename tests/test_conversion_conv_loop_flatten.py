"""An image encoder whose convolutions come from a loop over fields and whose output is
flattened, read by its parent's next layer (jaxrl's DrQ networks write it so): the
encoder follows each spatial axis through the loop in ``__init__``
(``constructs/loop_stack.py``, strides and a ``padding: str`` field known by name),
decides its test of the rank (``constructs/rank_test.py``) and keeps the flattened size as
``out_features``; the parent, which has no convolution of its own, takes the rank its
encoder reads (``input_axes.convolution_rank``) and sizes its layer from the encoder."""

from __future__ import annotations

import json

import pytest

from conversion_helpers import (bridged_training_script, compared_runs, convert, max_relative_difference,
                                write_project)

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


CRITIC = ENCODER.split("class ValueHead")[0] + '''class Critic(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, frames, actions):
        x = PixelEncoder(name="encoder")(frames)
        x = nn.tanh(nn.LayerNorm()(nn.Dense(self.hidden)(x)))
        return nn.Dense(1)(jnp.concatenate([x, actions], -1)).squeeze(-1)
'''

# Linen training code in another file, as jaxrl's learners keep it: it stays, building the
# converted critic through the bridge, which reads the sizes off the inputs of ``init``
LEARNER = '''\
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

import models


def learn(steps, params=None):
    critic = models.Critic(hidden=8)
    frames = jax.random.uniform(jax.random.key(1), (4, 15, 13, 3)) * 255
    actions = jax.random.normal(jax.random.key(2), (4, 2))
    targets = jnp.linspace(-1.0, 1.0, 4)
    if params is None:
        params = critic.init(jax.random.key(0), frames, actions)["params"]
    state = train_state.TrainState.create(apply_fn=critic.apply, params=params, tx=optax.sgd(0.05))
    losses = []
    for _ in range(steps):
        state, loss = update(state, frames, actions, targets)
        losses.append(float(loss))
    return losses, state.params


@jax.jit
def update(state, frames, actions, targets):
    def loss_fn(params):
        values = state.apply_fn({"params": params}, frames, actions)
        return jnp.mean((values - targets) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss
'''

COMPARE = bridged_training_script("learner", "models.Critic(3, 2, 15, 13, hidden=8, rngs=nnx.Rngs(0))")


def test_linen_training_code_of_another_file_trains_the_converted_critic_the_same(run_cli, tmp_path):
    before = write_project(tmp_path / "before", {"models.py": CRITIC, "learner.py": LEARNER})
    after = write_project(tmp_path / "after", {"models.py": CRITIC, "learner.py": LEARNER})
    shown = run_cli("check", "--no-cache", "--unsafe-fixes", "--select", "NNX002", "--output-format", "json", after)
    description = json.loads(shown.stdout)[0]["fix"]["description"]
    assert "`Critic` takes a first input of 4 axes" in description, description
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    models = (after / "models.py").read_text()
    assert "    def __init__(self, in_features: int, actions_features: int, frames_shape_1: int, " \
           "frames_shape_2: int, hidden: int, *, rngs: nnx.Rngs):\n" in models, models
    assert "lambda frames, actions, *_, **__: (frames.shape[-1], actions.shape[-1], frames.shape[1], " \
           "frames.shape[2])" in (after / "learner.py").read_text()
    clean = run_cli("check", "--no-cache", "--select", "NNX1", after)
    assert clean.returncode == 0, clean.stdout
    linen, bridged = compared_runs(COMPARE, before, after)
    assert len(linen) == 4 and linen[-1] < linen[0]
    assert max(abs(a - b) for a, b in zip(linen, bridged)) <= 1e-6 * max(abs(a) for a in linen)


POOLED = '''\
import flax.linen as nn
import jax
import jax.numpy as jnp


class Net(nn.Module):
    widths: tuple = (4, 8)

    @nn.compact
    def __call__(self, x):
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2))(x))
        return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))


model = Net()
variables = model.init(jax.random.key(0), jnp.ones((1, 16, 16, 3)))
'''


def test_spatial_sizes_that_nothing_reads_after_the_loop_are_not_written():
    fixed, messages = convert(POOLED)
    assert fixed is not None, messages
    # a mean over the spatial axes needs none of them: no example's 16 x 16 is baked into ``__init__``
    assert "x_shape" not in fixed and "16" not in fixed.split("class Net")[1].split("model = ")[0]
    assert "        self.dense_0 = nnx.Linear(x_features, 3, rngs=rngs)\n" in fixed


STRIDED = '''\
import flax.linen as nn


class Patches(nn.Module):
    padding: str = "SAME"

    @nn.compact
    def __call__(self, images):
        x = nn.Conv(4, (3, 3), strides=2, padding=self.padding)(images)
        return nn.Dense(2)(x.reshape((x.shape[0], -1)))
'''


@pytest.mark.parametrize("padding", ["SAME", "VALID", "REFLECT"])
def test_a_padding_field_with_written_strides_sizes_the_flatten_either_way(padding):
    fixed, messages = convert(STRIDED)
    assert fixed is not None, messages
    # VALID's (s - 3) // 2 + 1 folded as for a written padding: (s - 1) // 2
    assert ("nnx.Linear(4 * ((images_shape_1 - 1) // 2 if padding == 'VALID' else (images_shape_1 + 1) // 2) * "
            "((images_shape_2 - 1) // 2 if padding == 'VALID' else (images_shape_2 + 1) // 2), 2") in fixed, fixed
    jnp = pytest.importorskip("jax.numpy")
    images = jnp.sin(jnp.arange(2 * 9 * 8 * 3, dtype=jnp.float32).reshape(2, 9, 8, 3))
    difference = max_relative_difference(
        STRIDED, fixed, lambda linen: linen["Patches"](padding=padding),
        lambda ns, nnx: ns["Patches"](3, 9, 8, padding=padding, rngs=nnx.Rngs(0)), images, [({}, "eval")])
    assert difference <= 1e-5
