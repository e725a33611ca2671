"""Code of several lines kept under a branch of ``setup`` (an ``if`` of plain values
inside an ``if`` that builds a submodule, as flax's wmt Transformer checks its vocabulary
sizes) moves in as a block: the converted file parses and computes what Linen does."""

import jax
import pytest

from conversion_helpers import convert, max_relative_difference

SHARED_EMBEDDING = '''
import flax.linen as nn


class Tagger(nn.Module):
    vocab: int
    out_vocab: int
    share: bool

    def setup(self):
        if self.share:
            if self.out_vocab is not None:
                assert (
                    self.out_vocab == self.vocab
                ), "a shared embedding needs one vocabulary"
            self.embed = nn.Embed(num_embeddings=self.vocab, features=4)
        else:
            self.embed = None
        self.head = nn.Dense(3)

    def __call__(self, tokens):
        return self.head(self.embed(tokens))
'''


def test_a_nested_if_of_plain_values_moves_in_as_a_block():
    fixed, reasons = convert(SHARED_EMBEDDING)
    assert fixed is not None, reasons
    compile(fixed, "models.py", "exec")
    assert "        if share:\n            if out_vocab is not None:\n                assert (" in fixed
    tokens = jax.random.randint(jax.random.key(1), (2, 5), 0, 7)
    difference = max_relative_difference(
        SHARED_EMBEDDING, fixed, lambda linen: linen["Tagger"](7, 7, True),
        lambda converted, nnx: converted["Tagger"](7, 7, True, rngs=nnx.Rngs(0)), tokens, [({}, "eval")])
    assert difference < 1e-6


def test_the_assert_still_guards_the_nnx_constructor():
    fixed, _ = convert(SHARED_EMBEDDING)
    from flax import nnx
    namespace = {}
    exec(fixed, namespace)
    with pytest.raises(AssertionError, match="one vocabulary"):
        namespace["Tagger"](7, 9, True, rngs=nnx.Rngs(0))
