"""Linen training code that decodes through a ``cache`` collection, kept on a converted
model (``nnxlint/conversion/constructs/to_linen_decoding.py``): the bridge makes the NNX
attention caches where Linen's ``init`` made its own, and training and decoding go on
unchanged from the same weights."""

from __future__ import annotations

import json

from conversion_helpers import compared_runs, write_project

# a decoder whose attention and position table keep a cache when it decodes
MODELS = '''\
import flax.linen as nn
import jax
import jax.numpy as jnp


class Positions(nn.Module):
    length: int
    decode: bool = False

    @nn.compact
    def __call__(self, x):
        table = self.param("table", nn.initializers.normal(0.5), (1, self.length, x.shape[-1]))
        added = table[:, :x.shape[1]]
        if self.decode:
            started = self.has_variable("cache", "position")
            position = self.variable("cache", "position", lambda: jnp.array(0, jnp.int32))
            if started:
                step = position.value
                position.value = step + 1
                added = jax.lax.dynamic_slice(table, (0, step, 0), (1, 1, x.shape[-1]))
        return x + added


class Decoder(nn.Module):
    vocab: int
    width: int
    length: int
    decode: bool = False

    @nn.compact
    def __call__(self, tokens):
        x = Positions(self.length, self.decode)(nn.Embed(self.vocab, self.width)(tokens))
        mask = None if self.decode else nn.make_causal_mask(tokens)
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=self.width, decode=self.decode)(
            x, x, mask=mask)
        return nn.Dense(self.vocab)(nn.LayerNorm()(x))
'''

# trains with ``TrainState``, then decodes token by token through ``init(...)['cache']``
TRAIN = '''\
\"\"\"Fits a small decoder for a few steps, then decodes greedily through its cache.\"\"\"

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

import models

VOCAB, WIDTH, LENGTH = 11, 8, 6


def create(key, tokens):
    model = models.Decoder(VOCAB, WIDTH, LENGTH)
    params = model.init(key, tokens)["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-2))


@jax.jit
def train_step(state, tokens):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def decode(params, first, steps):
    model = models.Decoder(VOCAB, WIDTH, LENGTH, decode=True)
    cache = model.init(jax.random.key(0), jnp.ones((first.shape[0], LENGTH), jnp.int32))["cache"]
    token, seen = first, []
    for _ in range(steps):
        logits, updates = model.apply({"params": params, "cache": cache}, token, mutable=["cache"])
        cache = updates["cache"]
        seen.append(logits)
        token = logits.argmax(-1)
    return jnp.concatenate(seen, axis=1)


def run(steps, params=None):
    tokens = jax.random.randint(jax.random.key(1), (4, LENGTH + 1), 0, VOCAB)
    state = create(jax.random.key(2), tokens[:, :-1])
    if params is not None:
        state = state.replace(params=params)
    losses = []
    for _ in range(steps):
        state, loss = train_step(state, tokens)
        losses.append(float(loss))
    return losses, decode(state.params, tokens[:, :1], 4), state.params
'''

# runs the Linen original, then the fixed project from the same weights (loaded into the
# NNX model by nnxlint.transplant and laid out as the bridge lays them out)
COMPARE = '''\
import json, sys
import jax
import numpy as np
from flax import nnx
from nnxlint.transplant import load_linen_variables

sys.path.insert(0, sys.argv[1])
import train
linen_losses, linen_decoded, _ = train.run(3)
_, _, linen_params = train.run(0)
for name in ("train", "models"):
    del sys.modules[name]
sys.path[0] = sys.argv[2]
import models, train
model = models.Decoder(train.VOCAB, train.WIDTH, train.LENGTH, rngs=nnx.Rngs(0))
load_linen_variables(model, {"params": linen_params})
params = nnx.state(model, nnx.Param).to_pure_dict()
losses, decoded, _ = train.run(3, params)
scale = float(np.max(np.abs(linen_decoded)))
print(json.dumps([linen_losses, losses, float(np.max(np.abs(np.asarray(linen_decoded) - np.asarray(decoded)))) / scale]))
'''


def _project(directory, train=TRAIN):
    return write_project(directory, {"models.py": MODELS, "train.py": train})


def test_a_model_decoding_through_a_cache_trains_and_decodes_through_the_bridge(run_cli, tmp_path):
    before, after = _project(tmp_path / "before"), _project(tmp_path / "after")
    shown = run_cli("check", "--no-cache", "--unsafe-fixes", "--output-format", "json", after)
    description = next(finding["fix"]["description"] for finding in json.loads(shown.stdout)
                       if finding["code"] == "NNX002" and finding["fix"])
    assert f"or kept on them through `nnx.bridge.to_linen` ({after / 'train.py'})" in description
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    assert "class Decoder(nnx.Module):" in (after / "models.py").read_text()
    train = (after / "train.py").read_text()
    assert "model = to_linen_decoding(models.Decoder, VOCAB, WIDTH, LENGTH)\n" in train
    assert "model = to_linen_decoding(models.Decoder, VOCAB, WIDTH, LENGTH, decode=True)\n" in train
    assert train.count("class ToLinenDecoding(nnx.bridge.ToLinen):") == 1
    assert "builds the converted models through `nnx.bridge.to_linen`" in result.stderr
    clean = run_cli("check", "--no-cache", "--select", "NNX1", after)
    assert clean.returncode == 0, clean.stdout
    # a second run changes nothing
    assert run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after).returncode == result.returncode
    assert (after / "train.py").read_text() == train
    linen_losses, losses, decoded_difference = compared_runs(COMPARE, before, after)
    assert len(losses) == 3 and linen_losses[-1] < linen_losses[0]
    assert max(abs(a - b) / abs(a) for a, b in zip(linen_losses, losses)) <= 1e-6
    # the cache starts where Linen's did: the position index at 0, the attention cache empty
    assert decoded_difference <= 1e-6


def test_a_decoding_model_whose_helper_name_is_taken_is_not_bridged(run_cli, tmp_path):
    project = _project(tmp_path / "project", TRAIN.replace("VOCAB, WIDTH, LENGTH = 11, 8, 6",
                                                           "VOCAB, WIDTH, LENGTH = 11, 8, 6\nToLinenDecoding = None"))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "the file has a `ToLinenDecoding` of its own" in result.stdout  # the decoder's finding says why
    assert "to_linen_decoding(" not in (project / "train.py").read_text()
    assert (project / "models.py").read_text() == MODELS
    assert run_cli("check", "--no-cache", "--select", "NNX1", project).returncode == 0
