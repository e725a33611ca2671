"""Constructs of Flax's ``linen_design_test`` files: a hand-written dense layer,
``print`` in ``setup``, the variables ``init`` returned printed, a module-level
name shadowed by ``__call__``'s input."""

from __future__ import annotations

from conversion_helpers import convert

_OWN_DENSE = '''
import jax
import jax.numpy as jnp
from jax import lax
from pprint import pprint
import flax.linen as nn


class Affine(nn.Module):
    features: int

    @nn.compact
    def __call__(self, inputs):
        kernel = self.param('kernel', nn.initializers.lecun_normal(), (inputs.shape[-1], self.features))
        y = lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())))
        bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
        return y + bias


class Net(nn.Module):
    widths: tuple

    def setup(self):
        self.first = Affine(features=4)
        self.second = Affine(features=2)
        print('second layer:', self.second.variables)

    def __call__(self, x):
        return self.second(nn.relu(self.first(x)))


x = jnp.ones((1, 6))
variables = Net((4, 2)).init(jax.random.key(0), x)
pprint(jax.tree_util.tree_map(jnp.shape, variables))
print(variables)
'''


def test_a_hand_written_dense_layer_gives_its_output_size_to_the_next_layer():
    fixed, messages = convert(_OWN_DENSE)
    assert fixed is not None, messages
    assert "self.first = Affine(in_features, features=4, rngs=rngs)" in fixed
    assert "self.second = Affine(4, features=2, rngs=rngs)" in fixed


def test_a_print_in_setup_prints_the_state_once_the_submodules_are_built():
    fixed, _ = convert(_OWN_DENSE)
    init = fixed[fixed.index("class Net"):fixed.index("def __call__(self, x):\n        return self.second")]
    assert init.rstrip().endswith("print('second layer:', nnx.state(self.second))")


def test_the_printed_variables_become_the_models_state():
    fixed, _ = convert(_OWN_DENSE)
    assert "pprint(jax.tree_util.tree_map(jnp.shape, nnx.state(model)))" in fixed
    assert "print(nnx.state(model))" in fixed


def test_printing_the_variables_of_something_other_than_a_submodule_keeps_the_finding():
    source = _OWN_DENSE.replace("print('second layer:', self.second.variables)",
                                "print('second layer:', self.widths.variables)")
    fixed, messages = convert(source)
    assert fixed is None
    assert "`self.widths.variables` printed in `setup`" in messages["Net"]


def test_a_module_level_x_does_not_make_the_loop_input_a_constant():
    source = '''
import jax
import jax.numpy as jnp
import flax.linen as nn


class Tower(nn.Module):
    sizes: tuple

    @nn.compact
    def __call__(self, x):
        for size in self.sizes:
            x = nn.Dense(size)(x)
            x = nn.relu(x)
        return x


x = jnp.ones((1, 3))
variables = Tower((4, 2)).init(jax.random.key(0), x)
'''
    fixed, messages = convert(source)
    assert fixed is not None, messages
    init = fixed[fixed.index("def __init__"):fixed.index("def __call__")]
    assert "relu" not in init  # the activation reads the input array: it stays in __call__ only


def test_the_converted_program_matches_linen_from_the_same_weights():
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, _ = convert(_OWN_DENSE)
    body = _OWN_DENSE.split("\nx = jnp.ones")[0].replace("print('second layer:', self.second.variables)", "")
    linen_space: dict = {}
    exec(compile(body, "linen.py", "exec"), linen_space)
    nnx_space: dict = {}
    exec(compile(fixed.split("\nx = jnp.ones")[0], "nnx.py", "exec"), nnx_space)
    import jax
    x = jax.random.normal(jax.random.key(1), (3, 6))
    linen_model = linen_space["Net"]((4, 2))
    variables = linen_model.init(jax.random.key(0), x)
    model = nnx_space["Net"](6, (4, 2), rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    np.testing.assert_allclose(model(x), linen_model.apply(variables, x), rtol=1e-6)
