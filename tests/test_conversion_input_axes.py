"""Input sizes on axes other than the last as constructor parameters
(``nnxlint/conversion/constructs/input_axes.py``): a learned position embedding sized
from the sequence axis, a token-mixing MLP over swapped axes, patches cut by a strided
convolution with a class token in front."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

VIT = """
import flax.linen as nn
import jax.numpy as jnp


class PositionTable(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        assert tokens.ndim == 3
        table = self.param('table', nn.initializers.normal(stddev=0.5), (1, tokens.shape[1], tokens.shape[2]))
        return tokens + table


class Mlp(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x):
        y = nn.gelu(nn.Dense(self.hidden)(x))
        return nn.Dense(x.shape[-1])(y)


class MixBlock(nn.Module):
    token_hidden: int

    @nn.compact
    def __call__(self, x):
        y = jnp.swapaxes(nn.LayerNorm()(x), 1, 2)
        y = Mlp(self.token_hidden, name='token_mixing')(y)
        return x + jnp.swapaxes(y, 1, 2)


class PatchNet(nn.Module):
    width: int
    classes: int

    @nn.compact
    def __call__(self, images):
        x = nn.Conv(self.width, (4, 4), strides=(4, 4), padding='VALID', name='patches')(images)
        n, h, w, c = x.shape
        x = jnp.reshape(x, (n, h * w, c))
        cls = self.param('cls', nn.initializers.normal(stddev=1.0), (1, 1, c))
        x = jnp.concatenate([jnp.tile(cls, (n, 1, 1)), x], axis=1)
        x = PositionTable(name='pos')(x)
        x = MixBlock(8, name='mix')(x)
        return nn.Dense(self.classes, name='head')(nn.LayerNorm()(x)[:, 0])
"""


def test_axis_sizes_become_parameters_passed_down():
    fixed, messages = convert(VIT)
    assert fixed is not None, messages
    assert "def __init__(self, in_features: int, tokens_shape_1: int, *, rngs: nnx.Rngs):" in fixed
    assert "(rngs.params(), (1, tokens_shape_1, in_features))" in fixed
    # the block's rank comes from its builder: its axis 1 is a parameter, the token MLP's input size
    assert "def __init__(self, in_features: int, x_shape_1: int, token_hidden: int" in fixed
    assert "self.token_mixing = Mlp(x_shape_1, token_hidden, rngs=rngs)" in fixed
    # ``n, h, w, c = x.shape`` says the images have 4 axes; the sequence: a class token and the patches
    assert "def __init__(self, in_features: int, images_shape_1: int, images_shape_2: int, width: int" in fixed
    assert "PositionTable(width, 1 + (images_shape_1 // 4) * (images_shape_2 // 4), rngs=rngs)" in fixed
    assert "MixBlock(width, 1 + (images_shape_1 // 4) * (images_shape_2 // 4), 8, rngs=rngs)" in fixed


@pytest.mark.parametrize("side", [16, 13])  # 13: the VALID windows drop a row and a column
def test_transplanted_forward_is_exact(side):
    import jax

    fixed, messages = convert(VIT)
    assert fixed is not None, messages
    x = jax.random.normal(jax.random.key(1), (2, side, side, 3))
    difference = max_relative_difference(
        VIT, fixed, lambda ns: ns["PatchNet"](width=16, classes=3),
        lambda ns, nnx: ns["PatchNet"](x.shape[-1], x.shape[1], x.shape[2], width=16, classes=3, rngs=nnx.Rngs(0)),
        x, [({}, "eval")])
    assert difference <= 1e-5


def test_init_site_passes_the_example_input_axes():
    source = VIT + """

def main():
    import jax
    model = PatchNet(width=16, classes=3)
    images = jnp.ones((2, 16, 16, 3))
    variables = model.init(jax.random.key(0), images)
    return model.apply(variables, images)
"""
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "model = PatchNet(3, 16, 16, width=16, classes=3, rngs=nnx.Rngs(jax.random.key(0)))" in fixed


def test_init_site_reads_the_axes_of_an_input_it_is_given():
    source = VIT + """

def build(images):
    import jax
    model = PatchNet(width=16, classes=3)
    variables = model.init(jax.random.key(0), images)
    return model.apply(variables, images)
"""
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "PatchNet(images.shape[-1], images.shape[1], images.shape[2], width=16, classes=3" in fixed


def test_rearranged_tokens_say_the_rank_and_an_unknown_count_is_the_builders_to_pass():
    source = """
    import einops
    import flax.linen as nn

    from blocks import Mixer


    class Stem(nn.Module):
        patch: tuple

        @nn.compact
        def __call__(self, images):
            x = nn.Conv(16, self.patch, strides=self.patch)(images)
            x = einops.rearrange(x, 'n h w c -> n (h w) c')
            return Token()(x)


    class Token(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x + self.param('pos', nn.initializers.zeros, (1, x.shape[1], x.shape[2]))
    """
    fixed, messages = convert(source)
    assert fixed is not None, messages
    # a kernel given by a field: the patch count is not known, so it is the builder's to pass
    assert "def __init__(self, in_features: int, token_0_x_shape_1: int, patch: tuple" in fixed
    assert "self.token_0 = Token(16, token_0_x_shape_1, rngs=rngs)" in fixed


def test_unknown_rank_keeps_the_finding():
    source = """
    import flax.linen as nn


    class Table(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x + self.param('pos', nn.initializers.zeros, (1, x.shape[1], x.shape[-1]))
    """
    fixed, messages = convert(source)
    assert fixed is None
    assert "no fix" in messages["Table"] and "`x`" in messages["Table"]


def test_a_builder_giving_another_rank_is_refused():
    source = """
    import flax.linen as nn


    class Table(nn.Module):
        @nn.compact
        def __call__(self, x):
            assert x.ndim == 3
            return x + self.param('pos', nn.initializers.zeros, (1, x.shape[1], x.shape[2]))


    class Flat(nn.Module):
        @nn.compact
        def __call__(self, x):
            assert x.ndim == 2
            return Table()(x)
    """
    fixed, messages = convert(source)
    assert "`table_0` (Table) is given an input of 2 axes where it takes 3" in messages["Flat"]


def test_a_window_over_a_named_size_is_the_expression_numpy_computes():
    from nnxlint.conversion.shapes import Size, window_output

    for window, stride, padding in [(4, 4, "VALID"), (3, 1, "VALID"), (3, 1, "SAME"), (3, 2, "SAME"),
                                    (7, 2, "VALID"), (2, 4, "VALID"), (1, 3, "SAME")]:
        code = window_output(Size("s"), window, stride, padding).code
        for size in range(window, 40):
            assert eval(code, {"s": size}) == window_output(Size.number(size), window, stride, padding).value
    assert window_output(Size("s"), 4, 4, "VALID").code == "s // 4"
    assert window_output(Size("s"), 3, 1, "SAME").code == "s"


def test_a_shape_local_only_the_moved_parameter_read_goes_with_it():
    source = """
    import flax.linen as nn


    class Table(nn.Module):
        @nn.compact
        def __call__(self, x):
            assert x.ndim == 3
            # (batch, length, width)
            table_shape = (1, x.shape[1], x.shape[2])
            batch, length, width = x.shape
            return x + self.param('table', nn.initializers.zeros, table_shape)
    """
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "table_shape" not in fixed  # else an unused local in NNX
    assert "        # (batch, length, width)\n        batch, length, width = x.shape\n" in fixed  # unused in Linen too
