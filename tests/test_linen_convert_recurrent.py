"""``nn.OptimizedLSTMCell`` (flax's sst2 steps one): converted to ``nnx.OptimizedLSTMCell``,
whose fused ``dense_i``/``dense_h`` the transplant fills from Linen's per-gate
layers, and run against the Linen original from transplanted weights."""

from __future__ import annotations

import textwrap

import pytest

from nnxlint.engine import check_source
from nnxlint.registry import all_rules

NNX002 = all_rules()["NNX002"]

SOURCE = '''\
import jax.numpy as jnp
import flax.linen as nn


class Tagger(nn.Module):
    hidden: int

    def setup(self):
        self.rnn = nn.RNN(nn.OptimizedLSTMCell(self.hidden))
        self.out = nn.Dense(3)

    def __call__(self, x):
        return self.out(self.rnn(x))


class Stacked(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.RNN(nn.OptimizedLSTMCell(5))(x)
        return Tagger(4)(x)
'''


def test_an_rnn_of_optimized_lstm_cells_runs_as_linen_from_transplanted_weights():
    fixed = check_source(textwrap.dedent(SOURCE), "models.py", [NNX002], "unsafe").fixed_text
    assert fixed is not None
    assert "self.rnn = nnx.RNN(nnx.OptimizedLSTMCell(in_features, hidden, rngs=rngs))" in fixed
    assert "self.optimized_lstm_cell_0 = nnx.OptimizedLSTMCell(in_features, 5, rngs=rngs)" in fixed
    jax = pytest.importorskip("jax")
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen_namespace: dict = {}
    exec(SOURCE, linen_namespace)
    nnx_namespace: dict = {}
    exec(fixed, nnx_namespace)
    x = jax.random.normal(jax.random.key(1), (2, 7, 3))
    linen_model = linen_namespace["Stacked"]()
    variables = linen_model.init(jax.random.key(0), x)
    # Linen keeps one layer per gate; NNX fuses them (i, f, g, o)
    assert set(variables["params"]["OptimizedLSTMCell_0"]) == {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"}
    model = nnx_namespace["Stacked"](3, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    expected = linen_model.apply(variables, x)
    assert jax.numpy.allclose(model(x), expected, rtol=1e-5, atol=1e-6)


SCANNED = '''\
import functools
import jax
import jax.numpy as jnp
import flax.linen as nn


class OneWay(nn.Module):
    hidden: int

    @functools.partial(nn.transforms.scan, variable_broadcast="params", in_axes=1, out_axes=1,
                       split_rngs={"params": False})
    @nn.compact
    def __call__(self, carry, x):
        return nn.OptimizedLSTMCell(self.hidden)(carry, x)

    def initialize_carry(self, input_shape):
        return nn.OptimizedLSTMCell(self.hidden, parent=None).initialize_carry(jax.random.key(0), input_shape)


class BothWays(nn.Module):
    hidden: int

    def setup(self):
        self.forward = OneWay(self.hidden)
        self.backward = OneWay(self.hidden)

    def __call__(self, x):
        _, ahead = self.forward(self.forward.initialize_carry(x[:, 0].shape), x)
        _, behind = self.backward(self.backward.initialize_carry(x[:, 0].shape), jnp.flip(x, 1))
        return jnp.concatenate([ahead, jnp.flip(behind, 1)], -1)
'''


def test_a_cell_stepped_by_a_scanned_call_becomes_an_nnx_rnn_over_the_held_cell():
    fixed = check_source(SCANNED, "models.py", [NNX002], "unsafe").fixed_text
    assert fixed is not None
    assert "return nnx.RNN(self.optimized_lstm_cell_0, return_carry=True)(x, initial_carry=carry)" in fixed
    assert "return self.optimized_lstm_cell_0.initialize_carry(input_shape, nnx.Rngs(jax.random.key(0)))" in fixed
    assert "self.forward = OneWay(in_features, hidden, rngs=rngs)" in fixed
    jax = pytest.importorskip("jax")
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen_namespace: dict = {}
    exec(SCANNED, linen_namespace)
    nnx_namespace: dict = {}
    exec(fixed, nnx_namespace)
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    linen_model = linen_namespace["BothWays"](4)
    variables = linen_model.init(jax.random.key(0), x)
    model = nnx_namespace["BothWays"](3, 4, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)  # one set of cell parameters per direction, as Linen's broadcast
    assert jax.numpy.allclose(model(x), linen_model.apply(variables, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("old, new, reason", [
    ("@functools.partial(nn.transforms.scan, variable_broadcast=\"params\", in_axes=1, out_axes=1,\n"
     "                       split_rngs={\"params\": False})", "@nn.jit", "decorated method `__call__`"),
    ("in_axes=1, out_axes=1", "in_axes=1, out_axes=0", "one `in_axes`/`out_axes`"),
    ("return nn.OptimizedLSTMCell(self.hidden)(carry, x)", "return nn.SimpleCell(self.hidden)(carry, x)",
     "other than `return nn.<LSTM or GRU cell>(...)(carry, x)`"),
])
def test_a_decorated_call_other_than_a_scanned_cell_gets_no_fix(old, new, reason):
    # dropping a decorator would change the call: ``nn.scan`` would step the cell once
    assert old in SCANNED
    result = check_source(SCANNED.replace(old, new), "models.py", [NNX002], "unsafe")
    assert result.fixed_text is None
    assert any(reason in finding.message for finding in result.findings), [f.message for f in result.findings]
