"""Linen training code that picks its model class by name (``getattr(models, config["model"])``)
and stays Linen: the pick becomes the bridged factory (``constructs/picked_by_name.py``)."""

import pytest

from conversion_helpers import compared_runs, write_project

MODELS = '''\
from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

ModuleDef = Any


class Unit(nn.Module):
    width: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x):
        y = self.conv(self.width, (3, 3))(x)
        y = self.norm()(y)
        if x.shape != y.shape:
            x = self.conv(self.width, (1, 1), name="shortcut")(x)
        return nn.relu(x + y)


class Tower(nn.Module):
    depths: Any
    unit_cls: ModuleDef
    classes: int
    width: int = 4
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x, train: bool = True):
        conv = partial(self.conv, use_bias=False, dtype=self.dtype)
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, axis_name="batch",
                       dtype=self.dtype)
        x = conv(self.width, (3, 3), name="stem")(x)
        for i, depth in enumerate(self.depths):
            for _ in range(depth):
                x = self.unit_cls(self.width * 2**i, conv=conv, norm=norm)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.classes, dtype=self.dtype)(x)


SmallTower = partial(Tower, depths=[1, 1], unit_cls=Unit)
TinyTower = partial(Tower, depths=[1], unit_cls=Unit, width=2)
LocalTower = partial(Tower, depths=[1], unit_cls=Unit, conv=nn.ConvLocal)  # no NNX twin: kept in ToNNX
'''

TRAIN = '''\
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

import models


class TrainState(train_state.TrainState):
    batch_stats: Any


def create(model_cls, **kwargs):
    return model_cls(classes=3, dtype=jnp.float32, **kwargs)


def initial_variables(key, model):
    @jax.jit
    def init(*args):
        return model.init(*args)

    variables = init({"params": key}, jnp.ones((1, 8, 8, 3), model.dtype))
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def step(state, images, labels):
    def loss_fn(params):
        logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                         mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = jax.lax.pmean(grads, "batch")
    stats = jax.lax.pmean(updates["batch_stats"], "batch")
    return state.apply_gradients(grads=grads, batch_stats=stats), loss


def evaluate(state, images, labels):
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def learn(steps, variables=None, config=None):
    """The losses of ``steps`` training steps and an evaluation, and the initial variables."""
    config = config or {"model": "SmallTower"}
    model_cls = getattr(models, config["model"])
    model = create(model_cls)
    initial = initial_variables(jax.random.key(0), model) if variables is None else variables
    state = TrainState.create(apply_fn=model.apply, params=initial["params"], tx=optax.sgd(0.1),
                              batch_stats=initial["batch_stats"])
    state = jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], state)  # one device
    images = jax.random.normal(jax.random.key(1), (1, 4, 8, 8, 3))
    labels = jnp.array([[0, 1, 2, 1]])
    train_step = jax.pmap(step, axis_name="batch")
    losses = []
    for _ in range(steps):
        state, loss = train_step(state, images, labels)
        losses.append(float(loss[0]))
    losses.append(float(jax.pmap(evaluate, axis_name="batch")(state, images, labels)[0]))
    return losses, initial
'''

# hands a class to ``train.create``, which builds it
PROBE = '''\
import jax
import jax.numpy as jnp

import models
import train


def logits():
    model = train.create(models.LocalTower)
    variables = train.initial_variables(jax.random.key(0), model)
    return model.apply(variables, jnp.ones((2, 8, 8, 3)), train=False)
'''

