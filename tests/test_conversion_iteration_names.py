"""Modules a stack loop names per iteration with an f-string other than
``f'<name>_{i}'`` (``constructs/loop_stack.py``, ``_iteration_name``): BiT's stages
build ``unit1`` before the loop and ``unit{i + 1}`` in it.  NNX keeps those names as
attributes (``setattr`` in ``__init__``'s loop, ``getattr`` where called), so the
transplant finds Linen's ``unit2``, ``unit3``, ... under the same paths."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

STAGE = '''
from flax import linen as nn


class Bottleneck(nn.Module):
    width: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        shortcut = x
        if x.shape[-1] != self.width * 2 or self.stride != 1:
            shortcut = nn.Conv(self.width * 2, (1, 1), strides=self.stride, use_bias=False, name="proj")(x)
        h = nn.Conv(self.width, (3, 3), strides=self.stride, name="conv1")(x)
        h = nn.GroupNorm(num_groups=2, name="gn1")(nn.relu(h))
        h = nn.Conv(self.width * 2, (1, 1), name="conv2")(h)
        return nn.relu(shortcut + h)


class Stage(nn.Module):
    units: int
    width: int
    stride: int

    @nn.compact
    def __call__(self, x):
        x = Bottleneck(self.width, stride=self.stride, name="unit1")(x)
        for k in range(1, self.units):
            x = Bottleneck(self.width, name=f"unit{k + 1}")(x)
        return x
'''


def test_units_named_per_iteration_become_attributes_of_those_names():
    fixed, messages = convert(STAGE)
    assert fixed is not None, messages
    assert "        self.unit1 = Bottleneck(in_features, width, stride=stride, rngs=rngs)\n" in fixed
    # the unit's projection is taken only when the sizes differ: after unit1 every unit gets
    # ``width * 2`` (constructs/branch_sizes.py), no running size
    assert ("        for k in range(1, units):\n"
            '            setattr(self, f"unit{k + 1}", Bottleneck((width * 2), width, rngs=rngs))\n\n') in fixed
    assert ("        x = self.unit1(x)\n"
            "        for k in range(1, self.units):\n"
            '            x = getattr(self, f"unit{k + 1}")(x)\n') in fixed
    assert "nnx.List" not in fixed and "linen" not in fixed
    assert convert(fixed)[0] is None  # idempotent: nothing Linen left


def test_linen_weights_load_under_the_same_names_and_the_stage_computes_the_same():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(STAGE)
    assert fixed is not None, messages
    difference = max_relative_difference(
        STAGE, fixed, lambda linen: linen["Stage"](units=3, width=4, stride=2),
        lambda converted, nnx: converted["Stage"](5, 3, 4, 2, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 8, 8, 5)), [({}, "train"), ({}, "eval")])
    assert difference < 1e-6


def test_a_literal_format_spec_in_the_name_is_kept():
    # big_vision's BiT-paper stages: ``unit01``, ``unit02``, ...
    source = STAGE.replace('name="unit1"', 'name="unit01"').replace('f"unit{k + 1}"', 'f"unit{k + 1:02d}"')
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert 'setattr(self, f"unit{k + 1:02d}", Bottleneck((width * 2), width, rngs=rngs))' in fixed
    jax = pytest.importorskip("jax")
    difference = max_relative_difference(
        source, fixed, lambda linen: linen["Stage"](units=3, width=4, stride=1),
        lambda converted, nnx: converted["Stage"](8, 3, 4, 1, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(3), (2, 8, 8, 8)), [({}, "eval")])
    assert difference < 1e-6


@pytest.mark.parametrize("name, reason", [
    ('f"unit{self.width}{k}"', "an f-string of the loop's variables"),
    ('f"unit{len(str(k))}"', "an f-string of the loop's variables"),
    ('f"unit{k:{self.width}}"', "an f-string of the loop's variables"),
    ('"unit" + str(k + 1)', "an f-string of the loop's variables"),
])
def test_other_names_in_a_loop_are_refused_with_the_reason(name, reason):
    fixed, messages = convert(STAGE.replace('f"unit{k + 1}"', name))
    assert fixed is None
    assert reason in messages["Stage"], messages
