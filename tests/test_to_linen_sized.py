"""Linen training code kept on converted classes whose input sizes the code that builds
them does not know (``nnxlint/conversion/constructs/to_linen_sized.py``): the bridge reads
them off the inputs, as Linen inferred them, and training goes on unchanged."""

from __future__ import annotations

import libcst as cst

from nnxlint.imports import add_imports

from conversion_helpers import compared_runs

# an MLP of one file, used by the critic and the actor of two others: one fix converts all three
COMMON = '''\
import flax.linen as nn


class MLP(nn.Module):
    widths: tuple

    @nn.compact
    def __call__(self, x):
        for width in self.widths[:-1]:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.widths[-1])(x)
'''

CRITICS = '''\
import flax.linen as nn
import jax.numpy as jnp

from common import MLP


class Critic(nn.Module):
    hidden: tuple

    @nn.compact
    def __call__(self, observations, actions):
        return MLP((*self.hidden, 1))(jnp.concatenate([observations, actions], -1)).squeeze(-1)
'''

ACTORS = '''\
import flax.linen as nn
import jax.numpy as jnp

from common import MLP


class Actor(nn.Module):
    hidden: tuple
    action_dim: int

    @nn.compact
    def __call__(self, observations):
        return jnp.tanh(MLP((*self.hidden, self.action_dim))(observations))
'''

# the models are built knowing no input size; ``create`` (also used by other.py) initializes them
LEARNER = '''\
"""Fits an actor and a critic by regression (one step each)."""

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

import actors
import critics


def create(model, key, *inputs):
    params = model.init(key, *inputs)["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-2))


@jax.jit
def critic_step(critic, observations, actions, returns):
    def loss_fn(params):
        return ((critic.apply_fn({"params": params}, observations, actions) - returns) ** 2).mean()

    loss, grads = jax.value_and_grad(loss_fn)(critic.params)
    return critic.apply_gradients(grads=grads), loss


@jax.jit
def actor_step(actor, observations, targets):
    def loss_fn(params):
        return ((actor.apply_fn({"params": params}, observations) - targets) ** 2).mean()

    loss, grads = jax.value_and_grad(loss_fn)(actor.params)
    return actor.apply_gradients(grads=grads), loss


def learn(steps, critic_params=None, actor_params=None):
    observations = jax.random.normal(jax.random.key(1), (16, 5))
    actions = jnp.tanh(jax.random.normal(jax.random.key(2), (16, 2)))
    returns = observations[:, 0] * actions[:, 1]
    critic = create(critics.Critic(hidden=(8, 8)), jax.random.key(3), observations[:1], actions[:1])
    actor = create(actors.Actor((8,), 2), jax.random.key(4), observations[:1])
    if critic_params is not None:
        critic, actor = critic.replace(params=critic_params), actor.replace(params=actor_params)
    losses = []
    for _ in range(steps):
        critic, critic_loss = critic_step(critic, observations, actions, returns)
        actor, actor_loss = actor_step(actor, observations, actions)
        losses += [float(critic_loss), float(actor_loss)]
    return losses, critic.params, actor.params
'''

OTHER = '''\
import jax
import jax.numpy as jnp

import actors
import learner


def fresh_actor():
    return learner.create(actors.Actor((8,), 2), jax.random.key(0), jnp.zeros((1, 5)))
'''

# trains the Linen original, then the fixed project from the same weights (loaded into
# the NNX models by nnxlint.transplant and laid out as the bridge lays them out)
COMPARE = '''\
import json, sys
import jax
from flax import nnx
from nnxlint.transplant import load_linen_variables

MODULES = ("learner", "actors", "critics", "common")
sys.path.insert(0, sys.argv[1])
import learner
linen_losses = learner.learn(4)[0]
_, critic_params, actor_params = learner.learn(0)
for name in MODULES:
    del sys.modules[name]
sys.path[0] = sys.argv[2]
import learner, actors, critics
critic = critics.Critic(5, 2, hidden=(8, 8), rngs=nnx.Rngs(0))
actor = actors.Actor(5, (8,), 2, rngs=nnx.Rngs(0))
load_linen_variables(critic, {"params": critic_params})
load_linen_variables(actor, {"params": actor_params})
critic_params = nnx.state(critic, nnx.Param).to_pure_dict()
actor_params = nnx.state(actor, nnx.Param).to_pure_dict()
_, bridged_critic, bridged_actor = learner.learn(0)
assert jax.tree.structure(bridged_critic) == jax.tree.structure(critic_params), (bridged_critic, critic_params)
assert jax.tree.structure(bridged_actor) == jax.tree.structure(actor_params), (bridged_actor, actor_params)
print(json.dumps([linen_losses, learner.learn(4, critic_params, actor_params)[0]]))
'''


