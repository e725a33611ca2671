"""A class whose own field is named ``in_features`` (StyleGAN's ``LinearLayer`` sizes its
weight from one) still converts: its input size parameter takes the next name,
``x_in_features``, and ``nnxlint verify`` finds it there."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

SOURCE = '''
from flax import linen as nn


class Scaled(nn.Module):
    in_features: int
    out_features: int

    @nn.compact
    def __call__(self, x):
        y = nn.Dense(self.out_features)(x)
        w = self.param("w", nn.initializers.ones, (self.in_features,))
        return y * w.sum()
'''


def test_the_input_size_takes_the_name_the_field_leaves_free():
    fixed, messages = convert(SOURCE)
    assert fixed is not None, messages
    assert "def __init__(self, x_in_features: int, in_features: int, out_features: int, *, rngs: nnx.Rngs):" \
        in fixed
    assert "nnx.Linear(x_in_features, out_features, rngs=rngs)" in fixed
    assert "(in_features,)" in fixed


def test_a_class_sized_by_its_own_field_takes_no_input_size():
    source = SOURCE.replace("y = nn.Dense(self.out_features)(x)", "y = x[..., :self.out_features]")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):" in fixed


def test_the_converted_class_matches_linen():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(SOURCE)
    assert fixed is not None, messages
    difference = max_relative_difference(
        SOURCE, fixed, lambda linen: linen["Scaled"](in_features=3, out_features=2),
        lambda converted, nnx: converted["Scaled"](5, in_features=3, out_features=2, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (4, 5)), [({}, "eval")])
    assert difference < 1e-6


def _built(source: str):
    import jax.numpy as jnp

    from nnxlint.verify.sites import ModelSpec
    from nnxlint.verify.user_code import build_nnx_model

    fixed, messages = convert(source)
    assert fixed is not None, messages
    namespace: dict = {}
    exec(compile(fixed, "<converted>", "exec"), namespace)
    spec = ModelSpec(relative="model.py", class_name="Scaled", constructor="Scaled(in_features=3, out_features=2)",
                     origin="the test")
    return build_nnx_model(namespace["Scaled"], [], {"in_features": 3, "out_features": 2}, [jnp.ones((4, 5))], spec)


def test_verify_passes_the_input_size_to_the_renamed_parameter():
    pytest.importorskip("flax")
    model = _built(SOURCE)
    assert model.dense_0.kernel.shape == (5, 2)
    assert model.w.shape == (3,)


def test_verify_passes_no_input_size_to_a_field_of_that_name():
    pytest.importorskip("flax")
    model = _built(SOURCE.replace("y = nn.Dense(self.out_features)(x)", "y = x[..., :self.out_features]"))
    assert model.w.shape == (3,)
