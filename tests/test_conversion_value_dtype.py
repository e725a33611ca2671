"""A parameter created in the dtype of a value of ``__call__`` (``x.dtype``), as
text and vision transformers create their position embeddings and class tokens
(``constructs/value_dtype.py``): written as the dtype the value is known to
have, or refused where it follows the input."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

TOKEN_CLASSIFIER = '''
import jax.numpy as jnp
from flax import linen as nn


class TokenClassifier(nn.Module):
    classes: int
    width: int = 8
    vocabulary: int = 30

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(num_embeddings=self.vocabulary, features=self.width)(tokens)
        batch, length, depth = x.shape
        x = x + self.param("positions", nn.initializers.normal(stddev=depth ** -0.5), (1, length, depth), x.dtype)
        return nn.Dense(self.classes, name="head")(x[:, -1])
'''


def test_the_dtype_of_an_embedding_is_its_table_s():
    fixed, messages = convert(TOKEN_CLASSIFIER)
    assert fixed is not None, messages
    assert ("self.positions = nnx.Param(nnx.initializers.normal(stddev=width ** -0.5)"
            "(rngs.params(), (1, in_features, width), jnp.float32))") in fixed
    assert convert(fixed)[0] is None


def test_the_converted_classifier_computes_what_linen_does_from_the_same_weights():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(TOKEN_CLASSIFIER)
    assert fixed is not None, messages
    tokens = jax.random.randint(jax.random.key(1), (3, 5), 0, 30)
    difference = max_relative_difference(
        TOKEN_CLASSIFIER, fixed, lambda linen: linen["TokenClassifier"](4),
        lambda converted, nnx: converted["TokenClassifier"](5, 4, rngs=nnx.Rngs(0)), tokens, [({}, "eval")])
    assert difference < 1e-6


@pytest.mark.parametrize("embed, dtype", [
    ("nn.Embed(self.vocabulary, self.width, param_dtype=jnp.bfloat16)", "jnp.bfloat16"),
    ("nn.Embed(self.vocabulary, self.width, dtype=jnp.float16)", "jnp.float16"),
])
def test_an_embedding_s_dtype_or_param_dtype_is_its_output_s(embed, dtype):
    source = TOKEN_CLASSIFIER.replace("nn.Embed(num_embeddings=self.vocabulary, features=self.width)", embed)
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert f"(1, in_features, width), {dtype}))" in fixed


PATCH_MODEL = '''
import jax.numpy as jnp
from flax import linen as nn


class Patches(nn.Module):
    width: int = 6
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, image):
        x = nn.Conv(self.width, (2, 2), strides=(2, 2), dtype=self.compute_dtype, name="stem")(image)
        n, h, w, c = x.shape
        x = jnp.reshape(x, (n, h * w, c))
        token = self.param("token", nn.initializers.normal(1.0), (1, 1, c), x.dtype)
        x = jnp.concatenate([jnp.tile(token, (n, 1, 1)), x], axis=1)
        return x.mean(axis=1)
'''


def test_a_layer_given_a_dtype_returns_that_dtype_through_a_reshape():
    fixed, messages = convert(PATCH_MODEL)
    assert fixed is not None, messages
    assert "(rngs.params(), (1, 1, width), compute_dtype))" in fixed


def test_the_converted_patch_model_computes_what_linen_does_from_the_same_weights():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(PATCH_MODEL)
    assert fixed is not None, messages
    difference = max_relative_difference(
        PATCH_MODEL, fixed, lambda linen: linen["Patches"](),
        lambda converted, nnx: converted["Patches"](3, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 4, 4, 3)), [({}, "eval")])
    assert difference < 1e-6


def test_a_cast_gives_its_dtype():
    source = PATCH_MODEL.replace("x = jnp.reshape(x, (n, h * w, c))", "x = jnp.reshape(x, (n, h * w, c)).astype(jnp.bfloat16)")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "(rngs.params(), (1, 1, width), jnp.bfloat16))" in fixed


@pytest.mark.parametrize("change", [
    # the output of a layer without ``dtype=`` has its input's dtype
    ('dtype=self.compute_dtype, name="stem"', 'name="stem"'),
    # a value computed again with something of unknown dtype
    ("x = jnp.reshape(x, (n, h * w, c))", "x = jnp.reshape(x, (n, h * w, c)) * image.mean()"),
    # ``x`` bound again by an augmented assignment
    ("x = jnp.reshape(x, (n, h * w, c))", "x = jnp.reshape(x, (n, h * w, c))\n        x += image.mean()"),
])
def test_a_dtype_that_follows_the_input_is_refused(change):
    fixed, messages = convert(PATCH_MODEL.replace(*change))
    assert fixed is None
    assert "a layer argument depends on `x`, a value computed in `__call__`" in messages["Patches"]


def test_float32_is_spelled_by_numpy_in_a_file_without_jax_numpy():
    # big_vision's text transformer imports NumPy, not jax.numpy
    source = TOKEN_CLASSIFIER.replace("import jax.numpy as jnp\n", "import numpy as np\n")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "(rngs.params(), (1, in_features, width), np.float32))" in fixed
