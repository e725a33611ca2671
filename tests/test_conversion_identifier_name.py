"""An explicit ``name=`` that is no Python identifier (BiT's ``name='norm-pre-head'``)
becomes the attribute ``norm_pre_head`` (``naming.identifier_name``); the transplant
maps Linen's entry onto it, so the converted model computes what Linen does."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference
from nnxlint.conversion.naming import identifier_name

DASHED = '''
from flax import linen as nn


class Head(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.LayerNorm(name="norm-pre-head")(x)
        x = nn.Dense(4, name="2nd stage")(x)
        return nn.Dense(3, name="class")(x)
'''


@pytest.mark.parametrize("linen, attribute", [
    ("norm-pre-head", "norm_pre_head"), ("2nd stage", "_2nd_stage"), ("class", "class"), ("x.y", "x_y"),
])
def test_each_character_an_identifier_cannot_hold_becomes_an_underscore(linen, attribute):
    assert identifier_name(linen) == (attribute if attribute != "class" else "class_")


def test_the_layers_get_identifier_attributes_and_linen_weights_load_onto_them():
    fixed, messages = convert(DASHED)
    assert fixed is not None, messages
    assert "self.norm_pre_head = nnx.LayerNorm(in_features, rngs=rngs)" in fixed
    assert "self._2nd_stage = nnx.Linear(in_features, 4, rngs=rngs)" in fixed
    assert "self.class_ = nnx.Linear(4, 3, rngs=rngs)" in fixed
    jax = pytest.importorskip("jax")
    difference = max_relative_difference(
        DASHED, fixed, lambda linen: linen["Head"](), lambda converted, nnx: converted["Head"](5, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
    assert difference < 1e-5


def test_two_names_that_become_one_attribute_are_refused():
    source = DASHED.replace('name="2nd stage"', 'name="norm_pre_head"')
    fixed, messages = convert(source)
    assert fixed is None
    assert "norm_pre_head" in messages["Head"]
