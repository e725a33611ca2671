"""Recurrent layers bound to a name and called later (``constructs/recurrent_later.py``):
an encoder ``nn.RNN`` over an ``nn.LSTMCell`` and a decoder ``nn.RNN`` over a custom
``nn.RNNCellBase`` subclass that samples a token per step with ``self.make_rng``.
The converted model runs as the Linen one from transplanted weights, with the sampling
drawn alike on both sides (one patched ``jax.random.categorical``)."""

from __future__ import annotations

import contextlib

import pytest

from nnxlint.engine import check_source
from nnxlint.registry import all_rules

NNX002 = all_rules()["NNX002"]

SOURCE = '''\
import jax
import flax.linen as nn


class SamplingCell(nn.RNNCellBase):
    features: int
    vocab: int
    feed_back: bool

    @nn.compact
    def __call__(self, carry, token):
        state, previous = carry
        if self.feed_back:
            token = previous
        state, hidden = nn.LSTMCell(self.features)(state, token)
        scores = nn.Dense(self.vocab)(hidden)
        drawn = jax.random.categorical(self.make_rng('sample'), scores)
        chosen = jax.nn.one_hot(drawn, self.vocab)
        return (state, chosen), (scores, chosen)

    @property
    def num_feature_axes(self):
        return 1


class Translator(nn.Module):
    width: int
    vocab: int
    feed_back: bool

    @nn.compact
    def __call__(self, source, target):
        read = nn.RNN(nn.LSTMCell(self.width), return_carry=True, name='reader')
        write = nn.RNN(SamplingCell(features=target.shape[-1], vocab=self.vocab, feed_back=self.feed_back),
                       split_rngs={'params': False, 'sample': True}, name='writer')
        state, _ = read(source)
        return write(target[:, 1:], initial_carry=(state, target[:, 0]))
'''


def _fixed(source: str):
    return check_source(source, "models.py", [NNX002], "unsafe")


def test_the_cell_and_the_rnns_convert_to_nnx_idioms():
    fixed = _fixed(SOURCE).fixed_text
    assert fixed is not None
    assert "class SamplingCell(nnx.RNNCellBase):" in fixed
    # Linen sizes the cell's LSTM by the carry it is stepped with (the reader's width), not by `features`
    assert "self.lstm_cell_0 = nnx.LSTMCell(carry_1_features if feed_back else in_features, carry_0_1_features, " \
           "rngs=rngs)" in fixed
    assert "self.sample_rngs = rngs.sample.fork()" in fixed
    assert "drawn = jax.random.categorical(self.sample_rngs(), scores)" in fixed
    assert "read = nnx.RNN(self.lstm_cell_0, return_carry=True)" in fixed
    assert "write = nnx.RNN(self.sampling_cell_0)" in fixed
    assert "self.sampling_cell_0 = SamplingCell(target_features, width, target_features, features=target_features," \
           " vocab=vocab, feed_back=feed_back, rngs=rngs)" in fixed
    assert "return write(target[:, 1:], initial_carry=(state, target[:, 0]))" in fixed
    nnx1 = [rule for code, rule in all_rules().items() if code.startswith("NNX1")]
    assert check_source(fixed, "models.py", nnx1, "unsafe").findings == []


@contextlib.contextmanager
def _one_sampling_key(jax):
    """Both sides draw their tokens with one key: Linen's keys fold in its scope path, NNX's its stream's count."""
    original = jax.random.categorical
    jax.random.categorical = lambda key, logits, *args, **kwargs: original(jax.random.key(7), logits, *args, **kwargs)
    try:
        yield
    finally:
        jax.random.categorical = original


