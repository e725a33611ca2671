"""The NNX model is built where Linen's ``init`` was, and its ``model = Net(...)`` line
goes: so the example input may be made in between (RL code builds the network, then
its dummy observation), but nothing in between may use the model or rebind what its
construction reads (``TrainingConverter.check_moved_construction``)."""

from __future__ import annotations

import pytest

from conversion_helpers import convert

TRAIN = '''
import jax
import jax.numpy as jnp
from flax import linen as nn


class MLP(nn.Module):
    width: int = 4

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.relu(nn.Dense(self.width)(x)))


def train(rng, n, width):
    model = MLP(width)
    x = jnp.ones((3, n))
    variables = model.init(rng, x)
    return model.apply(variables, x)


RESULT = train(jax.random.key(0), 5, 6)
'''


def test_an_input_made_between_the_construction_and_init_sizes_the_model():
    fixed, messages = convert(TRAIN)
    assert fixed is not None, messages
    assert ("    x = jnp.ones((3, n))\n"
            "    model = MLP(x.shape[-1], width, rngs=nnx.Rngs(rng))\n"
            "    return model(x)\n") in fixed
    pytest.importorskip("flax")
    namespace: dict = {}
    exec(compile(fixed, "<converted>", "exec"), namespace)
    assert namespace["RESULT"].shape == (3, 2)


@pytest.mark.parametrize("between, reason", [
    ("    print(model)\n", "`model` is used at line 18, between its construction and `init`"),
    ("    width = width + 1\n", "`width`, which building `model` reads, is bound again at line 18, before `init`"),
])
def test_what_the_move_would_change_keeps_the_model_linen(between, reason):
    source = TRAIN.replace("    x = jnp.ones((3, n))\n", "    x = jnp.ones((3, n))\n" + between)
    fixed, messages = convert(source)
    assert fixed is None
    assert reason in messages["MLP"]


def test_an_imported_modules_init_is_no_init_site():
    source = TRAIN.replace("import jax\n", "import jax\nimport logging\n").replace(
        "RESULT = train(", "logging.init = lambda **_: None\nlogging.init(project='x')\nRESULT = train(")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "logging.init(project='x')" in fixed
    assert "model = MLP(x.shape[-1], width, rngs=nnx.Rngs(rng))" in fixed


def test_an_input_unpacked_from_a_tuple_sizes_the_model():
    # ``obs, actions = make_batch(key)``: bound by tuple unpacking, read again where the model is built
    source = TRAIN.replace("    x = jnp.ones((3, n))\n", "    x, scale = jnp.ones((3, n)), 2.0\n")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "    model = MLP(x.shape[-1], width, rngs=nnx.Rngs(rng))\n" in fixed
