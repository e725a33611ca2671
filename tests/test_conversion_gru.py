"""``nn.GRUCell`` converts to the ``nnx.GRUCell`` subclass that ``constructs/gru.py`` adds to
the file (Linen's candidate bias ``hn/bias``, which nnx.GRUCell lacks, as a parameter of its
own): inside ``nn.RNN``, in ``setup``, stepped by hand, stepped by a scanned ``__call__``, in a
block under ``nn.remat`` and in an ``nn.scan`` layer stack.
From transplanted weights the converted model computes exactly what Linen computes, also
after a training step has moved ``hn/bias`` (where a plain ``nnx.GRUCell`` parts from Linen)."""

from __future__ import annotations

import pytest

from conversion_helpers import NNX002, convert
from nnxlint.conversion.linen_map import FUSED_GATES, KEPT_GATE_PARAMETERS, UNFUSABLE_GATE_PARAMETERS
from nnxlint.engine import check_source

COMPACT = '''\
import flax.linen as nn


class Reader(nn.Module):
    hidden: int = 6

    @nn.compact
    def __call__(self, xs):
        hs = nn.RNN(nn.GRUCell(self.hidden))(xs)
        hs = nn.RNN(nn.GRUCell(5, name="top"))(hs)
        return nn.Dense(2)(hs[:, -1])
'''

SETUP = '''\
import flax.linen as nn


class Reader(nn.Module):
    def setup(self):
        self.rnn = nn.RNN(nn.GRUCell(6))
        self.head = nn.Dense(2)

    def __call__(self, xs):
        return self.head(self.rnn(xs)[:, -1])
'''

STEPPED = '''\
import flax.linen as nn


class Stepper(nn.Module):
    @nn.compact
    def __call__(self, xs):
        h, _ = nn.GRUCell(3, name="cell")(xs[:, 0], xs[:, 1])
        h, out = nn.GRUCell(3)(h, xs[:, 2])
        return nn.Dense(2)(out)
'''

SCANNED = '''\
import functools
import jax
import flax.linen as nn


class Scanned(nn.Module):
    hidden: int

    @functools.partial(nn.transforms.scan, variable_broadcast="params", in_axes=1, out_axes=1,
                       split_rngs={"params": False})
    @nn.compact
    def __call__(self, carry, x):
        return nn.GRUCell(self.hidden)(carry, x)

    def initialize_carry(self, input_shape):
        return nn.GRUCell(self.hidden, parent=None).initialize_carry(jax.random.key(0), input_shape)


class Reader(nn.Module):
    def setup(self):
        self.scanned = Scanned(6)

    def __call__(self, xs):
        return self.scanned(self.scanned.initialize_carry(xs[:, 0].shape), xs)[1]
'''

STACK = '''\
import flax.linen as nn


class Block(nn.Module):
    @nn.compact
    def __call__(self, xs, _):
        return xs + nn.RNN(nn.GRUCell(4))(xs), None


class Stack(nn.Module):
    @nn.compact
    def __call__(self, xs):
        xs, _ = nn.remat(Block)()(xs, None)
        xs, _ = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=2)()(xs, None)
        return xs
'''


def _fixed(source: str) -> str:
    fixed, messages = convert(source)
    assert fixed is not None, messages
    return fixed


def test_gru_cells_become_the_added_subclass_defined_once_before_the_classes():
    fixed = _fixed(COMPACT)
    assert fixed.count("class LinenGRUCell(nnx.GRUCell):") == 1
    assert fixed.index("class LinenGRUCell(") < fixed.index("class Reader(")
    assert "        self.gru_cell_0 = LinenGRUCell(in_features, hidden, rngs=rngs)\n" in fixed
    assert "        self.top = LinenGRUCell(hidden, 5, rngs=rngs)\n" in fixed
    assert "        hs = nnx.RNN(self.gru_cell_0)(xs)\n" in fixed
    assert "self.hn_bias = nnx.Param(" in fixed
    finding, = check_source(COMPACT, "models.py", [NNX002]).findings
    assert "`nn.GRUCell` becomes `LinenGRUCell`, a subclass of `nnx.GRUCell` added to the file" \
        in finding.fix.description


def test_a_file_without_a_gru_gets_no_subclass():
    fixed = _fixed(COMPACT.replace("GRUCell", "LSTMCell"))
    assert "LinenGRUCell" not in fixed


