"""A class on its own that flattens what its convolutions give (flax's ppo): no code states
the rank of its input, so the flattened size was a constructor parameter nobody could pass
(``dense_0_in_features``). Converted for the rank its convolutions read
(``constructs/input_axes.py``: ``convolution_rank``), the size is an expression of the
input's spatial axes, which the code that builds the class reads off its input."""

from __future__ import annotations

import json

from conversion_helpers import bridged_training_script, compared_runs, write_project

MODELS = '''\
import flax.linen as nn


class Tower(nn.Module):
    classes: int

    @nn.compact
    def __call__(self, images):
        x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2))(images))
        x = nn.relu(nn.Conv(8, (3, 3), padding="VALID")(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.classes)(x)
'''

# the model is a static argument of ``jax.jit`` (as ppo's ``get_initial_params``): it must hash
TRAINER = '''\
import functools

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

import models


@functools.partial(jax.jit, static_argnums=1)
def initial_params(key, model):
    return model.init(key, jnp.ones((1, 10, 12, 3)))["params"]


@jax.jit
def step(state, images, labels):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def learn(steps, params=None):
    model = models.Tower(classes=4)
    images = jax.random.normal(jax.random.key(1), (8, 10, 12, 3))
    labels = jnp.arange(8) % 4
    if params is None:
        params = initial_params(jax.random.key(0), model)
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))
    losses = []
    for _ in range(steps):
        state, loss = step(state, images, labels)
        losses.append(float(loss))
    return losses, state.params
'''

COMPARE = bridged_training_script("trainer", "models.Tower(3, 10, 12, classes=4, rngs=nnx.Rngs(0))")


def _project(directory, models=MODELS):
    return write_project(directory, {"models.py": models, "trainer.py": TRAINER})


def test_the_flattened_size_is_an_expression_of_the_spatial_axes_and_trains_the_same(run_cli, tmp_path):
    before, after = _project(tmp_path / "before"), _project(tmp_path / "after")
    shown = run_cli("check", "--no-cache", "--unsafe-fixes", "--select", "NNX002", "--output-format", "json", after)
    description = json.loads(shown.stdout)[0]["fix"]["description"]
    assert "`Tower` takes a first input of 4 axes (a batch, the spatial axes, the features), as its " \
           "convolutions read it" in description
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    models = (after / "models.py").read_text()
    assert "def __init__(self, in_features: int, images_shape_1: int, images_shape_2: int, classes: int, *, " \
           "rngs: nnx.Rngs):" in models
    # 10 x 12 -> 5 x 6 (SAME, stride 2) -> 3 x 4 (VALID 3 x 3): 96 inputs for the 10 x 12 images here
    assert "nnx.Linear(8 * ((images_shape_1 + 1) // 2 - 2) * ((images_shape_2 + 1) // 2 - 2), classes" in models
    trainer = (after / "trainer.py").read_text()
    assert "to_linen_sized(models.Tower, lambda images, *_, **__: (images.shape[-1], images.shape[1], " \
           "images.shape[2]), classes=4)" in trainer
    clean = run_cli("check", "--no-cache", "--select", "NNX1", after)
    assert clean.returncode == 0, clean.stdout
    linen, bridged = compared_runs(COMPARE, before, after)
    assert len(linen) == 4 and linen[-1] < linen[0]
    assert linen == bridged


def test_convolutions_of_different_ranks_give_no_rank(run_cli, tmp_path):
    mixed = MODELS.replace('nn.Conv(8, (3, 3), padding="VALID")', 'nn.Conv(8, (3,), padding="VALID")')
    project = _project(tmp_path / "project", mixed)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    # the class would take the flattened size, which the trainer cannot pass: it stays Linen, saying so
    assert "images_shape_1" not in result.stdout and "`dense_0_in_features`, which is not known here" in result.stdout


def test_a_class_of_two_inputs_takes_the_rank_for_the_one_its_convolutions_are_applied_to(run_cli, tmp_path):
    two = MODELS.replace("def __call__(self, images):", "def __call__(self, scale, images):").replace(
        "return nn.Dense(self.classes)(x)", "return nn.Dense(self.classes)(x) * scale")
    project = _project(tmp_path / "project", two)
    shown = run_cli("check", "--no-cache", "--unsafe-fixes", "--select", "NNX002", "--output-format", "json", project)
    description = json.loads(shown.stdout)[0]["fix"]["description"]
    assert "`Tower` takes its input `images` of 4 axes (a batch, the spatial axes, the features)" in description


def test_a_class_of_two_inputs_whose_convolutions_read_neither_as_given_gives_no_rank(run_cli, tmp_path):
    # which input the convolutions read is not told: the size stays a parameter
    two = MODELS.replace("def __call__(self, images):", "def __call__(self, images, scale):").replace(
        "x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2))(images))",
        "x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2))(images * scale))")
    project = _project(tmp_path / "project", two)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    # the class would take the flattened size, which the trainer cannot pass: it stays Linen, saying so
    assert "images_shape_1" not in result.stdout and "`dense_0_in_features`, which is not known here" in result.stdout
