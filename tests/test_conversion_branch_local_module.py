"""A submodule bound to a name inside a branch on fields and called there more than
once (``constructs/local_module.py``): BiT's head, ``if self.num_classes: head =
nn.Dense(...)``, applied to the pooled and to the unpooled features.  ``__init__``
builds it under the same test; both calls use the one layer, so Linen's weights
load and the outputs match, with the branch taken or not."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

HEADED = '''
from typing import Optional

import jax.numpy as jnp
from flax import linen as nn


class Headed(nn.Module):
    num_classes: Optional[int] = None

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(6, (3, 3), name="stem")(x)
        pooled = jnp.mean(x, axis=(1, 2))
        if self.num_classes:
            head = nn.Dense(self.num_classes, name="head", kernel_init=nn.initializers.lecun_normal())
            per_pixel = head(x)
            pooled = head(pooled) + jnp.mean(per_pixel, axis=(1, 2))
        return pooled
'''


def test_the_head_is_built_under_the_branch_test_and_both_calls_use_it():
    fixed, messages = convert(HEADED)
    assert fixed is not None, messages
    assert ("        if num_classes:\n"
            "            self.head = nnx.Linear(6, num_classes, kernel_init=nnx.initializers.lecun_normal(), "
            "rngs=rngs)\n") in fixed
    assert "            per_pixel = self.head(x)\n" in fixed
    assert "            pooled = self.head(pooled) + jnp.mean(per_pixel, axis=(1, 2))\n" in fixed
    assert "head = " not in fixed.replace("self.head = ", "")
    fixed_again, _ = convert(fixed)
    assert fixed_again is None


@pytest.mark.parametrize("num_classes", [4, None])
def test_the_converted_model_computes_what_linen_does_with_and_without_the_head(num_classes):
    jax = pytest.importorskip("jax")
    fixed, messages = convert(HEADED)
    assert fixed is not None, messages
    difference = max_relative_difference(
        HEADED, fixed, lambda linen: linen["Headed"](num_classes=num_classes),
        lambda converted, nnx: converted["Headed"](3, num_classes=num_classes, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 8, 8, 3)), [({}, "eval")])
    assert difference < 1e-5


@pytest.mark.parametrize("branch, reason", [
    ("if pooled.sum() > 0:", "a branch whose test reads only fields"),
    ("for _ in range(2):", "inside a loop"),
])
def test_a_binding_under_a_test_of_call_values_or_in_a_loop_is_refused(branch, reason):
    source = HEADED.replace("if self.num_classes:", branch)
    fixed, messages = convert(source)
    assert fixed is None
    assert reason in messages["Headed"]
