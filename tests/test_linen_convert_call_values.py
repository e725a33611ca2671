"""Constructs of Linen's call-time values, each converted and run against the
Linen original from transplanted weights: flags merged with ``nn.merge_param``,
methods called with keyword arguments (flax's examples/sst2 uses both)."""

from __future__ import annotations

import pytest

from conversion_helpers import convert


def run_both(linen_source: str, nnx_source: str, build, inputs):
    """Linen variables from ``init``, loaded into the NNX model that ``build`` makes."""
    jax = pytest.importorskip("jax")
    from nnxlint.transplant import load_linen_variables

    linen_namespace: dict = {}
    exec(linen_source, linen_namespace)
    nnx_namespace: dict = {}
    exec(nnx_source, nnx_namespace)
    linen_model, nnx_model = build(linen_namespace, nnx_namespace)
    variables = linen_model.init(jax.random.key(0), *inputs)
    load_linen_variables(nnx_model, variables)
    return linen_model, variables, nnx_model


MERGED = '''\
import jax.numpy as jnp
import flax.linen as nn


class Head(nn.Module):
    hidden: int
    rate: float = 0.5
    deterministic: bool | None = None

    def setup(self):
        self.dense = nn.Dense(self.hidden)
        self.dropout = nn.Dropout(rate=self.rate)
        self.out = nn.Dense(2)

    def __call__(self, x, deterministic: bool | None = None):
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        x = self.dropout(nn.relu(self.dense(x)), deterministic=deterministic)
        return self.out(x)


class Classifier(nn.Module):
    hidden: int
    deterministic: bool | None = None

    def setup(self):
        self.head = Head(self.hidden)

    def features(self, x, deterministic: bool | None = None):
        deterministic = nn.module.merge_param("deterministic", self.deterministic, deterministic)
        return self.head(x, deterministic=deterministic)

    def __call__(self, x, deterministic: bool | None = None):
        return self.features(x * 2.0, deterministic=deterministic)
'''


def test_a_merged_flag_stays_a_call_value_that_falls_back_on_the_field():
    fixed, messages = convert(MERGED)
    assert fixed is not None, messages
    assert "deterministic = self.deterministic if deterministic is None else deterministic" in fixed
    assert "self.dropout(nnx.relu(self.dense(x)), deterministic=deterministic)" in fixed
    # the keyword-argument method call is followed: the layers inside get their sizes
    assert "return self.features(x * 2.0, deterministic=deterministic)" in fixed
    assert "self.head = Head(in_features, hidden, rngs=rngs)" in fixed
    jnp = pytest.importorskip("jax.numpy")
    from flax import nnx

    x = jnp.arange(12.0).reshape(3, 4) / 10
    linen_model, variables, model = run_both(
        MERGED, fixed, lambda linen, new: (linen["Classifier"](8), new["Classifier"](4, 8, rngs=nnx.Rngs(0))),
        (x, True))
    expected = linen_model.apply(variables, x, deterministic=True)
    assert jnp.array_equal(model(x, deterministic=True), expected)
    # a flag given at construction: Linen's field, NNX's attribute (which model.eval() sets too)
    fixed_linen = linen_model.clone(deterministic=True)
    fixed_model = type(model)(4, 8, deterministic=True, rngs=nnx.Rngs(0))
    from nnxlint.transplant import load_linen_variables

    load_linen_variables(fixed_model, variables)
    assert jnp.array_equal(fixed_model(x), fixed_linen.apply(variables, x))
    model.eval()
    assert jnp.array_equal(model(x), expected)


@pytest.mark.parametrize("line, reason", [
    ("flag = nn.merge_param('deterministic', self.deterministic, deterministic) or True",
     "`nn.merge_param` inside an expression"),
    ("flag = nn.merge_param('deterministic', True, deterministic)", "a literal name and a field"),
    ("flag = nn.merge_param('deterministic', self.deterministic, not deterministic)",
     "a call-time value other than a name"),
])
def test_a_merge_param_the_conversion_cannot_follow_gets_no_fix(line, reason):
    source = MERGED.replace(
        'deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)', line + "\n"
        "        deterministic = flag")
    _fixed, messages = convert(source)
    assert reason in messages["Head"], messages


