"""Training code the stateful conversion cannot follow (a ``TrainState`` carried through
``jax.lax.scan`` in a tuple) keeps its shape: the model is built as NNX and split once,
and each ``apply`` merges it with the parameters it is given
(``training_constructs/split_merge.py``).  The fixture ``linen_scan_runner_state``
proves the training identical from the same weights."""

from __future__ import annotations

import textwrap

import pytest

from conversion_helpers import convert
from nnxlint.engine import check_source
from nnxlint.registry import all_rules

NNX1_RULES = [rule for code, rule in sorted(all_rules().items()) if code.startswith("NNX1")]

MODEL = '''
import functools

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax.training import train_state


class Critic(nn.Module):
    hidden: int = 8

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(self.hidden)(x)))[..., 0]
'''

# the TrainState goes through ``jax.lax.scan`` inside a tuple: the role analysis stops there
SCANNED = MODEL + '''

def run(rng, xs, ys):
    critic = Critic(hidden=6)
    variables = critic.init(rng, xs[0])
    state = train_state.TrainState.create(apply_fn=critic.apply, params=variables, tx=optax.sgd(0.1))

    def step(carry, batch):
        state, count = carry
        x, y = batch

        def loss_fn(params):
            return jnp.mean((critic.apply(params, x) - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return (state.apply_gradients(grads=grads), count + 1), loss

    (state, count), losses = jax.lax.scan(step, (state, 0), (xs, ys))
    return losses, critic.apply(state.params, xs[0])


XS = jax.random.normal(jax.random.key(1), (5, 4, 3))
RESULT = run(jax.random.key(0), XS, XS.sum(-1))
'''


def _run(source: str):
    pytest.importorskip("flax")
    namespace: dict = {}
    exec(compile(source, "<converted>", "exec"), namespace)
    return namespace["RESULT"]


def test_a_train_state_scanned_in_a_tuple_is_kept_around_split_and_merge():
    fixed, messages = convert(SCANNED)
    assert fixed is not None, messages
    assert ("    critic = Critic(xs[0].shape[-1], hidden=6, rngs=nnx.Rngs(rng))\n"
            "    critic_graphdef, variables = nnx.split(critic)\n") in fixed
    assert "apply_fn=lambda variables, *args, **kwargs: nnx.merge(critic_graphdef, variables)(*args, **kwargs)" \
        in fixed
    assert "return jnp.mean((nnx.merge(critic_graphdef, params)(x) - y) ** 2)" in fixed
    assert "return (state.apply_gradients(grads=grads), count + 1), loss" in fixed
    assert "return losses, nnx.merge(critic_graphdef, state.params)(xs[0])" in fixed
    assert "(state, count), losses = jax.lax.scan(step, (state, 0), (xs, ys))" in fixed  # untouched
    assert not check_source(fixed, "models.py", NNX1_RULES).findings
    losses, predictions = _run(fixed)
    assert losses.shape == (5,) and predictions.shape == (4,)
    assert float(losses[-1]) < float(losses[0])


def test_the_fix_description_says_the_training_state_stays():
    findings = check_source(textwrap.dedent(SCANNED), "models.py", [all_rules()["NNX002"]]).findings
    [critic] = [finding for finding in findings if "`Critic`" in finding.message]
    assert critic.fix is not None
    assert ("the training code keeps its state as it is: the model is split once with `nnx.split` and every "
            "`apply` becomes `nnx.merge(critic_graphdef, params)(...)`") in critic.fix.description


def test_linen_params_wrapping_maps_to_the_nnx_state():
    # ``variables['params']`` and ``{'params': p}`` passed to ``apply``/``apply_fn`` are the state itself
    source = SCANNED.replace("params=variables,", "params=variables['params'],").replace(
        "critic.apply(params, x)", "state.apply_fn({'params': params}, x)").replace(
        "critic.apply(state.params, xs[0])", "critic.apply({'params': state.params}, xs[0])")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "params=variables, tx=optax.sgd(0.1)" in fixed
    assert "state.apply_fn(params, x)" in fixed
    assert "nnx.merge(critic_graphdef, state.params)(xs[0])" in fixed
    losses, _ = _run(fixed)
    assert float(losses[-1]) < float(losses[0])


@pytest.mark.parametrize("change, why", [
    # a dropout stream would restart from the same key at every merge
    (("nn.tanh(nn.Dense(self.hidden)(x))", "nn.Dropout(0.1, deterministic=True)(nn.Dense(self.hidden)(x))"),
     "moves training state"),
    (("        return nn.Dense(1)(nn.tanh(nn.Dense(self.hidden)(x)))[..., 0]",
      "        drop = functools.partial(nn.Dropout, rate=0.1, deterministic=True)\n"
      "        return nn.Dense(1)(drop()(nn.Dense(self.hidden)(x)))[..., 0]"), "moves training state"),
    (("critic.apply(params, x)", "critic.apply(params, x, rngs={'dropout': rng})"), "moves training state"),
    (("    state = train_state", "    print(variables['batch_stats'])\n    state = train_state"),
     "moves training state"),
    (("return losses, ", "wrapped = {'params': state.params}\n    return losses, "), "moves training state"),
    # the NNX model has no ``apply`` and no Linen method: any other use of it would break
    (("    (state, count), losses", "    print(critic.tabulate(rng, xs[0]))\n    (state, count), losses"),
     "moves training state"),
    (("    return losses, critic.apply(state.params, xs[0])", "    return losses, predict(critic, state.params, xs[0])"
      "\n\n\ndef predict(critic, params, x):\n    return critic.apply(params, x)"), "moves training state"),
    # ``critic_graphdef`` exists only in ``run``: another function's ``critic`` cannot be merged with it
    (("\n\nXS = ", "\n\ndef evaluate(critic, params, x):\n    return critic.apply(params, x)\n\n\nXS = "),
     "moves training state"),
])
def test_what_split_and_merge_cannot_keep_leaves_the_model_linen(change, why):
    fixed, messages = convert(SCANNED.replace(*change))
    assert fixed is None
    assert why in messages["Critic"]  # the stateful conversion's reason: the first blocker


def test_params_handled_as_a_pytree_stay_a_pytree():
    # what the optimizer conversion cannot follow (``jax.tree.map`` over the params, here inside the
    # train state) needs no following: the NNX state is a pytree as Linen's dict was
    source = MODEL + '''

def scaled(rng, x):
    critic = Critic()
    params = critic.init(rng, x)["params"]
    params = jax.tree.map(lambda p: p * 2, params)
    state = train_state.TrainState.create(apply_fn=critic.apply, params=params, tx=optax.sgd(0.1))
    sizes = jax.tree.map(jnp.shape, state.params)
    return sizes, state.apply_fn({"params": state.params}, x)


RESULT = scaled(jax.random.key(0), jnp.ones((2, 3)))
'''
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert ("    critic = Critic(x.shape[-1], rngs=nnx.Rngs(rng))\n"
            "    critic_graphdef, params = nnx.split(critic)\n"
            "    params = jax.tree.map(lambda p: p * 2, params)\n") in fixed
    sizes, predictions = _run(fixed)
    assert sorted(jax_leaves_shapes(sizes)) == [(1,), (3, 8), (8,), (8, 1)]
    assert predictions.shape == (2,)


def jax_leaves_shapes(tree) -> list:
    import jax

    return jax.tree.leaves(tree, is_leaf=lambda leaf: isinstance(leaf, tuple))
