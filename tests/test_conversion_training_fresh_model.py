"""Training code that builds the Linen model anew where it applies it (flax's vae, lm1b,
wmt: ``models.model(latents).apply({'params': params}, x)``, ``nn.apply(fn, Model(...))``):
converted to the one NNX model the init site builds, only where the construction is
provably the init site's (training_constructs/fresh_model.py, linen_apply.py).  The
training itself is verified by the fixture ``linen_vae_rebuilt_in_step``."""

from __future__ import annotations

import textwrap

from conversion_helpers import NNX002
from nnxlint.engine import check_source

MODELS = '''\
import flax.linen as nn


class Net(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.relu(nn.Dense(self.width)(x)))


def build(width):
    return Net(width=width)
'''

TRAIN = '''\
import types

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax.training import train_state

import models


def train_step(state, x, y, width):
    def loss_fn(params):
        out = models.build(width).apply(
            {'params': params}, x
        )
        return jnp.mean((out - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def predict(params, x, width):
    return nn.apply(lambda net: net(x), models.build(width))({'params': params})


def main():
    config = types.SimpleNamespace(width=8)
    x = jnp.ones((4, 3))
    params = models.build(config.width).init(jax.random.key(0), x)['params']
    state = train_state.TrainState.create(
        apply_fn=models.build(config.width).apply, params=params, tx=optax.sgd(0.1))
    state, loss = train_step(state, x, jnp.zeros((4, 2)), config.width)
    return predict(state.params, x, config.width
                   )
'''


def _fix(run_cli, tmp_path, train=TRAIN):
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "train.py").write_text(textwrap.dedent(train))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", tmp_path)
    return (tmp_path / "train.py").read_text(), result


def test_a_model_rebuilt_where_it_is_applied_becomes_the_model_init_builds(run_cli, tmp_path):
    after, result = _fix(run_cli, tmp_path)
    assert "model = models.build(config.width, in_features=3, rngs=nnx.Rngs(0))" in after
    # the apply on a fresh construction is the model's call, the line breaks kept
    assert "out = model(\n            x\n        )" in after
    assert "return (lambda net: net(x))(model)" in after  # nn.apply(fn, model)(variables): fn(model)
    # `width` only built the model anew: the parameter and its arguments go
    assert "def train_step(model, optimizer, x, y):" in after and "def predict(model, x):" in after
    assert "train_step(model, optimizer, x, jnp.zeros((4, 2)))" in after
    assert "return predict(model, x\n                   )" in after
    assert "flax.linen" not in after and "train_state" not in after
    assert after.startswith("import types\n\nimport jax.numpy as jnp\n")  # `import jax` went, the group break stays
    compile(after, "train.py", "exec")
    checked = run_cli("check", "--no-cache", "--select", "NNX1", tmp_path)
    assert checked.returncode == 0, checked.stdout


def test_a_rebuild_with_other_arguments_is_another_model(run_cli, tmp_path):
    train = TRAIN.replace("state, loss = train_step(state, x, jnp.zeros((4, 2)), config.width)",
                          "state, loss = train_step(state, x, jnp.zeros((4, 2)), 2 * config.width)")
    after, result = _fix(run_cli, tmp_path, train)
    assert after == train
    # nor can the file be bridged (the factory's input size): the model stays Linen, and its finding says why
    assert (tmp_path / "models.py").read_text() == MODELS
    assert ("train.py builds it and cannot be updated: its training code is not converted (`models.build(width)` "
            "builds another model than `init`'s `models.build(config.width)`: `width` there need not be the init "
            "site's `config.width`), nor bridged") in result.stdout


def test_the_same_code_bound_differently_is_another_model(run_cli, tmp_path):
    """lm1b's ``TransformerLM(config)`` in ``train_step(..., config)`` is not the one its
    ``predict_step`` initialises from another ``config``."""
    train = '''\
        import jax
        import jax.numpy as jnp
        import optax
        from flax.training import train_state

        import models


        def step(state, x, width):
            def loss_fn(params):
                return jnp.mean(models.Net(width).apply({'params': params}, x) ** 2)

            grads = jax.grad(loss_fn)(state.params)
            return state.apply_gradients(grads=grads)


        def create(width):
            params = models.Net(width).init(jax.random.key(0), jnp.ones((1, 3)))['params']
            return train_state.TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.1))


        def main(width):
            return step(create(width), jnp.ones((2, 3)), width + 1)
        '''
    # the training code is not converted; it keeps Linen's ``apply`` on models built through the bridge
    after, result = _fix(run_cli, tmp_path, train)
    assert "Optimizer" not in after
    assert "jnp.mean(to_linen_sized(models.Net, lambda x, *_, **__: (x.shape[-1],), width).apply(" in after
    assert "train.py stays Linen (`init`, `apply`, `TrainState`)" in result.stderr


