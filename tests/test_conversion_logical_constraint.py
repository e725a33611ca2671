"""``nn.with_logical_constraint`` in a converted class stays as it is
(``linen_map.STATELESS_FUNCTIONS``): it reads no module state, only Flax's global
logical-axis rules, which ``nnx.logical_axis_rules`` sets as well, so the NNX model
computes the same with no rules and constrains its activations under a mesh."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

SHARDED_MLP = '''
from flax import linen as nn


class ShardedMlp(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x):
        h = nn.with_logical_constraint(nn.Dense(self.hidden)(x), ("batch", "hidden"))
        return nn.Dense(x.shape[-1])(nn.gelu(h))
'''


def test_the_call_stays_and_the_layer_after_it_gets_its_input_size():
    fixed, messages = convert(SHARDED_MLP)
    assert fixed is not None, messages
    assert 'h = nn.with_logical_constraint(self.dense_0(x), ("batch", "hidden"))' in fixed
    assert "self.dense_1 = nnx.Linear(hidden, in_features, rngs=rngs)" in fixed
    assert "from flax import linen as nn\n" in fixed  # the function is still read through it


def test_the_converted_model_computes_what_linen_does_without_rules_and_under_a_mesh_with_rules():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(SHARDED_MLP)
    assert fixed is not None, messages
    x = jax.random.normal(jax.random.key(1), (4, 6))
    difference = max_relative_difference(
        SHARDED_MLP, fixed, lambda linen: linen["ShardedMlp"](8),
        lambda converted, nnx: converted["ShardedMlp"](6, 8, rngs=nnx.Rngs(0)), x, [({}, "eval")])
    assert difference < 1e-6

    from flax import nnx
    namespace: dict = {}
    exec(compile(fixed, "converted.py", "exec"), namespace)
    model = namespace["ShardedMlp"](6, 8, rngs=nnx.Rngs(0))
    plain = nnx.jit(lambda m, v: m(v))(model, x)  # jitted both ways: XLA fuses the same program
    mesh = jax.sharding.Mesh(jax.devices()[:1], ("data",))
    with jax.set_mesh(mesh), nnx.logical_axis_rules([("batch", "data"), ("hidden", None)]):
        lowered = nnx.jit(lambda m, v: m(v)).trace(model, x).lower().as_text()
        constrained = nnx.jit(lambda m, v: m(v))(model, x)
    assert "sharding_constraint" in lowered  # the constraint is in the program (absent without rules)
    assert float(abs(constrained - plain).max()) == 0.0
