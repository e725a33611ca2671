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


HEAD = '''
import flax.linen as nn


class Classifier(nn.Module):
    classes: int = 3
    zero_head: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(6)(x))
        if self.classes:
            kw = {"kernel_init": nn.initializers.zeros} if self.zero_head else {}
            head = nn.Dense(self.classes, name="head", **kw)
            x = head(x)
        return x
'''


def test_a_choice_of_dicts_in_a_block_stays_a_choice_in_init():
    fixed, messages = convert(HEAD)
    assert fixed is not None, messages
    assert "self.head = nnx.Linear(6, classes, **({'kernel_init': nnx.initializers.zeros} if zero_head else {}), " \
        "rngs=rngs)" in fixed
    assert "kw" not in fixed
    assert convert(fixed)[0] is None


def test_a_keyword_both_dicts_pass_is_written_as_a_choice():
    source = HEAD.replace('{"kernel_init": nn.initializers.zeros} if self.zero_head else {}',
                          'dict(use_bias=False) if self.zero_head else {"use_bias": True}')
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "self.head = nnx.Linear(6, classes, use_bias=(False if zero_head else True), rngs=rngs)" in fixed


def test_the_chosen_head_computes_what_linen_does():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(HEAD)
    assert fixed is not None, messages
    difference = max_relative_difference(
        HEAD, fixed, lambda linen: linen["Classifier"](zero_head=False),
        lambda converted, nnx: converted["Classifier"](4, zero_head=False, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 4)), [({}, "eval")])
    assert difference < 1e-6
    namespace: dict = {}
    exec(compile(fixed, "<converted>", "exec"), namespace)
    from flax import nnx
    zeroed = namespace["Classifier"](4, rngs=nnx.Rngs(0))
    assert not zeroed.head.kernel[...].any() and zeroed.dense_0.kernel[...].any()


@pytest.mark.parametrize("entry, reason", [
    # sets the output size only sometimes
    ('{"features": 7}', "`nn.Dense` is passed `features` only sometimes"),
    # a different default in NNX would show where Linen's applies (the table says which are equal)
    ('{"dot_general": None}', "`nn.Dense` is passed `dot_general` only sometimes"),
])
def test_a_keyword_passed_only_sometimes_must_mean_the_same_when_left_out(entry, reason):
    fixed, messages = convert(HEAD.replace('{"kernel_init": nn.initializers.zeros}', entry))
    assert fixed is None
    assert reason in messages["Classifier"]


def test_a_choice_on_a_value_of_call_keeps_the_refusal():
    fixed, messages = convert(HEAD.replace("if self.zero_head else", "if x.sum() > 0 else"))
    assert fixed is None
    assert "starred arguments to `nn.Dense`" in messages["Classifier"]
