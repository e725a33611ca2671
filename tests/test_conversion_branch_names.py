"""Automatically named submodules made in a branch on fields
(``constructs/branch_names.py``): the name Linen gives them is known when the
count of their type before them does not depend on a branch; both arms of an
``if`` making the same name build one attribute two ways; a later module of a
type the arms made unequally many of is refused, naming that ``if``."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

NORMED_BLOCK = '''
from flax import linen as nn


class NormedBlock(nn.Module):
    features: int
    calibrated: bool = False
    widen: bool = True

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(self.features, (3, 3))(x)
        if self.calibrated:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.5, epsilon=1e-3)(x)
        else:
            x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x)
        if self.widen:
            x = nn.Dense(2 * self.features)(x)
        return nn.BatchNorm(use_running_average=not train)(x)
'''


def test_both_arms_making_one_name_build_one_attribute_under_if_and_else():
    fixed, messages = convert(NORMED_BLOCK)
    assert fixed is not None, messages
    assert ("        if calibrated:\n"
            "            self.batch_norm_0 = nnx.BatchNorm(features, momentum=0.5, epsilon=1e-3, rngs=rngs)\n"
            "        else:\n"
            "            self.batch_norm_0 = nnx.BatchNorm(features, rngs=rngs)\n") in fixed
    # one arm only, and the BatchNorm after it is numbered the same whichever way the branches go
    assert "        if widen:\n            self.dense_0 = nnx.Linear(features, 2 * features, rngs=rngs)\n" in fixed
    assert "self.batch_norm_1 = nnx.BatchNorm(2 * features if widen else features, rngs=rngs)" in fixed
    fixed_again, _ = convert(fixed)
    assert fixed_again is None  # nothing Linen is left to convert


@pytest.mark.parametrize("calibrated, widen", [(False, True), (True, False), (True, True)])
def test_the_converted_block_computes_what_linen_does_in_train_and_eval_mode(calibrated, widen):
    jax = pytest.importorskip("jax")
    fixed, messages = convert(NORMED_BLOCK)
    assert fixed is not None, messages
    difference = max_relative_difference(
        NORMED_BLOCK, fixed, lambda linen: linen["NormedBlock"](4, calibrated=calibrated, widen=widen),
        lambda converted, nnx: converted["NormedBlock"](3, 4, calibrated=calibrated, widen=widen, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 6, 6, 3)),
        [({"train": False}, "eval"), ({"train": True}, "train")])  # eval first: a train call moves NNX's statistics
    assert difference < 1e-6


def test_a_module_after_arms_that_make_different_numbers_of_its_type_is_refused_naming_the_if():
    source = '''
from flax import linen as nn


class Head(nn.Module):
    hidden: int
    deep: bool = False

    @nn.compact
    def __call__(self, x):
        if self.deep:
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)
'''
    fixed, messages = convert(source)
    assert fixed is None
    assert "after the `if` at line 11" in messages["Head"]
    assert "`Dense_<n>`) depends on the arm taken; give it a `name=`" in messages["Head"]
    named, messages = convert(source.replace("nn.Dense(1)(x)", "nn.Dense(1, name='out')(x)"))
    assert named is not None, messages
    assert "        if deep:\n            self.dense_0 = nnx.Linear(in_features, hidden, rngs=rngs)\n" in named
    assert "self.out = nnx.Linear(hidden if deep else in_features, 1, rngs=rngs)" in named


def test_an_arm_that_returns_numbers_nothing_after_it():
    source = '''
from flax import linen as nn


class Head(nn.Module):
    classes: int
    linear: bool = False

    @nn.compact
    def __call__(self, x):
        if self.linear:
            return nn.Dense(self.classes)(x)
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(self.classes)(x)
'''
    fixed, messages = convert(source)
    assert fixed is not None, messages
    # Linen names the linear head `Dense_0`, and the first layer of the other path `Dense_0` too
    assert ("        if linear:\n            self.dense_0 = nnx.Linear(in_features, classes, rngs=rngs)\n"
            "        else:\n            self.dense_0 = nnx.Linear(in_features, 16, rngs=rngs)\n"
            "        if not linear:\n            self.dense_1 = nnx.Linear(16, classes, rngs=rngs)\n") in fixed
    jax = pytest.importorskip("jax")
    for linear in (True, False):
        difference = max_relative_difference(
            source, fixed, lambda linen: linen["Head"](3, linear=linear),
            lambda converted, nnx: converted["Head"](5, 3, linear=linear, rngs=nnx.Rngs(0)),
            jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
        assert difference == 0.0, linear


def test_the_same_name_made_in_nested_branches_is_refused():
    source = '''
from flax import linen as nn


class Head(nn.Module):
    a: bool = False
    b: bool = False

    @nn.compact
    def __call__(self, x):
        if self.a:
            if self.b:
                x = nn.Dense(3)(x)
            else:
                x = nn.Dense(4)(x)
        else:
            x = nn.Dense(5)(x)
        return x
'''
    fixed, messages = convert(source)
    assert fixed is None
    assert "`dense_0` is created in two places that are not the two arms of one `if` on fields" in messages["Head"]
