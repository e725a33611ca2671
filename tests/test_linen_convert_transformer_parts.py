"""Constructs of flax's Transformer examples (lm1b, wmt), each converted and run
against the Linen original from transplanted weights: a layer made in a branch
on fields, the attention masks' NNX twins."""

from __future__ import annotations

import textwrap

import pytest

from nnxlint.engine import check_source
from nnxlint.registry import all_rules

NNX002 = all_rules()["NNX002"]


def convert(source: str):
    """(fixed text or None, {class: message})."""
    source = textwrap.dedent(source)
    fixed = check_source(source, "models.py", [NNX002], "unsafe").fixed_text
    findings = check_source(source, "models.py", [NNX002]).findings
    return fixed, {f.message.split("`")[1]: f.message for f in findings}


def namespaces(linen_source: str, nnx_source: str):
    linen_namespace: dict = {}
    exec(linen_source, linen_namespace)
    nnx_namespace: dict = {}
    exec(nnx_source, nnx_namespace)
    return linen_namespace, nnx_namespace


BRANCH = '''\
import jax.numpy as jnp
import flax.linen as nn


class Decoder(nn.Module):
    vocab: int
    width: int
    tied: bool = False

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(self.vocab, self.width)
        y = nn.Dense(self.width)(embed(tokens))
        mask = nn.combine_masks(nn.make_attention_mask(tokens > 0, tokens > 0), nn.make_causal_mask(tokens))
        y = y * mask.sum(axis=(1, 2, 3))[:, None, None]
        if self.tied:
            logits = embed.attend(y)
        else:
            logits = nn.Dense(self.vocab, name="logitdense")(y)
        return logits
'''


@pytest.mark.parametrize("tied", [False, True])
def test_a_layer_made_in_a_branch_on_a_field_is_made_under_the_same_test(tied):
    fixed, messages = convert(BRANCH)
    assert fixed is not None, messages
    assert "        if not (tied):\n            self.logitdense = nnx.Linear(width, vocab, rngs=rngs)\n" in fixed
    assert "nnx.combine_masks(nnx.make_attention_mask(tokens > 0, tokens > 0), nnx.make_causal_mask(tokens))" \
        in fixed
    jax = pytest.importorskip("jax")
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen, new = namespaces(BRANCH, fixed)
    tokens = jax.numpy.array([[3, 1, 4, 0], [5, 2, 0, 0]])
    linen_model = linen["Decoder"](7, 6, tied=tied)
    variables = linen_model.init(jax.random.key(0), tokens)
    assert ("logitdense" in variables["params"]) != tied
    model = new["Decoder"](7, 6, tied=tied, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)  # checks every name and shape both ways
    assert jax.numpy.array_equal(model(tokens), linen_model.apply(variables, tokens))


@pytest.mark.parametrize("old, new, reason", [
    ('nn.Dense(self.vocab, name="logitdense")', "nn.Dense(self.vocab)", "needs a literal `name=`"),
    ("if self.tied:", "if tokens.shape[0] > 1:", "not a value of `__call__`"),
])
def test_a_layer_in_a_branch_the_conversion_cannot_place_gets_no_fix(old, new, reason):
    fixed, messages = convert(BRANCH.replace(old, new))
    assert fixed is None and reason in messages["Decoder"], messages
