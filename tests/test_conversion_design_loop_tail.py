"""A module of the class a loop stacks, created once more after the loop (``constructs/loop_tail.py``)."""

from __future__ import annotations

from conversion_helpers import convert

_TAIL = '''
import flax.linen as nn

class Tower(nn.Module):
    sizes: tuple

    @nn.compact
    def __call__(self, x):
        for size in self.sizes[:-1]:
            x = nn.tanh(nn.Dense(size)(x))
        return nn.Dense(self.sizes[-1])(x)
'''


def test_the_module_after_the_loop_joins_the_list_as_its_last_element():
    fixed, messages = convert(_TAIL)
    assert fixed is not None, messages
    assert "self.denses.append(nnx.Linear(x_features, sizes[-1], rngs=rngs))" in fixed
    assert "return self.denses[-1](x)" in fixed
    # appended after the loop that fills the list, so its index is Linen's next number
    assert fixed.index("for size in sizes[:-1]:") < fixed.index("self.denses.append(nnx.Linear(x_features, sizes[-1]")


def test_a_second_module_after_the_loop_is_refused_with_the_construct():
    source = _TAIL.replace("return nn.Dense(self.sizes[-1])(x)",
                           "x = nn.Dense(self.sizes[-1])(x)\n        return nn.Dense(2)(x)")
    fixed, messages = convert(source)
    assert fixed is None
    assert "`Dense(...)(...)`, a module of a class a loop stacks, created again a second time after its loop" \
        in messages["Tower"]


def test_a_module_after_the_loop_inside_a_branch_is_refused():
    source = _TAIL.replace("return nn.Dense(self.sizes[-1])(x)",
                           "if self.sizes:\n            x = nn.Dense(self.sizes[-1])(x)\n        return x")
    fixed, messages = convert(source)
    assert fixed is None
    assert "created again inside a branch or a loop" in messages["Tower"]


def test_the_converted_tower_matches_linen_from_the_same_weights():
    import jax
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, _ = convert(_TAIL)
    linen_space: dict = {}
    exec(compile(_TAIL, "linen.py", "exec"), linen_space)
    nnx_space: dict = {}
    exec(compile(fixed, "nnx.py", "exec"), nnx_space)
    x = jax.random.normal(jax.random.key(0), (2, 5))
    linen_model = linen_space["Tower"](sizes=(4, 3, 2))
    variables = linen_model.init(jax.random.key(1), x)
    model = nnx_space["Tower"](5, sizes=(4, 3, 2), rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    np.testing.assert_allclose(model(x), linen_model.apply(variables, x), rtol=1e-6)
    assert len(model.denses) == 3