def test_a_file_that_names_its_optax_transform_optimizer_gets_another_name():
    source = textwrap.dedent('''\
        import jax
        import jax.numpy as jnp
        import optax
        import flax.linen as nn
        from flax.training import train_state


        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)


        def create(key):
            model = Net()
            params = model.init(key, jnp.ones((1, 3)))['params']
            optimizer = optax.adam(1e-3)
            state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optimizer)
            return state
        ''')
    fixed = check_source(source, "train.py", [NNX002], "unsafe").fixed_text
    assert fixed is not None
    assert "    optimizer = optax.adam(1e-3)\n" in fixed
    assert "nnx_optimizer = nnx.Optimizer(model, optimizer, wrt=nnx.Param)" in fixed


def test_a_read_the_conversion_does_not_follow_is_named_with_its_line():
    source = textwrap.dedent('''\
        import jax
        import jax.numpy as jnp
        import flax.linen as nn


        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)


        def create(key):
            model = Net()
            variables = model.init(key, jnp.ones((1, 3)))
            cache = variables['cache']
            return model, cache
        ''')
    message = check_source(source, "train.py", [NNX002]).findings[0].message
    assert "`variables` (variables) is used in a way the conversion does not follow " \
           "(line 15: `cache = variables['cache']`)" in message


def test_an_init_on_a_model_built_elsewhere_is_named_with_its_line():
    """An ``init`` through a helper on a parameter (``get_initial_params(rng, model)``) whose
    call the conversion does not follow: the reason names the call, instead of "found 0"
    (the form that converts: tests/test_conversion_helper_init.py)."""
    source = textwrap.dedent('''\
        import jax
        import jax.numpy as jnp
        import flax.linen as nn


        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)


        def initial_params(key, model):
            variables = model.init(key, jnp.ones((1, 3)))
            return variables['params']


        def main():
            return initial_params(jax.random.key(0), Net())
        ''')
    message = check_source(source, "train.py", [NNX002]).findings[0].message
    assert "(the result of `initial_params(...)` at line 18 is not assigned to one name)" in message


def test_a_name_rebound_between_the_init_and_the_rebuild_is_another_model():
    source = textwrap.dedent('''\
        import jax
        import jax.numpy as jnp
        import flax.linen as nn


        class Net(nn.Module):
            width: int

            @nn.compact
            def __call__(self, x):
                return nn.Dense(self.width)(x)


        def main(width):
            params = Net(width).init(jax.random.key(0), jnp.ones((1, 3)))['params']
            width = width + 1
            return Net(width).apply({'params': params}, jnp.ones((1, 3)))
        ''')
    assert check_source(source, "train.py", [NNX002], "unsafe").fixed_text is None
    message = check_source(source, "train.py", [NNX002], "unsafe").findings[0].message
    assert "`Net(width)` builds another model than `init`'s `Net(width)`: `width` there is bound otherwise " \
           "than at the init site" in message


def test_a_linen_function_left_in_the_training_file_moves_to_nnx_but_a_linen_layer_refuses(run_cli, tmp_path):
    with_function = TRAIN.replace("return jnp.mean((out - y) ** 2)", "return jnp.mean((nn.sigmoid(out) - y) ** 2)")
    after, _ = _fix(run_cli, tmp_path, with_function)
    # ``nn.sigmoid`` is jax's function, which flax.nnx exports too: the file converts without Linen
    assert "def train_step(model, optimizer, x, y):" in after and "nnx.sigmoid(out)" in after
    assert "linen" not in after
    with_layer = TRAIN.replace("return jnp.mean((out - y) ** 2)",
                               "return jnp.mean((nn.Dense(2).apply({}, out) - y) ** 2)")
    after, result = _fix(run_cli, tmp_path, with_layer)
    assert after == with_layer
    assert "`nn` (flax.linen) is still used outside the converted code" in result.stdout
