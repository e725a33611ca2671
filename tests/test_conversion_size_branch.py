"""A submodule built in a branch whose test reads the input's size (BiT's
bottleneck: ``if x.shape[-1] != out or self.strides != (1, 1):`` with ``out``
computed from ``x.shape[-1]``): ``__init__`` builds it under the same test in
terms of ``in_features``, which is the call's for an input of the size the
module is built for; the call keeps its test.  The sizes a parent passes fold
to numbers where the branch is decided (``Bottleneck(8, ...)``, not a
conditional of ``max``)."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

BOTTLENECKS = '''
from typing import Optional, Sequence

from flax import linen as nn


class Bottleneck(nn.Module):
    mid: Optional[int] = None
    strides: Sequence[int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        mid = self.mid or x.shape[-1] // 4
        out = mid * 4
        skip = x
        if x.shape[-1] != out or self.strides != (1, 1):
            skip = nn.Conv(out, (1, 1), self.strides, use_bias=False, name="proj")(x)
        y = nn.relu(nn.Conv(mid, (1, 1), name="squeeze")(x))
        y = nn.relu(nn.Conv(mid, (3, 3), self.strides, name="mix")(y))
        return nn.relu(nn.Conv(out, (1, 1), name="unsqueeze")(y) + skip)


class Trunk(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = Bottleneck(3, name="a")(x)
        x = Bottleneck(name="b")(x)
        return Bottleneck(5, strides=(2, 2), name="c")(x)
'''


def test_the_projection_is_built_under_the_test_in_init_terms_and_the_call_keeps_its_test():
    fixed, messages = convert(BOTTLENECKS)
    assert fixed is not None, messages
    assert ("        if in_features != ((mid or in_features // 4) * 4) or strides != (1, 1):\n"
            "            self.proj = nnx.Conv(in_features, ((mid or in_features // 4) * 4), (1, 1), strides, "
            "use_bias=False, rngs=rngs)\n") in fixed
    assert ("        if x.shape[-1] != out or self.strides != (1, 1):\n"
            "            skip = self.proj(x)\n") in fixed
    # the second block's input is the first's output, 12 whichever way the first's branch went
    assert "self.b = Bottleneck(12, rngs=rngs)" in fixed
    assert "self.c = Bottleneck(12, 5, strides=(2, 2), rngs=rngs)" in fixed


@pytest.mark.parametrize("channels", [12, 7])  # the first block without and with its projection
def test_the_converted_trunk_computes_what_linen_does_from_the_same_weights(channels):
    jax = pytest.importorskip("jax")
    fixed, messages = convert(BOTTLENECKS)
    assert fixed is not None, messages
    difference = max_relative_difference(
        BOTTLENECKS, fixed, lambda linen: linen["Trunk"](),
        lambda converted, nnx: converted["Trunk"](channels, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 6, 6, channels)), [({}, "eval")])
    assert difference < 1e-6


def test_a_test_on_a_value_of_the_call_other_than_a_size_is_still_refused():
    source = BOTTLENECKS.replace("if x.shape[-1] != out or", "if x.mean() > 0 or")
    fixed, messages = convert(source)
    assert fixed is None
    assert "branch" in messages["Bottleneck"]


@pytest.mark.parametrize("code, tidy", [
    ("max((2 or d // 4) * 4, (2 or d // 4) * 4 if d != ((2 or d // 4) * 4) or (1, 1) != (1, 1) else d)", "8"),
    ("None or d // 4", "d // 4"),
    ("(m or d // 4) * 4", "(m or d // 4) * 4"),  # a field's value is unknown: kept
    ("a if b != a else b", "a"),
    ("max(12 if 8 != 12 or (2, 2) != (1, 1) else 8, 12)", "12"),  # integer literals compared
    ("x != 3", "x != 3"),
    ("a if b != c else b", "a if b != c else b"),
])
def test_sizes_fold_where_literals_decide_them(code, tidy):
    from nnxlint.conversion.shapes import tidy_code

    assert tidy_code(code) == tidy