COMPARE = """\
import json, sys
import jax
import jax.numpy as jnp
from flax import nnx
from nnxlint.transplant import load_linen_variables

sys.path.insert(0, sys.argv[1])
import train
names = ("SmallTower", "LocalTower")
linen = {name: train.learn(3, config={"model": name}) for name in names}
for name in ("train", "models"):
    del sys.modules[name]
sys.path[0] = sys.argv[2]
import train, models
bridged_losses = []
for name in names:
    model = getattr(models, name)(3, classes=3, dtype=jnp.float32, rngs=nnx.Rngs(0))
    model.eval()
    nnx.bridge.lazy_init(model, jnp.ones((1, 8, 8, 3)))  # LocalTower's ToNNX layer
    load_linen_variables(model, linen[name][1])
    variables = {"params": nnx.state(model, nnx.Param).to_pure_dict(),
                 "batch_stats": nnx.state(model, nnx.BatchStat).to_pure_dict()}
    _, bridged = train.learn(0, config={"model": name})
    assert jax.tree.structure(bridged) == jax.tree.structure(variables), (bridged, variables)
    bridged_losses.append(train.learn(3, variables, config={"model": name})[0])
bridged_model = train.create(train.functools.partial(train.to_linen_sized, models.SmallTower, lambda x: (3,)))
import probe
assert probe.logits().shape == (2, 3)
print(json.dumps([[linen[name][0] for name in names], bridged_losses,
                  [str(bridged_model.dtype), bridged_model.depths, bridged_model.width]]))
"""


def test_a_class_picked_by_name_is_bridged_and_trains_as_the_linen_original(run_cli, tmp_path):
    pytest.importorskip("optax")
    before, after = (write_project(tmp_path / name, {"models.py": MODELS, "train.py": TRAIN, "probe.py": PROBE})
                     for name in ("before", "after"))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    train = (after / "train.py").read_text()
    assert "class Tower(nnx.Module):" in (after / "models.py").read_text()
    # a class handed to a function that builds it is handed over bridged
    probe = (after / "probe.py").read_text()
    assert ("model = train.create(functools.partial(to_linen_sized, models.LocalTower, "
            "lambda x, *_, **__: (x.shape[-1],), lazy_init=True))") in probe
    assert "nnx_method=call_in_mode(False))" in probe
    # ``LocalTower`` may be picked: every model is built under ``nnx.bridge.lazy_init``
    assert ('    model_cls = functools.partial(to_linen_sized, getattr(models, config["model"]), '
            'lambda x, *_, **__: (x.shape[-1],), lazy_init=True)') in train
    # ``init`` in eval mode (it keeps the variables built before the call), ``apply`` in the
    # Linen call's mode (left out: its default)
    assert "return model.init(*args, nnx_method=call_in_mode(False))" in train
    assert 'mutable=["batch_stats"],\n' + " " * 41 + "nnx_method=call_in_mode(True))" in train
    assert "images, nnx_method=call_in_mode(False))" in train
    assert "builds the converted models through `nnx.bridge.to_linen`" in result.stderr
    assert run_cli("check", "--no-cache", "--select", "NNX1", after).returncode == 0
    # the bridge the fix wrote is not reported as Linen code to migrate (``noqa``)
    bridge = run_cli("check", "--no-cache", "--select", "NNX002,NNX006", after)
    assert bridge.returncode == 0, bridge.stdout
    linen, bridged, fields = compared_runs(COMPARE, before, after)
    assert all(len(losses) == 4 and losses[2] < losses[0] for losses in linen)
    assert bridged == linen
    # the Linen fields, read off the bridged model: given by keyword, to the ``partial``, by default
    assert fields == ["<class 'jax.numpy.float32'>", [1, 1], 4]


# ``Probe`` sows into a collection of its own, read back by the training code: it stays Linen
PROBE_STAYING_LINEN = ("""

class Probe(nn.Module):
    @nn.compact
    def __call__(self, x):
        self.sow("probes", "mean", x.mean())
        return x
""", """

def probe(x):
    return models.Probe().apply({}, x, mutable=["probes"])[1]["probes"]
""", "may pick `Probe`, which stays Linen")
# a factory function takes arguments of its own, not the class's
FACTORY = ("""

def small_tower(classes):
    return Tower(depths=[1], unit_cls=Unit, classes=classes)
""", "", "may pick `small_tower`, which is a factory function")


