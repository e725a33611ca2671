"""The converted training code keeps the file's layout: the comments and PEP 8 blank
lines of the statements the conversion removes stay where the code they described
now stands."""

from __future__ import annotations

from conversion_helpers import convert

MODEL = '''\
        import flax.linen as nn
        import jax
        import jax.numpy as jnp


        class MLP(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)


'''


def test_the_removed_construction_lines_blank_lines_and_comments_stay_above_the_models_creation():
    fixed, messages = convert(MODEL + '''\
        # the model, built once
        model = MLP()
        # its weights
        variables = model.init(jax.random.PRNGKey(1), jnp.ones((2, 3)))
        y = model.apply(variables, jnp.ones((2, 3)))
        ''')
    assert fixed is not None, messages
    assert fixed.endswith(
        "        return self.dense_0(x)\n"
        "\n"
        "\n"
        "# the model, built once\n"
        "# its weights\n"
        "model = MLP(3, rngs=nnx.Rngs(1))\n"
        "y = model(jnp.ones((2, 3)))\n")



def test_the_blank_lines_of_a_construction_moved_below_the_example_input_stay_after_the_class():
    fixed, messages = convert(MODEL + '''\
        model = MLP()
        x = jnp.ones((2, 3))
        variables = model.init(jax.random.PRNGKey(1), x)
        y = model.apply(variables, x)
        ''')
    assert fixed is not None, messages
    assert fixed.endswith(
        "        return self.dense_0(x)\n"
        "\n"
        "\n"
        "x = jnp.ones((2, 3))\n"
        "model = MLP(3, rngs=nnx.Rngs(1))\n"
        "y = model(x)\n")