def test_the_added_subclass_takes_a_name_the_file_does_not_use():
    fixed = _fixed(COMPACT + "\n\nLinenGRUCell = None\n")
    assert "class LinenGRUCell2(nnx.GRUCell):" in fixed
    assert "self.top = LinenGRUCell2(hidden, 5, rngs=rngs)" in fixed
    assert "\nLinenGRUCell = None\n" in fixed


def test_a_gru_in_setup_and_stepped_by_hand_converts():
    assert "        self.rnn = nnx.RNN(LinenGRUCell(in_features, 6, rngs=rngs))\n" in _fixed(SETUP)
    stepped = _fixed(STEPPED)
    assert "        self.cell = LinenGRUCell(in_features, in_features, rngs=rngs)\n" in stepped  # sized by the carry
    assert "        h, out = self.gru_cell_0(h, xs[:, 2])\n" in stepped


def test_conversion_is_idempotent():
    fixed = _fixed(COMPACT)
    again = check_source(fixed, "models.py", [NNX002], "unsafe")
    assert again.fixed_text is None or again.fixed_text == fixed
    assert not again.findings


def _trained_linen_variables(jax, linen_model, xs):
    """Linen variables after one SGD step, which moves every GRU's hn/bias off zero."""
    variables = linen_model.init(jax.random.key(0), xs)
    grads = jax.grad(lambda v: (linen_model.apply(v, xs) ** 2).sum())(variables)
    return jax.tree.map(lambda value, grad: value - 0.5 * grad, variables, grads)


def _hn_biases(jax, variables):
    return [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
            if [getattr(key, "key", None) for key in path[-2:]] == ["hn", "bias"]]


@pytest.mark.parametrize("source, linen_class, nnx_args, xs_shape", [
    (COMPACT, "Reader", (3,), (2, 4, 3)),
    (SETUP, "Reader", (3,), (2, 4, 3)),
    (STEPPED, "Stepper", (3,), (2, 4, 3)),
    (SCANNED, "Reader", (3,), (2, 4, 3)),
    (STACK, "Stack", (4,), (2, 3, 4)),  # under nn.remat and a scanned layer stack
])
def test_the_converted_model_computes_linens_output_after_a_step_moved_hn_bias(source, linen_class, nnx_args,
                                                                              xs_shape):
    jax = pytest.importorskip("jax")
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen, converted = {}, {}
    exec(source, linen)
    exec(_fixed(source), converted)
    xs = jax.random.normal(jax.random.key(1), xs_shape)
    linen_model = linen[linen_class]()
    trained = _trained_linen_variables(jax, linen_model, xs)
    assert _hn_biases(jax, trained) and all(np.any(np.asarray(bias) != 0) for bias in _hn_biases(jax, trained))
    model = converted[linen_class](*nnx_args, rngs=nnx.Rngs(0))
    load_linen_variables(model, trained)
    expected = jax.jit(linen_model.apply)(trained, xs)
    got = nnx.jit(lambda model, xs: model(xs))(model, xs)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_gru_facts_match_the_installed_flax():
    """FUSED_GATES / UNFUSABLE_GATE_PARAMETERS / KEPT_GATE_PARAMETERS for the GRU, against flax."""
    jax = pytest.importorskip("jax")
    import flax.linen as nn
    from flax import nnx

    carry, x = jax.numpy.zeros((1, 4)), jax.numpy.zeros((1, 3))
    params = nn.GRUCell(4).init(jax.random.key(0), carry, x)["params"]
    fused = FUSED_GATES["GRUCell"]
    assert set(params) == {gate for gates in fused.values() for gate in gates}
    cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
    assert cell.dense_i.bias is not None and cell.dense_h.bias is None  # no place for hn/bias
    assert [(gate, parameter) for gate in fused["dense_h"] for parameter in params[gate]] == [
        ("hr", "kernel"), ("hz", "kernel"), ("hn", "kernel"), ("hn", "bias")]
    assert UNFUSABLE_GATE_PARAMETERS["GRUCell"] == (("hn", "bias"),)
    assert set(KEPT_GATE_PARAMETERS["GRUCell"]) == set(UNFUSABLE_GATE_PARAMETERS["GRUCell"])
