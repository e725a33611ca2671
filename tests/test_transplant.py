"""nnxlint.transplant: Linen variables into NNX models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from nnxlint.transplant import TransplantError, load_linen_variables


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x).mean(axis=(1, 2))
        x = nn.Dense(8)(x)
        return nn.Dense(2, name="head")(x)


class NNXCNN(nnx.Module):
    """LinenCNN as the conversion writes it: auto-names snake-cased, explicit names kept."""

    def __init__(self, *, rngs: nnx.Rngs, dense_width: int = 8):
        self.conv_0 = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.batch_norm_0 = nnx.BatchNorm(4, rngs=rngs)
        self.dense_0 = nnx.Linear(4, dense_width, rngs=rngs)
        self.head = nnx.Linear(dense_width, 2, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.batch_norm_0(self.conv_0(x))).mean(axis=(1, 2))
        return self.head(self.dense_0(x))


@pytest.fixture(scope="module")
def images():
    return jax.random.normal(jax.random.key(0), (5, 6, 6, 3))


@pytest.fixture(scope="module")
def linen_variables(images):
    variables = LinenCNN().init(jax.random.key(1), images, train=False)
    # non-trivial statistics, so that a dropped batch_stats collection shows
    _, updates = LinenCNN().apply(variables, images * 3 + 1, train=True, mutable=["batch_stats"])
    return {"params": variables["params"], "batch_stats": updates["batch_stats"]}


def test_loaded_model_computes_what_the_linen_model_computes(images, linen_variables):
    model = NNXCNN(rngs=nnx.Rngs(0))
    load_linen_variables(model, linen_variables)
    model.eval()
    expected = LinenCNN().apply(linen_variables, images, train=False)
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(expected))


def test_round_trip_every_value_lands_under_its_nnx_name(linen_variables):
    model = NNXCNN(rngs=nnx.Rngs(0))
    load_linen_variables(model, linen_variables)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    renamed = {"Conv_0": "conv_0", "BatchNorm_0": "batch_norm_0", "Dense_0": "dense_0", "head": "head"}
    back = {
        "params": {linen: params[nnx_name] for linen, nnx_name in renamed.items()},
        "batch_stats": {"BatchNorm_0": stats["batch_norm_0"]},
    }
    jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, linen_variables))


def test_shape_mismatch_is_a_clear_error(linen_variables):
    model = NNXCNN(rngs=nnx.Rngs(0), dense_width=9)
    with pytest.raises(TransplantError, match=r"shape mismatch for params Dense_0/kernel: Linen has \(4, 8\), "
                                              r"the NNX variable dense_0/kernel has \(4, 9\)"):
        load_linen_variables(model, linen_variables)


def test_unknown_key_names_what_the_model_has(linen_variables):
    params = dict(linen_variables["params"])
    params["Dense_7"] = params.pop("Dense_0")
    model = NNXCNN(rngs=nnx.Rngs(0))
    with pytest.raises(TransplantError, match="params entry Dense_7 has no counterpart.*batch_norm_0, conv_0, "
                                              "dense_0, head"):
        load_linen_variables(model, {**linen_variables, "params": params})


def test_variables_the_linen_tree_does_not_fill_are_an_error(linen_variables):
    params = {key: value for key, value in linen_variables["params"].items() if key != "head"}
    with pytest.raises(TransplantError, match="no Linen value in 'params': head/bias, head/kernel"):
        load_linen_variables(NNXCNN(rngs=nnx.Rngs(0)), {**linen_variables, "params": params})


def test_missing_collection_and_unknown_collection(linen_variables):
    with pytest.raises(TransplantError, match="BatchStat variables .* no 'batch_stats'"):
        load_linen_variables(NNXCNN(rngs=nnx.Rngs(0)), {"params": linen_variables["params"]})
    with pytest.raises(TransplantError, match=r"unknown Linen collection\(s\) \['BatchNorm_0', 'Conv_0'"):
        load_linen_variables(NNXCNN(rngs=nnx.Rngs(0)), linen_variables["params"])


def test_dtype_mismatch_is_an_error(linen_variables):
    params = jax.tree.map(lambda value: value.astype(jnp.bfloat16), linen_variables["params"])
    with pytest.raises(TransplantError, match="dtype mismatch for params"):
        load_linen_variables(NNXCNN(rngs=nnx.Rngs(0)), {**linen_variables, "params": params})


class LinenStack(nn.Module):
    def setup(self):
        self.layers = [nn.Dense(4) for _ in range(2)]
        self.cell = nn.LSTMCell(4)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        carry = self.cell.initialize_carry(jax.random.key(0), x.shape)
        return self.cell(carry, x)[1]


class NNXStack(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 4, rngs=rngs)])
        self.cell = nnx.LSTMCell(4, 4, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.cell(self.cell.initialize_carry(x.shape, rngs=nnx.Rngs(0)), x)[1]


def test_list_elements_and_the_lstm_if_gate():
    x = jax.random.normal(jax.random.key(2), (2, 3))
    variables = LinenStack().init(jax.random.key(3), x)
    assert "layers_0" in variables["params"] and "if" in variables["params"]["cell"]
    model = NNXStack(rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(LinenStack().apply(variables, x)))


class EmaStats(nnx.Variable):
    """The Linen collection 'ema_stats', as the conversion defines it."""


class NNXWithEma(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.dense_0 = nnx.Linear(3, 2, rngs=rngs)
        self.mean = EmaStats(jnp.zeros((2,)))


def test_a_collection_of_the_users_own_fills_the_variable_type_named_after_it():
    ema = jnp.array([0.5, -1.0])
    params = nn.Dense(2).init(jax.random.key(0), jnp.ones((1, 3)))["params"]
    model = NNXWithEma(rngs=nnx.Rngs(0))
    load_linen_variables(model, {"params": {"Dense_0": params}, "ema_stats": {"mean": ema}})
    np.testing.assert_array_equal(np.asarray(model.mean[...]), np.asarray(ema))
    with pytest.raises(TransplantError, match=r"unknown Linen collection\(s\) \['counter'\]"):
        load_linen_variables(model, {"params": {"Dense_0": params}, "ema_stats": {"mean": ema},
                                     "counter": {"n": jnp.zeros(())}})
