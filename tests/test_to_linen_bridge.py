"""Linen training code kept on converted classes through ``nnx.bridge.to_linen``
(``nnxlint/conversion/constructs/to_linen.py``): the model file converts, the training
file that cannot convert builds the NNX class as a Linen module, and trains as before."""

from __future__ import annotations

import os
import subprocess
import sys

from conversion_helpers import compared_runs, write_project

MODELS = '''\
import flax.linen as nn


class BagOfWords(nn.Module):
    vocab: int
    dim: int
    classes: int

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(self.vocab, self.dim)(tokens)
        x = nn.relu(nn.Dense(self.dim)(x))
        return nn.Dense(self.classes)(x).mean(axis=1)
'''

MODELS_WITH_DROPOUT_FLAG = MODELS.replace(
    "    def __call__(self, tokens):\n        x = nn.Embed(self.vocab, self.dim)(tokens)\n",
    "    def __call__(self, tokens, deterministic: bool = True):\n"
    "        x = nn.Embed(self.vocab, self.dim)(tokens)\n"
    "        x = nn.Dropout(0.1)(x, deterministic=deterministic)\n")

# ``initial_params`` calls ``init`` on its parameter and another file uses it too: the
# training code is not converted, so the converted class is bridged
TRAIN = '''\
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

import models


def build(config):
    return models.BagOfWords(vocab=config["vocab"], dim=config["dim"], classes=3)


def initial_params(key, model):
    return model.init(key, jnp.zeros((2, 5), jnp.int32))["params"]


def make_state(key, params=None):
    model = build({"vocab": 20, "dim": 8})
    params = initial_params(key, model) if params is None else params
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.5))


@jax.jit
def step(state, tokens, labels):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def run(steps, params=None):
    tokens = jax.random.randint(jax.random.key(1), (12, 5), 0, 20)
    labels = tokens[:, 0] % 3
    state = make_state(jax.random.key(0), params)
    losses = []
    for _ in range(steps):
        state, loss = step(state, tokens, labels)
        losses.append(float(loss))
    return losses
'''

OTHER = '''\
import jax
import train


def exported():
    return train.initial_params(jax.random.key(3), train.build({"vocab": 20, "dim": 8}))
'''

# trains the Linen original, then the fixed project from the same weights (loaded
# into the NNX layout by nnxlint.transplant), and prints both loss trajectories
COMPARE = '''\
import json, sys
import jax
from flax import nnx
from nnxlint.transplant import load_linen_variables

sys.path.insert(0, sys.argv[1])
import train
linen_params = train.initial_params(jax.random.key(0), train.build({"vocab": 20, "dim": 8}))
linen_losses = train.run(6, linen_params)
for name in ("train", "models"):
    del sys.modules[name]
sys.path[0] = sys.argv[2]
import train, models
model = models.BagOfWords(vocab=20, dim=8, classes=3, rngs=nnx.Rngs(0))
load_linen_variables(model, {"params": linen_params})
params = nnx.state(model, nnx.Param).to_pure_dict()
bridged = train.initial_params(jax.random.key(0), train.build({"vocab": 20, "dim": 8}))
assert jax.tree.structure(bridged) == jax.tree.structure(params), (bridged, params)
print(json.dumps([linen_losses, train.run(6, params)]))
'''


def _project(directory, models=MODELS):
    return write_project(directory, {"models.py": models, "train.py": TRAIN, "other.py": OTHER})


def test_linen_training_code_trains_the_converted_class_through_the_bridge(run_cli, tmp_path):
    before, after = _project(tmp_path / "before"), _project(tmp_path / "after")
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    assert "class BagOfWords(nnx.Module):" in (after / "models.py").read_text()
    train = (after / "train.py").read_text()
    assert ("nnx.bridge.to_linen(models.BagOfWords, vocab=config[\"vocab\"], dim=config[\"dim\"], classes=3, "
            "metadata_fn=None)") in train
    # the NNX class takes a ``default`` key in ``__init__`` for any stream but ``params``
    assert "model.init({'params': key, 'default': key}, jnp.zeros((2, 5), jnp.int32))" in train
    assert "builds the converted models through `nnx.bridge.to_linen`" in result.stderr
    assert (after / "other.py").read_text() == OTHER  # it builds through train.py's function
    # nnxlint's own NNX rules have nothing to say about the fixed files
    clean = run_cli("check", "--no-cache", "--select", "NNX1", after)
    assert clean.returncode == 0, clean.stdout
    linen, bridged = compared_runs(COMPARE, before, after)
    assert len(linen) == 6 and linen[-1] < linen[0]
    assert max(abs(a - b) / abs(a) for a, b in zip(linen, bridged)) <= 1e-5


