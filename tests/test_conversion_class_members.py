"""Class-level members of a Linen class that mean the same on an NNX Module: a
``classmethod``/``staticmethod`` that does not build the class (a cache factory, as
Gemma's attention has) and a ``ClassVar`` class attribute (not a dataclass field) are
kept as they are."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

SOURCE = '''
from typing import ClassVar

import jax.numpy as jnp
import flax.linen as nn


class Attention(nn.Module):
    """Scaled heads."""
    HEADS: ClassVar[int] = 2
    width: int = 4

    @classmethod
    def init_cache(cls, length: int, dtype=jnp.float32):
        del cls
        return {"k": jnp.zeros((length, 2), dtype=dtype)}

    @staticmethod
    def scaled(x):
        return x * 0.5

    @nn.compact
    def __call__(self, x):
        return self.scaled(nn.Dense(self.width * self.HEADS)(x)) + self.HEADS
'''


def test_class_level_members_are_kept():
    fixed, messages = convert(SOURCE)
    assert fixed is not None, messages
    assert ('    """Scaled heads."""\n'
            "    HEADS: ClassVar[int] = 2\n\n"
            "    def __init__(self, in_features: int, width: int = 4, *, rngs: nnx.Rngs):\n"
            "        self.dense_0 = nnx.Linear(in_features, width * self.HEADS, rngs=rngs)\n") in fixed
    assert "    @classmethod\n    def init_cache(cls, length: int, dtype=jnp.float32):\n        del cls\n" in fixed
    assert "    @staticmethod\n    def scaled(x):\n" in fixed
    assert "return self.scaled(self.dense_0(x)) + self.HEADS" in fixed
    assert convert(fixed)[0] is None


def test_the_converted_class_computes_what_linen_does_from_the_same_weights():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(SOURCE)
    assert fixed is not None, messages
    difference = max_relative_difference(
        SOURCE, fixed, lambda linen: linen["Attention"](),
        lambda converted, nnx: converted["Attention"](3, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 3)), [({}, "eval")])
    assert difference < 1e-6


@pytest.mark.parametrize("method", [
    "    @classmethod\n    def create(cls):\n        return cls(width=2)\n",
    "    @staticmethod\n    def create():\n        return Attention(width=2)\n",
])
def test_a_class_level_method_that_builds_the_class_is_refused(method):
    fixed, messages = convert(SOURCE.replace("    @nn.compact\n", method + "\n    @nn.compact\n"))
    assert fixed is None
    assert "`create` builds the class, with its Linen signature" in messages["Attention"]