@pytest.mark.parametrize("feed_back", [False, True])
def test_the_converted_model_samples_as_linen_from_transplanted_weights(feed_back):
    jax = pytest.importorskip("jax")
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed = _fixed(SOURCE).fixed_text
    linen_namespace: dict = {}
    exec(SOURCE, linen_namespace)
    nnx_namespace: dict = {}
    exec(fixed, nnx_namespace)
    source = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (2, 5), 0, 4), 4)
    target = jax.nn.one_hot(jax.random.randint(jax.random.key(2), (2, 4), 0, 3), 3)
    linen_model = linen_namespace["Translator"](width=6, vocab=3, feed_back=feed_back)
    variables = linen_model.init({"params": jax.random.key(0), "sample": jax.random.key(3)}, source, target)
    # the cell is the parent's own submodule; its LSTM takes its hidden size from the reader's carry
    assert variables["params"]["SamplingCell_0"]["LSTMCell_0"]["hi"]["kernel"].shape == (6, 6)
    model = nnx_namespace["Translator"](4, 3, width=6, vocab=3, feed_back=feed_back, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    with _one_sampling_key(jax):
        expected = linen_model.apply(variables, source, target, rngs={"sample": jax.random.key(4)})
        got = model(source, target)
    for want, have in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        assert want.shape == have.shape
        assert jax.numpy.allclose(want, have, rtol=1e-5, atol=1e-6)


def test_each_step_draws_a_new_key_from_the_cells_stream():
    jax = pytest.importorskip("jax")
    from flax import nnx

    namespace: dict = {}
    exec(_fixed(SOURCE).fixed_text, namespace)
    model = namespace["Translator"](4, 3, width=6, vocab=3, feed_back=True, rngs=nnx.Rngs(0, sample=5))
    stream = model.sampling_cell_0.sample_rngs
    source = jax.numpy.ones((2, 5, 4))
    target = jax.numpy.ones((2, 4, 3))
    before = int(stream.count[...])
    model(source, target)
    assert int(stream.count[...]) == before + 3  # the stream's counter, carried through nnx.RNN's scan: one per step
    model(source, target)
    assert int(stream.count[...]) == before + 6  # and a new key per call


@pytest.mark.parametrize("old, new, reason", [
    ("split_rngs={'params': False, 'sample': True}", "split_rngs={'params': False}",
     "`self.make_rng('sample')`, which `nn.RNN(split_rngs=...)` does not split"),
    ("initial_carry=(state, target[:, 0])", "seq_lengths=None", "without `initial_carry=`"),
    ("split_rngs={'params': False, 'sample': True}",
     "split_rngs={'params': False, 'sample': True}, variable_broadcast=False",
     "`nn.RNN(variable_broadcast=...)` is not converted"),
    ("state, _ = read(source)", "state, _ = read(source, init_key=jax.random.key(0))", "`initial_carry=`"),
    ("    @property", "    def initialize_carry(self, rng, input_shape):\n        return None\n\n    @property",
     "a cell's own `initialize_carry`"),
])
def test_what_cannot_be_made_right_gets_no_fix_and_names_the_construct(old, new, reason):
    assert old in SOURCE
    result = _fixed(SOURCE.replace(old, new))
    assert result.fixed_text is None
    assert any(reason in finding.message for finding in result.findings), [f.message for f in result.findings]


def test_a_cell_subclass_is_a_linen_module_for_the_linen_rules():
    source = SOURCE + "\n\ncell = SamplingCell(4, 3, False)\nvariables = cell.init(jax.random.key(0), None, None)\n"
    linen_rules = [rule for code, rule in all_rules().items() if code in ("NNX002", "NNX003")]
    found = {(finding.code, finding.line) for finding in check_source(source, "models.py", linen_rules).findings}
    assert ("NNX002", 5) in found  # class SamplingCell(nn.RNNCellBase)
    assert ("NNX003", 41) in found  # its init


BIDIRECTIONAL = '''\
import jax.numpy as jnp
import flax.linen as nn


class Summarizer(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x, lengths):
        forward = nn.RNN(nn.OptimizedLSTMCell(self.hidden), return_carry=True)
        backward = nn.RNN(nn.LSTMCell(self.hidden), reverse=True, keep_order=True)
        carry, ahead = forward(x, seq_lengths=lengths)
        behind = backward(x, initial_carry=carry, seq_lengths=lengths)
        return nn.Dense(2)(jnp.concatenate([ahead, behind], axis=-1))
'''


def test_flax_cells_bound_with_options_and_a_carry_handed_on_run_as_linen():
    jax = pytest.importorskip("jax")
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed = _fixed(BIDIRECTIONAL).fixed_text
    assert "backward = nnx.RNN(self.lstm_cell_0, reverse=True, keep_order=True)" in fixed
    assert "behind = backward(x, initial_carry=carry, seq_lengths=lengths)" in fixed
    linen_namespace: dict = {}
    exec(BIDIRECTIONAL, linen_namespace)
    nnx_namespace: dict = {}
    exec(fixed, nnx_namespace)
    x = jax.random.normal(jax.random.key(1), (3, 6, 4))
    lengths = jax.numpy.array([6, 3, 4])  # padding: the carry handed on is each sequence's last valid one
    linen_model = linen_namespace["Summarizer"](5)
    variables = linen_model.init(jax.random.key(0), x, lengths)
    model = nnx_namespace["Summarizer"](4, 5, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)  # the optimized cell's per-gate layers fused, as NNX keeps them
    assert jax.numpy.allclose(model(x, lengths), linen_model.apply(variables, x, lengths), rtol=1e-5, atol=1e-6)