@pytest.mark.parametrize("models_tail, train_tail, why", [PROBE_STAYING_LINEN, FACTORY])
def test_a_pick_that_may_give_what_cannot_be_bridged_is_refused(run_cli, tmp_path, models_tail, train_tail, why):
    train = TRAIN + train_tail
    project = write_project(tmp_path / "project", {"models.py": MODELS + models_tail, "train.py": train})
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert (project / "train.py").read_text() == train
    assert "picks a class of the models file by name" in result.stdout
    assert why in result.stdout


BAG_MODELS = '''\
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class Bag(nn.Module):
    vocab: int
    dim: int
    classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(self.vocab, self.dim, dtype=self.dtype)(tokens)
        x = jnp.mean(x, axis=-2)
        return nn.Dense(self.classes, dtype=self.dtype)(x)
'''

BAG_TRAIN = '''\
import jax
import jax.numpy as jnp
import optax

import models


def learn(steps, params=None, name="Bag"):
    model = getattr(models, name)(vocab=11, dim=6, classes=3)
    tokens = jnp.arange(12, dtype=jnp.int32).reshape(3, 4) % 11
    labels = jnp.array([0, 2, 1])
    if params is None:
        params = model.init(jax.random.key(0), tokens.astype(jnp.int32))["params"]
    assert model.dtype == jnp.float32
    tx = optax.sgd(0.3)
    opt_state = tx.init(params)

    def loss_fn(p):
        logits = model.apply({"params": p}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    losses = []
    for _ in range(steps):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
    return losses, params
'''


def test_a_picked_class_without_input_sizes_is_bridged_with_no_sizes(run_cli, tmp_path):
    pytest.importorskip("optax")
    from conversion_helpers import bridged_training_script

    before, after = (write_project(tmp_path / name, {"models.py": BAG_MODELS, "train.py": BAG_TRAIN})
                     for name in ("before", "after"))
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    train = (after / "train.py").read_text()
    # the file imports no ``functools``: it is imported
    assert "import functools\n" in train
    assert "model = functools.partial(to_linen_sized, getattr(models, name), lambda *_, **__: ())(vocab=11" in train
    assert run_cli("check", "--no-cache", "--select", "NNX1", after).returncode == 0
    linen, bridged = compared_runs(bridged_training_script(
        "train", "models.Bag(vocab=11, dim=6, classes=3, rngs=nnx.Rngs(0))"), before, after)
    assert len(linen) == 4 and linen[-1] < linen[0]
    assert bridged == linen


HANDED_HERE = TRAIN.replace('    model_cls = getattr(models, config["model"])\n', '') \
    .replace("    model = create(model_cls)", "    model = create(models.TinyTower)")

COMPARE_HANDED_HERE = """\
import json, sys
import jax.numpy as jnp
from flax import nnx
from nnxlint.transplant import load_linen_variables

sys.path.insert(0, sys.argv[1])
import train
linen_losses, linen_variables = train.learn(3)
for name in ("train", "models"):
    del sys.modules[name]
sys.path[0] = sys.argv[2]
import train, models
model = models.TinyTower(3, classes=3, dtype=jnp.float32, rngs=nnx.Rngs(0))
load_linen_variables(model, linen_variables)
variables = {"params": nnx.state(model, nnx.Param).to_pure_dict(),
             "batch_stats": nnx.state(model, nnx.BatchStat).to_pure_dict()}
print(json.dumps([linen_losses, train.learn(3, variables)[0]]))
"""


def test_a_class_handed_to_a_function_of_the_same_file_is_handed_over_bridged(run_cli, tmp_path):
    pytest.importorskip("optax")
    before, after = (write_project(tmp_path / name, {"models.py": MODELS, "train.py": HANDED_HERE})
                     for name in ("before", "after"))
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    assert ("model = create(functools.partial(to_linen_sized, models.TinyTower, "
            "lambda x, *_, **__: (x.shape[-1],)))") in (after / "train.py").read_text()
    linen, bridged = compared_runs(COMPARE_HANDED_HERE, before, after)
    assert len(linen) == 4 and bridged == linen
