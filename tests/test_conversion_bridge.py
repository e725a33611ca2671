"""A Linen layer with no NNX twin (``nn.ConvLocal``) kept Linen inside ``nnx.bridge.ToNNX``
(``constructs/linen_bridge.py``): built by the class itself, or handed in through a field
whose default is its twin (flax's imagenet ``ResNet18Local = partial(ResNet, conv=nn.ConvLocal)``).
The output imports, has no NNX1xx finding of nnxlint's own, and computes what Linen computes from
transplanted weights; where the bridge cannot be made right the class stays Linen, the layer named."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from conversion_helpers import convert
from nnxlint.conversion.linen_map import BRIDGED_LAYERS
from nnxlint.engine import check_source
from nnxlint.registry import all_rules

TOWER = '''\
from functools import partial
from typing import Any
import flax.linen as nn
import jax.numpy as jnp

ModuleDef = Any


class Stage(nn.Module):
    width: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x):
        y = nn.relu(self.norm()(self.conv(self.width, (3, 3))(x)))
        y = self.norm()(self.conv(self.width, (3, 3), padding="VALID")(y))
        return nn.relu(y)


class Tower(nn.Module):
    widths: tuple = (3, 5)
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x, train: bool = True):
        conv = partial(self.conv, use_bias=False)
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.8)
        x = conv(4, (2, 2), strides=2, name="stem")(x)
        for width in self.widths:
            x = Stage(width, conv=conv, norm=norm)(x)
        return nn.Dense(2)(jnp.mean(x, axis=(1, 2)))


TowerLocal = partial(Tower, widths=(3,), conv=nn.ConvLocal)
'''

DIRECT = '''\
import flax.linen as nn


class Patchwise(nn.Module):
    channels: int = 3

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.ConvLocal(self.channels, (3, 3), padding="VALID")(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.ConvLocal(self.channels * 2, (2, 2), strides=2, name="pool")(nn.relu(x))
        return nn.Dense(4)(x.reshape((x.shape[0], -1)))
'''


def _own_nnx1_findings(source: str) -> list[str]:
    rules = [rule for code, rule in all_rules().items() if code.startswith("NNX1")]
    return [f"{f.code} {f.message}" for f in check_source(source, "models.py", rules).findings]


def _outputs(linen_source, nnx_source, linen_build, nnx_build, x):
    """Linen outputs and the converted model's, from Linen's initial variables, eval then train."""
    jax = pytest.importorskip("jax")
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen, converted = {}, {}
    exec(linen_source, linen)
    exec(nnx_source, converted)
    model = linen_build(linen)
    variables = model.init(jax.random.key(0), x, train=False)
    built = nnx_build(converted, nnx)
    built.eval()  # the Linen layers in ToNNX make their variables on a first call
    nnx.bridge.lazy_init(built, x)
    load_linen_variables(built, variables)
    pairs = []
    for train in (False, True):
        expected, _ = model.apply(variables, x, train=train, mutable=["batch_stats"])
        built.train() if train else built.eval()
        pairs.append((expected, built(x)))
    return pairs


def _relative(pairs) -> float:
    import numpy as np
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(a))))
               for a, b in pairs)


def test_the_bridged_layers_share_their_twins_fields_and_call_and_have_no_nnx_layer():
    from flax import linen, nnx
    for layer, twin in BRIDGED_LAYERS.items():
        assert not hasattr(nnx, layer)
        fields = [f.name for f in dataclasses.fields(getattr(linen, layer))]
        assert fields == [f.name for f in dataclasses.fields(getattr(linen, twin))]
        assert inspect.signature(getattr(linen, layer).__call__) == inspect.signature(getattr(linen, twin).__call__)


def test_a_layer_handed_in_through_a_partial_becomes_a_generated_factory_over_the_bridge():
    fixed, messages = convert(TOWER)
    assert fixed is not None, messages
    assert ("def conv_local(in_features: int, out_features: int, *args, rngs: nnx.Rngs, **kwargs) -> "
            "nnx.bridge.ToNNX:\n") in fixed
    assert "    return nnx.bridge.ToNNX(nn.ConvLocal(out_features, *args, **kwargs), rngs=rngs)\n" in fixed
    assert "TowerLocal = partial(Tower, widths=(3,), conv=conv_local)\n" in fixed
    assert "\n\n\ndef conv_local(" in fixed and "rngs=rngs)\n\n\nTowerLocal = partial(" in fixed  # PEP 8's blank lines
    assert "conv: ModuleDef = nnx.Conv" in fixed  # the class itself is converted as without the partial
    assert "import flax.linen as nn\n" in fixed  # the factory still builds the Linen layer
    assert _own_nnx1_findings(fixed) == []
    fix = check_source(TOWER, "models.py", [all_rules()["NNX002"]]).findings[0].fix
    assert ("`nn.ConvLocal` has no NNX equivalent and stays a Linen layer inside `nnx.bridge.ToNNX`; "
            "`TowerLocal` passes the generated `conv_local`, which builds it: a model holding one must run once "
            "under `nnx.bridge.lazy_init(model, example_input)` before use") in fix.description


def test_the_bridged_tower_computes_what_linen_computes_from_transplanted_weights():
    jnp = pytest.importorskip("jax.numpy")
    fixed, _ = convert(TOWER)
    x = jnp.cos(jnp.arange(2 * 8 * 8 * 2, dtype=jnp.float32).reshape(2, 8, 8, 2))
    pairs = _outputs(TOWER, fixed, lambda ns: ns["TowerLocal"](),
                     lambda ns, nnx: ns["TowerLocal"](2, rngs=nnx.Rngs(0)), x)
    assert _relative(pairs) <= 1e-5
    # its convolutions, built through the field's factory, read 4 axes: the pooled size is the stage's width
    assert "self.dense_0 = nnx.Linear(x_features, 2, rngs=rngs)" in fixed


def test_a_layer_built_by_the_class_becomes_a_bridged_attribute_named_as_linen_names_it():
    fixed, messages = convert(DIRECT)
    assert fixed is not None, messages
    assert ("        self.conv_local_0 = nnx.bridge.ToNNX(nn.ConvLocal(channels, (3, 3), padding=\"VALID\"), "
            "rngs=rngs)\n") in fixed
    assert ("        self.pool = nnx.bridge.ToNNX(nn.ConvLocal(channels * 2, (2, 2), strides=2), "
            "rngs=rngs)\n") in fixed
    assert "        x = self.pool(nnx.relu(x))\n" in fixed
    # the flatten's size, read as the convolutions read the input (4 axes): 7 -> 5 (VALID) -> 3 (SAME, stride 2)
    assert "nnx.Linear(((x_shape_1 - 1) // 2) * ((x_shape_2 - 1) // 2) * (channels * 2), 4, rngs=rngs)" in fixed
    assert _own_nnx1_findings(fixed) == []
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.sin(jnp.arange(2 * 7 * 7 * 3, dtype=jnp.float32).reshape(2, 7, 7, 3))
    pairs = _outputs(DIRECT, fixed, lambda ns: ns["Patchwise"](),
                     lambda ns, nnx: ns["Patchwise"](7, 7, rngs=nnx.Rngs(0)), x)
    assert _relative(pairs) <= 1e-5


@pytest.mark.parametrize("source, reason", [
    # the field has no default: what the class calls it with is the parent's business, not nn.Conv's arguments
    (TOWER.replace("conv: ModuleDef = nn.Conv", "conv: ModuleDef = None"),
     "`TowerLocal = partial(..., conv=nn.ConvLocal)` passes a Linen module class: `nn.ConvLocal` has no NNX "
     "equivalent; it stays Linen through `nnx.bridge.ToNNX` only where the field `conv` defaults to `nn.Conv`"),
    # a layer of the table handed in: the NNX class would build the Linen layer
    (TOWER.replace("conv=nn.ConvLocal", "conv=nn.ConvTranspose"),
     "`TowerLocal = partial(..., conv=nn.ConvTranspose)` passes a Linen module class, which an NNX class cannot "
     "build"),
    # under a lifted transform the bridged variables would be made inside the transform
    ("import flax.linen as nn\n\n\nclass Local(nn.Module):\n    @nn.compact\n    def __call__(self, x):\n"
     "        return nn.ConvLocal(4, (3, 3))(x)\n\n\nclass Checkpointed(nn.Module):\n    @nn.compact\n"
     "    def __call__(self, x):\n        return nn.remat(Local)()(x)\n",
     "`nn.remat` of `Local`, which keeps `nn.ConvLocal` (no NNX equivalent) Linen through `nnx.bridge.ToNNX`"),
])
def test_where_the_bridge_cannot_be_made_right_the_class_stays_linen_naming_the_layer(source, reason):
    _, messages = convert(source)
    assert any(reason in message for message in messages.values()), messages


def test_linen_code_building_the_model_through_a_partial_keeps_the_class_linen():
    # ``model = TowerLocal()`` then ``model.init``: converting ``Tower`` would leave Linen calls on an
    # NNX model (any module-level partial, bridged or not)
    source = TOWER + ("\n\nimport jax\n\n\ndef predict(x):\n    model = TowerLocal()\n"
                      "    variables = model.init(jax.random.key(0), x, train=False)\n"
                      "    return model.apply(variables, x, train=False)\n")
    fixed, messages = convert(source)
    assert fixed is None
    assert "the code at line 41 uses it and is not converted" in messages["Tower"], messages
