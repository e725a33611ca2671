"""``init`` through a helper on a parameter (flax's sst2, seq2seq, ppo:
``get_initial_params(rng, model)`` returning ``model.init(rng, x)['params']`` for a model
its caller builds): the model is built with its weights where the helper was called and
the helper goes (training_constructs/helper_init.py).  The training itself is verified by
the fixture ``linen_init_helper_param`` (the same losses from the same weights)."""

from __future__ import annotations

import textwrap

import pytest

from conversion_helpers import NNX002
from nnxlint.engine import check_source

HEAD = '''\
import types

import jax
import jax.numpy as jnp
import optax
import flax.linen as nn
from flax.training import train_state


class Net(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.relu(nn.Dense(self.width)(x)))


@jax.jit
def train_step(state, x, y):
    def loss_fn(params):
        return jnp.mean((state.apply_fn({'params': params}, x) - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss
'''

HELPER = '''\


def get_initial_params(rng, model):
    """Returns the initial parameters."""
    dummy = jnp.ones((2, 3))
    return model.init(rng, dummy)['params']


def create_train_state(rng):
    model = Net(width=8)
    params = get_initial_params(rng, model)
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))
'''

MAIN = '''

def main():
    state = create_train_state(jax.random.key(0))
    state, loss = train_step(state, jnp.ones((4, 3)), jnp.zeros((4, 2)))
    return loss
'''


def _fix(source: str):
    """(fixed text or None, NNX002's messages) of a file holding the model and its training."""
    source = textwrap.dedent(source) + MAIN
    fixed = check_source(source, "train.py", [NNX002], "unsafe").fixed_text
    return fixed, [finding.message for finding in check_source(source, "train.py", [NNX002]).findings]


def test_the_model_is_built_with_its_weights_where_the_helper_was_called():
    fixed, _ = _fix(HEAD + HELPER)
    assert fixed is not None
    assert "def get_initial_params" not in fixed and ".init(" not in fixed
    assert ("    model = Net(3, width=8, rngs=nnx.Rngs(rng))\n"
            "    return model, nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)\n") in fixed
    compile(fixed, "train.py", "exec")
    assert check_source(fixed, "train.py", None).findings == []  # no NNX1xx (nor any other) left


def test_the_variables_returned_by_a_second_statement_and_a_config_shape():
    """``variables = model.init(key, x)`` then ``return variables``, the example input sized by a
    config value the caller has: the input size is read from it at run time."""
    helper = '''\


def init_variables(model, key, config):
    x = jnp.zeros(config.input_shape)
    variables = model.init(key, x)
    return variables


def create_train_state(config):
    model = Net(config.width)
    variables = init_variables(model, jax.random.key(0), config)
    return train_state.TrainState.create(apply_fn=model.apply, params=variables['params'], tx=optax.sgd(0.1))
'''.replace("def create_train_state(config):", "def create_train_state(rng, config=types.SimpleNamespace(width=8, input_shape=(1, 3))):")
    fixed, _ = _fix(HEAD + helper)
    assert fixed is not None
    assert "model = Net(config.input_shape[-1], config.width, rngs=nnx.Rngs(0))" in fixed
    assert "def init_variables" not in fixed
    compile(fixed, "train.py", "exec")


def test_the_params_taken_before_the_return():
    """ppo's form: ``initial_params = model.init(key, x)['params']`` then ``return initial_params``."""
    helper = HELPER.replace("    return model.init(rng, dummy)['params']\n",
                            "    initial_params = model.init(rng, dummy)['params']\n    return initial_params\n")
    fixed, _ = _fix(HEAD + helper)
    assert fixed is not None and "model = Net(3, width=8, rngs=nnx.Rngs(rng))" in fixed
    helper = helper.replace("return initial_params", "return initial_params['params']")
    assert _fix(HEAD + helper)[0] is None  # ['params'] of the params: not init's variables


def test_the_helper_keywords_and_defaults_are_the_callers():
    helper = HELPER.replace("def get_initial_params(rng, model):", "def get_initial_params(model, rng, rows=2):") \
        .replace("dummy = jnp.ones((2, 3))", "dummy = jnp.ones((rows, 3))") \
        .replace("get_initial_params(rng, model)\n", "get_initial_params(model=model, rng=rng)\n")
    fixed, _ = _fix(HEAD + helper)
    assert fixed is not None and "model = Net(3, width=8, rngs=nnx.Rngs(rng))" in fixed


@pytest.mark.parametrize("change, reason", [
    (("    params = get_initial_params(rng, model)\n",
      "    params = get_initial_params(rng, model)\n    again = get_initial_params(rng, model)\n"),
     "`get_initial_params`, which calls `init` on its parameter, is used 2 times in the file"),
    (("    dummy = jnp.ones((2, 3))\n", "    rng, _ = jax.random.split(rng)\n    dummy = jnp.ones((2, 3))\n"),
     "`get_initial_params` does more than build the example input before `init` (line 31)"),
    (("return model.init(rng, dummy)['params']", "return model.init(rng, dummy)['params'], dummy"),
     "`get_initial_params` returns something else than `init`'s variables or their ['params']"),
    (("def create_train_state(rng):\n    model = Net(width=8)\n", "def create_train_state(rng, model=Net(8)):\n"),
     "`get_initial_params(...)` at line 36 is given `model`, not a model built earlier in the calling function"),
    (("params = get_initial_params(rng, model)", "params = get_initial_params(rng, Net(width=8))"),
     "`get_initial_params(...)` at line 37 is given the model as an expression, not a name built in the calling"),
    (("    dummy = jnp.ones((2, 3))\n", "    dummy = jnp.ones((2, WIDTH))\n"),
     "the helper reads `WIDTH` from the file, which the calling function `create_train_state` binds otherwise"),
])
def test_a_helper_the_conversion_cannot_follow_is_named(change, reason):
    source = HEAD + "\nWIDTH = 3\n" + HELPER.replace(*change)
    if "WIDTH)" in source:
        source = source.replace("    model = Net(width=8)\n", "    WIDTH = 5\n    model = Net(width=8)\n")
    fixed, messages = _fix(source)
    assert fixed is None or "get_initial_params" in fixed  # the training code is not converted
    assert any(reason in message for message in messages), messages


def test_a_helper_another_file_of_the_run_calls_is_kept(run_cli, tmp_path):
    """ppo's ``ppo_lib_test.py`` calls ``ppo_lib.get_initial_params``: removing it would break that file."""
    (tmp_path / "train.py").write_text(HEAD + HELPER + MAIN)
    (tmp_path / "train_test.py").write_text("import jax\n\nimport train\n\n\ndef test_init():\n"
                                            "    train.get_initial_params(jax.random.key(0), train.Net(4))\n")
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", tmp_path)
    assert "def get_initial_params(rng, model):" in (tmp_path / "train.py").read_text()
    assert "`get_initial_params`, which calls `init` on its parameter, is also used by" in result.stdout + result.stderr

    # a file that imports the module for another of its names does not stop the conversion
    (tmp_path / "train.py").write_text(HEAD + HELPER + MAIN)
    (tmp_path / "train_test.py").write_text("import train\n\n\ndef test_main():\n    train.main()\n")
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", tmp_path)
    assert "def get_initial_params" not in (tmp_path / "train.py").read_text()
