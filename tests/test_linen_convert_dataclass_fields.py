"""``field(...)`` fields of Linen modules (``constructs/dataclass_field.py``), as
flax's model zoos write a per-instance key or list default:
``rng: Any = field(default_factory=lambda: random.PRNGKey(0))``."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

NOISY = '''\
from dataclasses import field
from typing import Any, Sequence

import flax.linen as nn
from flax import struct
from jax import random


class Noisy(nn.Module):
    widths: Sequence[int] = field(default_factory=lambda: [5, 4])
    rng: Any = field(default_factory=lambda: random.PRNGKey(7))
    scale: float = struct.field(default=0.5, pytree_node=False)
    act: Any = field(default=None, repr=False, compare=False)

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.widths[1])(nn.Dense(self.widths[0])(x))
        return x + self.scale * random.normal(self.rng, x.shape)


class Head(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(Noisy()(x))
'''


def test_field_defaults_become_parameter_defaults_and_factories_run_per_instance():
    fixed, messages = convert(NOISY)
    assert fixed is not None, messages
    assert "def __init__(self, in_features: int, widths: Sequence[int] = None, rng: Any = None, " \
           "scale: float = 0.5, act: Any = None, *, rngs: nnx.Rngs):" in fixed
    assert "        if widths is None:\n            widths = [5, 4]\n" in fixed
    assert "        if rng is None:\n            rng = random.PRNGKey(7)\n" in fixed
    # the parent sizes its head from the factory's value: Noisy's last width
    assert "nnx.Linear([5, 4][1], 2, rngs=rngs)" in fixed
    assert "dataclasses" not in fixed and "field(" not in fixed


def test_a_class_with_field_factories_computes_what_linen_computes():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(NOISY)
    assert fixed is not None, messages
    x = jax.random.normal(jax.random.key(1), (3, 6))
    difference = max_relative_difference(
        NOISY, fixed, lambda linen: linen["Head"](), lambda converted, nnx: converted["Head"](6, rngs=nnx.Rngs(0)),
        x, [({}, "eval")])
    assert difference == 0.0


@pytest.mark.parametrize("field_call, reason", [
    ("field(init=False, default=3)", "`field(init=...)` is not converted"),
    ("field(default_factory=lambda n: n)", "a `default_factory` lambda that takes arguments"),
    ("field(3)", "`field(...)` with positional or starred arguments"),
])
def test_fields_the_conversion_cannot_keep_exact_get_no_fix(field_call, reason):
    fixed, messages = convert(f'''\
        from dataclasses import field
        import flax.linen as nn

        class Block(nn.Module):
            size: int = {field_call}

            @nn.compact
            def __call__(self, x):
                return nn.Dense(4)(x)
        ''')
    assert fixed is None
    assert reason in messages["Block"]
