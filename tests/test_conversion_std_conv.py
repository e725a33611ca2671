"""A subclass of a Flax layer overriding ``param`` to transform one parameter
(``constructs/param_override.py``): the weight-standardised convolution of BiT.
It converts to an NNX subclass whose ``promote_dtype`` hook applies the same
transform; the parameters keep their names, so Linen's weights load and the
forward pass matches; other overrides are refused with the reason."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference

BIT_BLOCKS = '''
import jax.numpy as jnp
from flax import linen as nn


def standardized(w, axes, eps=1e-5):
    w = w - jnp.mean(w, axis=axes)
    return w / (jnp.std(w, axis=axes) + eps)


class WSConv(nn.Conv):
    """Convolution over a standardised kernel."""

    def param(self, name, *args, **kwargs):
        p = super().param(name, *args, **kwargs)
        if name == "kernel":
            p = standardized(p, axes=(0, 1, 2))
        return p


class Unit(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        y = WSConv(self.width, (3, 3), use_bias=False, name="conv_a")(x)
        y = nn.relu(nn.GroupNorm(num_groups=2)(y))
        return WSConv(x.shape[-1], (1, 1))(y) + x


class Stem(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = WSConv(4, (3, 3), strides=(2, 2), name="root")(x)
        return Unit(6)(x).mean(axis=(1, 2))
'''


def test_the_subclass_becomes_an_nnx_conv_with_a_promotion_hook_that_standardizes_the_kernel():
    fixed, messages = convert(BIT_BLOCKS)
    assert fixed is not None, messages
    assert ("def _ws_conv_promote_dtype(args, /, *, dtype=None, inexact=True):\n" in fixed)
    assert ("    inputs, p, bias = args\n"
            "    p = standardized(p, axes=(0, 1, 2))\n"
            "    return nnx.nn.dtypes.promote_dtype((inputs, p, bias), dtype=dtype, inexact=inexact)\n") in fixed
    assert ("class WSConv(nnx.Conv):\n"
            '    """Convolution over a standardised kernel."""\n\n'
            "    def __init__(self, *args, **kwargs):\n"
            "        super().__init__(*args, promote_dtype=_ws_conv_promote_dtype, **kwargs)\n") in fixed
    # constructions convert as nn.Conv's, under the subclass's name; unnamed ones numbered as Linen does
    assert "self.conv_a = WSConv(in_features, width, (3, 3), use_bias=False, rngs=rngs)" in fixed
    assert "self.ws_conv_0 = WSConv(width, in_features, (1, 1), rngs=rngs)" in fixed
    assert "linen" not in fixed
    fixed_again, _ = convert(fixed)
    assert fixed_again is None


def test_the_converted_model_computes_what_linen_does_from_the_same_weights():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(BIT_BLOCKS)
    assert fixed is not None, messages
    difference = max_relative_difference(
        BIT_BLOCKS, fixed, lambda linen: linen["Stem"](),
        lambda converted, nnx: converted["Stem"](3, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 8, 8, 3)), [({}, "eval")])
    assert difference < 1e-5


NAMED_INIT_OVERRIDE = '''    def param(self, pname: str, initializer, *shape_and_dtype):
        kernel = super().param(pname, initializer, *shape_and_dtype)
        if pname == "kernel":
            kernel = standardized(kernel, axes=(0, 1, 2))
        return kernel
'''


def test_an_override_naming_its_parameters_converts_when_it_passes_them_all_on_unchanged():
    # vision_transformer's StdConv: ``param(self, name, init_fn, *init_args)``
    start = BIT_BLOCKS.index("    def param(")
    source = BIT_BLOCKS[:start] + NAMED_INIT_OVERRIDE + BIT_BLOCKS[BIT_BLOCKS.index("\n\nclass Unit"):]
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert ("    inputs, kernel, bias = args\n"
            "    kernel = standardized(kernel, axes=(0, 1, 2))\n") in fixed
    jax = pytest.importorskip("jax")
    difference = max_relative_difference(
        source, fixed, lambda linen: linen["Stem"](),
        lambda converted, nnx: converted["Stem"](3, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(2), (2, 8, 8, 3)), [({}, "eval")])
    assert difference < 1e-5


@pytest.mark.parametrize("override, reason", [
    ('''    def param(self, name, init_fn, *args):
        p = super().param(name, *args)
        if name == "kernel":
            p = 2 * p
        return p
''', "only `p = super().param(name, ...)`"),
    ('''    def param(self, name, init_fn=None, *args):
        p = super().param(name, init_fn, *args)
        if name == "kernel":
            p = 2 * p
        return p
''', "without defaults"),
    ('''    def param(self, name, init_fn, *args):
        p = super().param(name, init_fn, *args)
        if name == "kernel":
            p = p * len(args)
        return p
''', "reads `self`, the override's parameters"),
    ('''    def param(self, name, *args):
        p = super().param(name, *args)
        if name == "kernel":
            p = p * self.features
        return p
''', "reads `self`"),
    ('''    def param(self, name, *args):
        p = super().param(name, *args)
        if name == "scale":
            p = 2 * p
        return p
''', "transforms `scale`, which `nn.Conv` does not have"),
    ('''    def param(self, name, *args):
        return 2 * super().param(name, *args)
''', "only `p = super().param(name, ...)`"),
    ('''    def variable(self, *args):
        return super().variable(*args)
''', "only a subclass whose one member is a `param` override"),
])
def test_other_overrides_are_refused_naming_the_subclass(override, reason):
    source = f'''
from flax import linen as nn


class Odd(nn.Conv):
{override}

class User(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Odd(3, (1, 1))(x)
'''
    fixed, messages = convert(source)
    assert fixed is None
    assert "`Odd" in messages["User"] and reason in messages["User"]


def test_a_mask_is_refused_because_nnx_applies_it_before_the_hook():
    source = BIT_BLOCKS.replace('name="root"', 'name="root", mask=jnp.ones((3, 3, 3, 4))')
    _, messages = convert(source)
    assert "`WSConv(mask=...)`" in messages["Stem"]


def test_each_nnx_layer_of_the_table_hands_its_arrays_to_the_hook_in_the_order_the_table_gives():
    pytest.importorskip("flax")
    import inspect
    import re

    from flax import nnx

    from nnxlint.conversion.linen_map import LAYERS, PROMOTED_ARRAYS

    for layer, arrays in PROMOTED_ARRAYS.items():
        source = inspect.getsource(getattr(nnx, LAYERS[layer].nnx).__call__)
        assert re.search(r"self\.promote_dtype\(\s*\(" + r",\s*".join(arrays) + r"\)", source), layer
        assert "promote_dtype" in inspect.signature(getattr(nnx, LAYERS[layer].nnx).__init__).parameters


PARTIAL_UNIT = BIT_BLOCKS.replace('''class Unit(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        y = WSConv(self.width, (3, 3), use_bias=False, name="conv_a")(x)
        y = nn.relu(nn.GroupNorm(num_groups=2)(y))
        return WSConv(x.shape[-1], (1, 1))(y) + x
''', '''class Unit(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(WSConv, use_bias=False)
        y = conv(self.width, (3, 3), name="conv_a")(x)
        y = nn.relu(nn.GroupNorm(num_groups=2)(y))
        return conv(x.shape[-1], (1, 1), padding="VALID", name="conv_b")(y) + x
''').replace("import jax.numpy", "import functools\nimport jax.numpy")


def test_a_partial_of_the_subclass_builds_the_nnx_subclass():
    # big_vision's BiT-paper units: ``conv = partial(StdConv, use_bias=False)``
    assert "functools.partial(WSConv" in PARTIAL_UNIT
    fixed, messages = convert(PARTIAL_UNIT)
    assert fixed is not None, messages
    assert "class WSConv(nnx.Conv):" in fixed
    assert "        conv = functools.partial(WSConv, use_bias=False)\n" in fixed
    assert "        self.conv_a = conv(in_features, width, (3, 3), rngs=rngs)\n" in fixed
    assert "        self.conv_b = conv(width, in_features, (1, 1), padding=\"VALID\", rngs=rngs)\n" in fixed
    jax = pytest.importorskip("jax")
    difference = max_relative_difference(
        PARTIAL_UNIT, fixed, lambda linen: linen["Stem"](),
        lambda converted, nnx: converted["Stem"](3, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(4), (2, 8, 8, 3)), [({}, "eval")])
    assert difference < 1e-5


def test_a_mask_fixed_by_the_partial_is_refused_too():
    source = PARTIAL_UNIT.replace("functools.partial(WSConv, use_bias=False)",
                                  "functools.partial(WSConv, use_bias=False, mask=jnp.ones((3, 3, 3, 6)))")
    _, messages = convert(source)
    assert "`WSConv(mask=...)`" in messages["Unit"], messages


def test_unnamed_layers_built_through_a_partial_of_the_subclass_take_linen_s_names():
    """Linen numbers them by the subclass (``StdConv_0``), so the transplant finds them."""
    jax = pytest.importorskip("jax")
    source = BIT_BLOCKS + '''

class Pair(nn.Module):
    @nn.compact
    def __call__(self, x):
        conv = partial(WSConv, use_bias=False)
        return conv(4, (1, 1))(conv(5, (3, 3))(x))
'''
    source = "from functools import partial\n" + source
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "self.ws_conv_1 = conv(in_features, 5, (3, 3), rngs=rngs)" in fixed  # the outer one is made first
    difference = max_relative_difference(
        source, fixed, lambda linen: linen["Pair"](), lambda converted, nnx: converted["Pair"](3, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 8, 8, 3)), [({}, "eval")])
    assert difference < 1e-5


OWN_DENSE = '''
import functools

import jax.numpy as jnp
from flax.linen import Module, compact


class Dense(Module):
    features: int

    @compact
    def __call__(self, x):
        kernel = self.param("kernel", lambda key, shape: jnp.ones(shape), (x.shape[-1], self.features))
        return x @ kernel


class Head(Module):
    @compact
    def __call__(self, x):
        project = functools.partial(Dense, features=4)
        return project(name="out")(x)
'''


def test_a_class_of_the_file_subclassing_module_is_no_layer_subclass():
    """``class Dense(Module)`` (``Module`` imported from flax.linen) is a module of its own, not a
    subclass of a Flax layer that would need a ``param`` override: the reason for its user
    names what the conversion lacks (a ``partial`` of a class of the file)."""
    _, messages = convert(OWN_DENSE)
    assert "subclasses `nn.Module`" not in messages["Head"]
    assert "`project(...)(...)`" in messages["Head"], messages["Head"]
