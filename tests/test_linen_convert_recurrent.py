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


def test_a_compact_call_with_another_decorator_keeps_its_finding():
    # dropping ``nn.scan`` would step the cell once instead of over the sequence
    source = textwrap.dedent('''\
        import functools
        import flax.linen as nn


        class Steps(nn.Module):
            hidden: int

            @functools.partial(nn.transforms.scan, variable_broadcast="params", in_axes=1, out_axes=1,
                               split_rngs={"params": False})
            @nn.compact
            def __call__(self, carry, x):
                return nn.OptimizedLSTMCell(self.hidden)(carry, x)
        ''')
    result = check_source(source, "models.py", [NNX002], "unsafe")
    assert result.fixed_text is None
    assert "decorated method `__call__` is not converted" in result.findings[0].message
