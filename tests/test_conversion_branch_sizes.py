"""Sizes that depend on a branch (``constructs/branch_sizes.py``): a test on fields
gives the conditional size in ``__init__``; a test on values of ``__call__`` is
refused, naming it.  No jraph needed."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference
from nnxlint.conversion.shapes import tidy_code

PROJECTION = '''
from flax import linen as nn


class Head(nn.Module):
    width: int
    classes: int
    use_proj: bool = True

    @nn.compact
    def __call__(self, x):
        if self.use_proj:
            x = nn.relu(nn.Dense(self.width, name="proj")(x))
        return nn.Dense(self.classes)(x)
'''


def test_a_layer_after_a_branch_on_a_field_is_sized_by_the_same_test():
    fixed, messages = convert(PROJECTION)
    assert fixed is not None, messages
    assert "self.dense_0 = nnx.Linear(width if use_proj else in_features, classes, rngs=rngs)" in fixed


@pytest.mark.parametrize("use_proj", [True, False])
def test_the_conditional_size_computes_what_linen_does(use_proj):
    jax = pytest.importorskip("jax")
    fixed, messages = convert(PROJECTION)
    assert fixed is not None, messages
    difference = max_relative_difference(
        PROJECTION, fixed, lambda linen: linen["Head"](width=6, classes=3, use_proj=use_proj),
        lambda converted, nnx: converted["Head"](5, width=6, classes=3, use_proj=use_proj, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
    assert difference == 0.0


def test_if_and_else_give_a_conditional_size_and_agreeing_branches_one_size():
    source = '''
from flax import linen as nn


class Mixer(nn.Module):
    width: int
    wide: bool = False

    @nn.compact
    def __call__(self, x):
        if self.wide:
            x = nn.Dense(2 * self.width, name="wide_in")(x)
        else:
            x = nn.Dense(self.width, name="narrow_in")(x)
        if self.wide:
            y = nn.Dense(self.width, name="wide_mid")(x)
        else:
            y = nn.Dense(self.width, name="narrow_mid")(x)
        return nn.Dense(1)(y)
'''
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "self.wide_mid = nnx.Linear(2 * width if wide else width, width, rngs=rngs)" in fixed
    assert "self.narrow_mid = nnx.Linear(2 * width if wide else width, width, rngs=rngs)" in fixed
    assert "self.dense_0 = nnx.Linear(width, 1, rngs=rngs)" in fixed  # both branches give `width`


CHILD_RETURNS_EARLY = '''
from flax import linen as nn


class Head(nn.Module):
    classes: int
    bare: bool = False

    @nn.compact
    def __call__(self, x):
        if self.bare:
            return x
        return nn.Dense(self.classes, name="out")(x)


class Net(nn.Module):
    hidden: int
    classes: int
    bare: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.hidden)(x)
        x = Head(self.classes, bare=self.bare)(x)
        return nn.Dense(1)(x)
'''


@pytest.mark.parametrize("bare", [True, False])
def test_a_child_returning_early_gives_its_parent_the_output_size_of_each_return(bare):
    jax = pytest.importorskip("jax")
    fixed, messages = convert(CHILD_RETURNS_EARLY)
    assert fixed is not None, messages
    assert "self.dense_1 = nnx.Linear(hidden if bare else classes, 1, rngs=rngs)" in fixed
    difference = max_relative_difference(
        CHILD_RETURNS_EARLY, fixed, lambda linen: linen["Net"](hidden=4, classes=3, bare=bare),
        lambda converted, nnx: converted["Net"](5, hidden=4, classes=3, bare=bare, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
    assert difference == 0.0


def test_a_size_decided_by_a_value_of_call_is_refused_naming_the_test():
    source = '''
import jax
import jax.numpy as jnp
from flax import linen as nn


class Widen(nn.Module):
    classes: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(4)(x)
        if jnp.sum(x) > 0:
            x = jnp.concatenate([x, x], axis=-1)
        return nn.Dense(self.classes)(x)


variables = Widen(3).init(jax.random.key(0), jnp.ones((1, 5)))
'''
    fixed, messages = convert(source)
    assert fixed is None
    assert "the size of `x` depends on the test `jnp.sum(x) > 0`, which reads values of `__call__`" \
        in messages["Widen"]


def test_a_branch_that_keeps_the_sizes_changes_nothing():
    source = PROJECTION.replace('x = nn.relu(nn.Dense(self.width, name="proj")(x))', "x = nn.relu(x)")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "self.dense_0 = nnx.Linear(in_features, classes, rngs=rngs)" in fixed


@pytest.mark.parametrize("code, tidy", [
    ("(([d] * n))[-1] if (([d] * n)) else (4 * d)", "([d] * n)[-1] if [d] * n else 4 * d"),
    ("((2 * hidden))", "2 * hidden"),
    ("2 * (a + b)", "2 * (a + b)"),
    ("(a, b)", "(a, b)"),
    ("(1).real", "(1).real"),
    ("(a if b else c) if d else (e if f else g)", "(a if b else c) if d else (e if f else g)"),
    ("(a, b) if (c) else (d)", "(a, b) if c else d"),
    # sizes are pure: a test repeated inside its own branch is decided
    ("a if t else (b if t else c)", "a if t else c"),
    ("(a if t else b) if t else c", "a if t else c"),
    ("2 * (a + b if t else a + b)", "2 * (a + b)"),
    ("a if t else 2 * (a if t else b) + (c if f else (a if t else d))", "a if t else 2 * b + (c if f else d)"),
    ("([d] * n)[-1] if [d] * n else (([d] * n)[-1] if [d] * n else 2 * d)", "([d] * n)[-1] if [d] * n else 2 * d"),
])
def test_sizes_lose_only_the_parentheses_python_does_not_need(code, tidy):
    assert tidy_code(code) == tidy
    for values in _VALUES:
        assert eval(tidy, {}, values) == eval(code, {}, values)


_VALUES = [dict(d=3, n=2, hidden=4, a=1, b=2, c=0, e=5, f=1, g=6, t=1),
           dict(d=3, n=0, hidden=4, a=1, b=2, c=7, e=5, f=0, g=6, t=0)]


SUM = '''
import jax
import jax.numpy as jnp
from flax import linen as nn


class Sum(nn.Module):
    a: int
    b: int

    @nn.compact
    def __call__(self, x):
        y = nn.Dense(self.a)(x) + nn.Dense(self.b)(x)
        return nn.Dense(1)(y)


variables = Sum(3, 1).init(jax.random.key(0), jnp.ones((1, 5)))
'''


def test_a_sum_of_arrays_of_different_sizes_is_as_wide_as_the_wider_one():
    """Broadcasting runs only where the sizes agree or one is 1, and then gives the larger:
    ``max(a, b)`` is exact wherever Linen runs (here ``Sum(3, 1)``: 3)."""
    jax = pytest.importorskip("jax")
    fixed, messages = convert(SUM)
    assert fixed is not None, messages
    assert "self.dense_2 = nnx.Linear(max(a, b), 1, rngs=rngs)" in fixed
    difference = max_relative_difference(
        SUM, fixed, lambda linen: linen["Sum"](3, 1), lambda converted, nnx: converted["Sum"](5, 3, 1, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
    assert difference == 0.0


def test_a_layer_after_a_sum_of_sizes_that_cannot_broadcast_is_refused_naming_the_sum():
    source = SUM.replace("nn.Dense(self.a)(x) + nn.Dense(self.b)(x)", "nn.Dense(3)(x) + nn.Dense(4)(x)")
    fixed, messages = convert(source)
    assert fixed is None
    line = source.splitlines().index("        y = nn.Dense(3)(x) + nn.Dense(4)(x)") + 1
    assert "(the last sum of arrays whose sizes the conversion does not know to be equal: " \
           f"`nn.Dense(3)(x) + nn.Dense(4)(x)` at line {line}, of sizes `3` and `4`)" in messages["Sum"]


# a residual unit projects its input only when the sizes differ (or it strides): either
# way its output has ``features * 4`` channels, so a stage of them, and a model of
# stages built in a loop, convert (vision_transformer's and big_vision's ResNet)
BOTTLENECK_STAGES = '''
from typing import Sequence

import jax.numpy as jnp
from flax import linen as nn


class Bottleneck(nn.Module):
    features: int
    strides: Sequence[int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        out = self.features * 4
        residual = x
        if x.shape[-1] != out or self.strides != (1, 1):
            residual = nn.Conv(out, (1, 1), self.strides, use_bias=False, name="conv_proj")(residual)
            residual = nn.GroupNorm(num_groups=4, name="gn_proj")(residual)
        y = nn.Conv(self.features, (1, 1), use_bias=False, name="conv1")(x)
        y = nn.relu(nn.GroupNorm(num_groups=4, name="gn1")(y))
        y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False, name="conv2")(y)
        y = nn.relu(nn.GroupNorm(num_groups=4, name="gn2")(y))
        y = nn.Conv(out, (1, 1), use_bias=False, name="conv3")(y)
        return nn.relu(residual + y)


class Stage(nn.Module):
    units: int
    features: int
    first_stride: Sequence[int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        x = Bottleneck(self.features, strides=self.first_stride, name="unit1")(x)
        for i in range(1, self.units):
            x = Bottleneck(self.features, name=f"unit{i + 1}")(x)
        return x


class Backbone(nn.Module):
    width: int = 4

    @nn.compact
    def __call__(self, image):
        x = nn.Conv(self.width, (3, 3), name="conv_root")(image)
        x = Stage(2, self.width, name="block1")(x)
        for i, units in enumerate([1, 2], 1):
            x = Stage(units, self.width * 2 ** i, first_stride=(2, 2), name=f"block{i + 1}")(x)
        return jnp.mean(x, axis=(1, 2))
'''


def test_a_projection_taken_only_when_sizes_differ_leaves_one_size():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(BOTTLENECK_STAGES)
    assert fixed is not None, messages
    # no ``max(out if in != out or ... else in, out)``: the unit's output is ``features * 4``
    assert "Bottleneck((features * 4), features, rngs=rngs)" in fixed
    assert "setattr(self, f\"block{i + 1}\", Stage(x_features, units, width * 2 ** i, first_stride=(2, 2), " \
           "rngs=rngs))" in fixed
    difference = max_relative_difference(
        BOTTLENECK_STAGES, fixed, lambda linen: linen["Backbone"](width=4),
        lambda converted, nnx: converted["Backbone"](3, width=4, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 16, 16, 3)), [({}, "eval")])
    assert difference <= 1e-5