def _project(directory, learner=LEARNER):
    directory.mkdir()
    files = {"common.py": COMMON, "critics.py": CRITICS, "actors.py": ACTORS, "learner.py": learner,
             "other.py": OTHER}
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_models_built_without_their_input_sizes_train_through_the_sized_bridge(run_cli, tmp_path):
    before, after = _project(tmp_path / "before"), _project(tmp_path / "after")
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", after)
    learner = (after / "learner.py").read_text()
    # both classes of the one fix (the critic's and the actor's file convert with the MLP's) are bridged
    assert ("to_linen_sized(critics.Critic, lambda observations, actions, *_, **__: "
            "(observations.shape[-1], actions.shape[-1]), hidden=(8, 8))") in learner
    assert "to_linen_sized(actors.Actor, lambda observations, *_, **__: (observations.shape[-1],), (8,), 2)" in learner
    assert learner.count("class ToLinenSized(linen.Module):") == 1
    assert '"""Fits an actor and a critic by regression (one step each)."""\n\nfrom collections.abc import ' \
           'Callable\nimport inspect\n\nimport jax\n' in learner  # standard-library imports go with the others
    assert "to_linen_sized(actors.Actor" in (after / "other.py").read_text()
    assert "builds the converted models through `nnx.bridge.to_linen`" in result.stderr
    clean = run_cli("check", "--no-cache", "--select", "NNX1", after)
    assert clean.returncode == 0, clean.stdout
    linen, bridged = compared_runs(COMPARE, before, after)
    assert len(linen) == 8 and linen[-2] < linen[0]
    assert max(abs(a - b) / abs(a) for a, b in zip(linen, bridged)) <= 1e-6


def test_an_annotation_naming_a_bridged_class_names_a_linen_module(run_cli, tmp_path):
    project = _project(tmp_path / "project", LEARNER.replace("def create(model, key, *inputs):",
                                                             "def create(model: critics.Critic, key, *inputs):"))
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    learner = (project / "learner.py").read_text()
    assert "def create(model: linen.Module, key, *inputs):" in learner
    assert "NNX115" not in run_cli("check", "--no-cache", "--select", "NNX1", project).stdout


FLATTENING_CRITIC = CRITICS.replace(
    "        return MLP((*self.hidden, 1))(jnp.concatenate([observations, actions], -1)).squeeze(-1)",
    "        x = nn.Dense(8)(nn.Dense(4)(observations).reshape((observations.shape[0], -1)))\n"
    "        return MLP((*self.hidden, 1))(jnp.concatenate([x, actions], -1)).squeeze(-1)")


def test_a_size_no_input_gives_is_not_bridged(run_cli, tmp_path):
    project = _project(tmp_path / "project")
    (project / "critics.py").write_text(FLATTENING_CRITIC)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "to_linen_sized(critics.Critic" not in (project / "learner.py").read_text()
    # the critic stays Linen: its finding names the construction the fix could not update
    assert (project / "critics.py").read_text() == FLATTENING_CRITIC
    assert "builds it and cannot be updated" in result.stdout and "of `Critic` is known to none of its inputs" \
        in result.stdout
    assert run_cli("check", "--no-cache", "--select", "NNX1", project).returncode == 0


def test_another_method_run_on_a_sized_model_is_not_bridged(run_cli, tmp_path):
    learner = LEARNER + '''

def value(params, observations, actions):
    return critics.Critic(hidden=(8, 8)).apply({"params": params}, observations, actions, method=critics.Critic.__call__)
'''
    project = _project(tmp_path / "project", learner)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "to_linen_sized(critics.Critic" not in (project / "learner.py").read_text()
    assert (project / "critics.py").read_text() == CRITICS
    assert "is run through another method (`method=`): the construction is not bridged" in result.stdout
    assert run_cli("check", "--no-cache", "--select", "NNX1", project).returncode == 0


def test_a_standard_library_import_joins_the_standard_library_group():
    module = cst.parse_module('"""Doc."""\n\nimport os\n\nimport jax\n\nx = 1\n')
    assert add_imports(module, {"collections.abc.Callable"}).code == \
        '"""Doc."""\n\nimport os\nfrom collections.abc import Callable\n\nimport jax\n\nx = 1\n'
    module = cst.parse_module('"""Doc."""\n\nimport jax\n\nx = 1\n')
    assert add_imports(module, {"collections.abc.Callable"}).code == \
        '"""Doc."""\n\nfrom collections.abc import Callable\n\nimport jax\n\nx = 1\n'


# the actor keeps a dropout stream from its construction on: ``init`` must give it a key
DROPPING_ACTOR = ACTORS.replace(
    "        return jnp.tanh(MLP((*self.hidden, self.action_dim))(observations))",
    "        kept = nn.Dropout(0.1, deterministic=True)(observations)\n"
    "        return jnp.tanh(MLP((*self.hidden, self.action_dim))(kept))")


def test_a_model_handed_to_a_function_whose_init_names_its_streams_is_bridged(run_cli, tmp_path):
    keyed = LEARNER.replace('params = model.init(key, *inputs)["params"]',
                            'params = model.init({"params": key, "dropout": key}, *inputs)["params"]')
    project = _project(tmp_path / "project", keyed)
    (project / "actors.py").write_text(DROPPING_ACTOR)
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    # other.py builds the actor and hands it to ``learner.create``, whose ``init`` keys ``dropout``
    assert "to_linen_sized(actors.Actor" in (project / "other.py").read_text()
    clean = run_cli("check", "--no-cache", "--select", "NNX1", project)
    assert clean.returncode == 0, clean.stdout


def test_a_model_handed_to_a_function_whose_init_gives_one_key_is_not_bridged(run_cli, tmp_path):
    project = _project(tmp_path / "project")
    (project / "actors.py").write_text(DROPPING_ACTOR)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "to_linen_sized" not in (project / "other.py").read_text()
    assert (project / "actors.py").read_text() == DROPPING_ACTOR
    assert "other.py:1: the model built here is initialized elsewhere, and building it draws on `dropout`" \
        in result.stdout
    assert run_cli("check", "--no-cache", "--select", "NNX1", project).returncode == 0