def _train_with_flag(passed):
    return TRAIN.replace('logits = state.apply_fn({"params": params}, tokens)',
                         f'logits = state.apply_fn({{"params": params}}, tokens, {passed}, rngs={{"dropout": key}})') \
        .replace("def step(state, tokens, labels):", "def step(state, tokens, labels, key=jax.random.key(7)):")


def test_a_train_flag_moved_to_train_eval_is_passed_as_the_bridged_models_mode(run_cli, tmp_path):
    before, after = (_project(tmp_path / name, MODELS_WITH_DROPOUT_FLAG) for name in ("before", "after"))
    for directory in (before, after):
        (directory / "train.py").write_text(_train_with_flag("deterministic=True"))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    train = (after / "train.py").read_text()
    assert "def call_in_mode(deterministic):" in train and "        if not deterministic:" in train
    assert ('state.apply_fn({"params": params}, tokens, nnx_method=call_in_mode(True), '
            'rngs={"dropout": key})') in train
    # ``init`` leaves the argument out: its default (eval) is passed
    assert "jnp.zeros((2, 5), jnp.int32), nnx_method=call_in_mode(True))" in train
    assert "nnx.bridge.to_linen" in result.stderr
    assert run_cli("check", "--no-cache", "--select", "NNX1", after).returncode == 0
    linen, bridged = compared_runs(COMPARE, before, after)
    assert max(abs(a - b) / abs(a) for a, b in zip(linen, bridged)) <= 1e-5
    # in train mode the dropout key reaches the NNX model's Dropout
    train_mode = subprocess.run(
        [sys.executable, "-c", "import jax, train; state = train.make_state(jax.random.key(0)); "
                               "x = jax.numpy.ones((2, 5), jax.numpy.int32); "
                               "f = lambda k: state.apply_fn({'params': state.params}, x, "
                               "nnx_method=train.call_in_mode(False), rngs={'dropout': jax.random.key(k)}); "
                               "print(bool((f(1) != f(2)).any()))"],
        cwd=after, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert train_mode.stdout.strip() == "True", train_mode.stderr


def test_a_train_flag_passed_by_position_is_not_bridged(run_cli, tmp_path):
    project = _project(tmp_path / "project", MODELS_WITH_DROPOUT_FLAG)
    (project / "train.py").write_text(_train_with_flag("True"))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert (project / "train.py").read_text() == _train_with_flag("True")
    assert (project / "models.py").read_text() == MODELS_WITH_DROPOUT_FLAG
    assert "`deterministic` is passed by position: the call is not given the NNX model's mode" in result.stdout


MODELS_WITH_METHOD = MODELS + '''
    def probabilities(self, tokens):
        return nn.softmax(self(tokens))
'''

FEATURES = '''

def features(params, tokens):
    return build({"vocab": 20, "dim": 8}).apply({"params": params}, tokens, method=models.BagOfWords.probabilities)
'''


def test_a_method_of_the_class_runs_through_the_bridge_on_the_nnx_model(run_cli, tmp_path):
    before, after = (_project(tmp_path / name, MODELS_WITH_METHOD) for name in ("before", "after"))
    for directory in (before, after):
        (directory / "train.py").write_text(TRAIN + FEATURES)
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    train = (after / "train.py").read_text()
    assert "tokens, nnx_method=models.BagOfWords.probabilities)" in train
    compare = COMPARE.replace("print(json.dumps([linen_losses, train.run(6, params)]))",
                              "import numpy as np; tokens = jax.numpy.arange(10).reshape(2, 5)\n"
                              "print(json.dumps([np.asarray(linen_features).tolist(), "
                              "np.asarray(train.features(params, tokens)).tolist()]))") \
        .replace("linen_losses = train.run(6, linen_params)",
                 "linen_features = train.features(linen_params, jax.numpy.arange(10).reshape(2, 5))")
    linen, bridged = compared_runs(compare, before, after)
    assert linen == bridged