def test_a_method_called_with_a_keyword_it_does_not_take_gets_no_fix():
    source = MERGED.replace("self.features(x * 2.0, deterministic=deterministic)",
                            "self.features(x * 2.0, train=deterministic)")
    _fixed, messages = convert(source)
    assert "arguments that do not match its parameters" in messages["Classifier"], messages


WORD_DROPOUT = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class TokenDropout(nn.Module):
    rate: float
    unknown: int
    deterministic: bool | None = None

    @nn.compact
    def __call__(self, tokens, deterministic: bool | None = None):
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if deterministic or self.rate == 0.0:
            return tokens
        mask = jax.random.bernoulli(self.make_rng("dropout"), p=self.rate, shape=tokens.shape)
        return jnp.where(mask, self.unknown, tokens)


class Embedder(nn.Module):
    vocab: int

    @nn.compact
    def __call__(self, tokens, deterministic: bool | None = None):
        tokens = TokenDropout(0.5, 0)(tokens, deterministic=deterministic)
        return nn.Embed(self.vocab, 3)(tokens)
'''


def test_make_rng_draws_from_the_stream_the_module_keeps():
    fixed, messages = convert(WORD_DROPOUT)
    assert fixed is not None, messages
    assert "self.dropout_rngs = rngs.dropout.fork()" in fixed
    assert "mask = jax.random.bernoulli(self.dropout_rngs(), p=self.rate, shape=tokens.shape)" in fixed
    jax = pytest.importorskip("jax")
    from flax import nnx

    tokens = jax.numpy.arange(1, 41).reshape(4, 10)
    linen_model, variables, model = run_both(
        WORD_DROPOUT, fixed, lambda linen, new: (linen["Embedder"](41), new["Embedder"](41, rngs=nnx.Rngs(0))),
        (tokens, True))
    assert jax.numpy.array_equal(model(tokens, deterministic=True), linen_model.apply(variables, tokens, True))
    dropped = model.token_dropout_0(tokens, deterministic=False)
    again = model.token_dropout_0(tokens, deterministic=False)
    assert not jax.numpy.array_equal(dropped, again)  # a new key at each call, as Linen's
    # with the same keys on both sides, the same tokens drop
    original = jax.random.bernoulli
    try:
        jax.random.bernoulli = lambda key, p, shape: original(jax.random.key(7), p, shape)
        expected = linen_model.apply(variables, tokens, False, rngs={"dropout": jax.random.key(1)})
        assert jax.numpy.array_equal(model(tokens, deterministic=False), expected)
    finally:
        jax.random.bernoulli = original
    assert 0 < int((dropped == 0).sum()) < tokens.size


def test_make_rng_with_a_computed_stream_name_gets_no_fix():
    _fixed, messages = convert(WORD_DROPOUT.replace('self.make_rng("dropout")', 'self.make_rng(str(self.rate))'))
    assert "one literal stream name" in messages["TokenDropout"], messages


TABLE = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class Lookup(nn.Module):
    vocab: int
    width: int
    frozen: bool = False

    def setup(self):
        self.table = self.param("table", nn.initializers.normal(0.1), (self.vocab, self.width))
        self.head = nn.Dense(2)

    def __call__(self, ids):
        rows = self.table[ids]
        if self.frozen:
            rows = jax.lax.stop_gradient(rows)
        return self.head(rows)
'''


def test_rows_gathered_from_a_parameter_table_have_its_width():
    fixed, messages = convert(TABLE)
    assert fixed is not None, messages
    assert "self.head = nnx.Linear(width, 2, rngs=rngs)" in fixed  # the table's width, through stop_gradient
    jax = pytest.importorskip("jax")
    from flax import nnx

    ids = jax.numpy.array([[1, 4, 2], [0, 3, 3]])
    linen_model, variables, model = run_both(
        TABLE, fixed, lambda linen, new: (linen["Lookup"](5, 3), new["Lookup"](5, 3, rngs=nnx.Rngs(0))), (ids,))
    assert jax.numpy.array_equal(model(ids), linen_model.apply(variables, ids))
