"""Keyword arguments gathered in a local dict and unpacked into layer constructions
(``nn.Dense(d, **inits)``, as big_vision's ViT blocks write their initializers):
written out into each construction (``constructs/keyword_dict.py``)."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

BLOCK = '''
import flax.linen as nn


class MlpBlock(nn.Module):
    mlp_dim: int = 8

    @nn.compact
    def __call__(self, x):
        inits = dict(
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.normal(stddev=0.5),
        )
        d = x.shape[-1]
        x = nn.gelu(nn.Dense(self.mlp_dim, **inits)(x))
        return nn.Dense(d, use_bias=True, **inits)(x)
'''


def test_the_dict_s_entries_are_written_into_each_construction():
    fixed, messages = convert(BLOCK)
    assert fixed is not None, messages
    inits = "kernel_init=nnx.initializers.xavier_uniform(), bias_init=nnx.initializers.normal(stddev=0.5)"
    assert f"self.dense_0 = nnx.Linear(in_features, mlp_dim, {inits}, rngs=rngs)" in fixed
    assert f"self.dense_1 = nnx.Linear(mlp_dim, in_features, use_bias=True, {inits}, rngs=rngs)" in fixed
    assert "inits" not in fixed.replace("initializers", "")
    assert convert(fixed)[0] is None


def test_the_converted_block_computes_what_linen_does_from_the_same_weights():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(BLOCK)
    assert fixed is not None, messages
    difference = max_relative_difference(
        BLOCK, fixed, lambda linen: linen["MlpBlock"](), lambda converted, nnx: converted["MlpBlock"](3, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 3)), [({}, "eval")])
    assert difference < 1e-6


@pytest.mark.parametrize("change", [
    # read otherwise than unpacked
    ("        d = x.shape[-1]\n", "        d = x.shape[-1]\n        print(inits)\n"),
    # a value of ``__call__``
    ("stddev=0.5", "stddev=x.std()"),
    # bound again
    ("        d = x.shape[-1]\n", "        d = x.shape[-1]\n        inits = dict(use_bias=False)\n"),
])
def test_other_dicts_keep_the_refusal(change):
    fixed, messages = convert(BLOCK.replace(*change))
    assert fixed is None
    assert "starred arguments to `nn.Dense`" in messages["MlpBlock"]
