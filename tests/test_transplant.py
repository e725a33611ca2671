"""nnxlint.transplant: Linen variables into NNX models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
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


# --- the constructs of large models: GRU cells, layer stacks, partitioning, decode caches


class LinenGRU(nn.Module):
    @nn.compact
    def __call__(self, xs):
        return nn.Dense(1)(nn.RNN(nn.GRUCell(5))(xs)[:, -1])


class NNXGRU(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.gru_cell_0 = nnx.GRUCell(3, 5, rngs=rngs)
        self.dense_0 = nnx.Linear(5, 1, rngs=rngs)

    def __call__(self, xs):
        return self.dense_0(nnx.RNN(self.gru_cell_0)(xs)[:, -1])


def test_gru_gates_are_concatenated_in_the_order_nnx_splits_them():
    xs = jax.random.normal(jax.random.key(1), (4, 6, 3))
    variables = LinenGRU().init(jax.random.key(0), xs)
    model = NNXGRU(rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    gates = variables["params"]["GRUCell_0"]
    np.testing.assert_array_equal(np.asarray(model.gru_cell_0.dense_h.kernel[...][:, 5:10]),
                                  np.asarray(gates["hz"]["kernel"]))
    # one fused matmul against three: equal up to float32 rounding
    np.testing.assert_allclose(np.asarray(nnx.jit(lambda m: m(xs))(model)),
                               np.asarray(jax.jit(LinenGRU().apply)(variables, xs)), atol=1e-6)


def test_a_trained_gru_hn_bias_has_no_nnx_counterpart():
    xs = jax.random.normal(jax.random.key(1), (4, 6, 3))
    variables = LinenGRU().init(jax.random.key(0), xs)
    trained = jax.tree.map(lambda value: value, variables)
    trained["params"]["GRUCell_0"]["hn"]["bias"] = jnp.full((5,), 0.01)
    with pytest.raises(TransplantError, match="GRUCell GRUCell_0 has a nonzero hn/bias, which nnx.GRUCell has no "
                                              "parameter for"):
        load_linen_variables(NNXGRU(rngs=nnx.Rngs(0)), trained)


class LinenResidual(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, _):
        # Linen numbers layers in the order they are constructed: the outer Dense is Dense_0
        return x + nn.Dense(self.width)(nn.gelu(nn.Dense(2 * self.width)(nn.LayerNorm()(x)))), None


class LinenScanned(nn.Module):
    @nn.compact
    def __call__(self, x):
        blocks = nn.scan(nn.remat(LinenResidual), variable_axes={"params": 0}, split_rngs={"params": True},
                         length=3)
        x, _ = blocks(8)(nn.Dense(8)(x), None)
        return nn.Dense(1)(x)


class NNXResidual(nnx.Module):
    def __init__(self, width: int, *, rngs: nnx.Rngs):
        self.dense_0 = nnx.Linear(2 * width, width, rngs=rngs)
        self.dense_1 = nnx.Linear(width, 2 * width, rngs=rngs)
        self.layer_norm_0 = nnx.LayerNorm(width, rngs=rngs)

    def __call__(self, x):
        return x + self.dense_0(nnx.gelu(self.dense_1(self.layer_norm_0(x))))


class NNXScanned(nnx.Module):
    """LinenScanned as Flax's scan-over-layers guide writes it: nnx.vmap builds, nnx.scan (+ nnx.remat) applies."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.dense_0 = nnx.Linear(4, 8, rngs=rngs)

        @nnx.split_rngs(splits=3)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make_block(rngs):
            return NNXResidual(8, rngs=rngs)

        self.scan_checkpoint_linen_residual_0 = make_block(rngs)
        self.dense_1 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        @nnx.remat
        def forward(x, block):
            return block(x)

        return self.dense_1(forward(self.dense_0(x), self.scan_checkpoint_linen_residual_0))


def _train_both(linen_model, params, model, x, y, steps=3):
    tx = optax.adam(1e-2)
    opt_state, optimizer = tx.init(params), nnx.Optimizer(model, tx, wrt=nnx.Param)

    @jax.jit
    def linen_step(params, opt_state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((linen_model.apply({"params": p}, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    @nnx.jit
    def nnx_step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    linen_losses, nnx_losses = [], []
    for _ in range(steps):
        params, opt_state, loss = linen_step(params, opt_state)
        linen_losses.append(loss)
        nnx_losses.append(nnx_step(model, optimizer))
    return np.asarray(linen_losses), np.asarray(nnx_losses)


def test_a_scanned_rematerialised_stack_loads_with_its_layer_axis_and_trains_the_same():
    x = jax.random.normal(jax.random.key(1), (8, 4))
    variables = LinenScanned().init(jax.random.key(0), x)
    assert variables["params"]["ScanCheckpointLinenResidual_0"]["Dense_0"]["kernel"].shape == (3, 16, 8)
    model = NNXScanned(rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    linen_losses, nnx_losses = _train_both(LinenScanned(), variables["params"], model, x, x[:, :1] * 2)
    np.testing.assert_allclose(nnx_losses, linen_losses, rtol=1e-6)
    assert linen_losses[-1] < linen_losses[0]


class LinenLoop(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = LinenResidual(4)(x, None)[0]
        return x


class NNXLoop(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.linen_residuals = nnx.List([NNXResidual(4, rngs=rngs) for _ in range(3)])

    def __call__(self, x):
        for block in self.linen_residuals:
            x = block(x)
        return x


def test_modules_a_loop_creates_fill_the_list_named_after_their_class():
    x = jax.random.normal(jax.random.key(1), (2, 4))
    variables = LinenLoop().init(jax.random.key(0), x)
    assert sorted(variables["params"]) == ["LinenResidual_0", "LinenResidual_1", "LinenResidual_2"]
    model = NNXLoop(rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(LinenLoop().apply(variables, x)))


def _mlp_init(names):
    return nn.with_logical_partitioning(nn.initializers.lecun_normal(), names)


class LinenSharded(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, kernel_init=_mlp_init(("embed", "mlp")))(x)


class NNXSharded(nnx.Module):
    def __init__(self, names, *, rngs: nnx.Rngs):
        self.dense_0 = nnx.Linear(2, 3, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), names),
                                  rngs=rngs)


@pytest.fixture
def one_device_mesh():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    with jax.set_mesh(mesh), nn.logical_axis_rules((("embed", None), ("mlp", "data"))):
        yield mesh


def test_partitioned_values_are_unboxed_and_keep_their_axis_names(one_device_mesh):
    variables = LinenSharded().init(jax.random.key(0), jnp.ones((1, 2)))
    assert isinstance(variables["params"]["Dense_0"]["kernel"], nn.LogicallyPartitioned)
    model = NNXSharded(("embed", "mlp"), rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    np.testing.assert_array_equal(np.asarray(model.dense_0.kernel[...]),
                                  np.asarray(variables["params"]["Dense_0"]["kernel"].unbox()))
    assert nnx.get_partition_spec(nnx.state(model))["dense_0"]["kernel"].get_value() == (
        jax.sharding.PartitionSpec(None, "data"))
    with pytest.raises(TransplantError, match=r"partitioning mismatch for params Dense_0/kernel: Linen names its "
                                              r"axes \('embed', 'mlp'\), the NNX variable dense_0/kernel has "
                                              r"out_sharding \('mlp', 'embed'\)"):
        load_linen_variables(NNXSharded(("mlp", "embed"), rngs=nnx.Rngs(0)), variables)


class LinenDecoder(nn.Module):
    decode: bool = False

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(11, 8)
        x = embed(tokens)
        mask = None if self.decode else nn.make_causal_mask(tokens)
        x = x + nn.MultiHeadDotProductAttention(2, decode=self.decode)(x, mask=mask)
        return embed.attend(nn.LayerNorm()(x))


class NNXDecoder(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.embed_0 = nnx.Embed(11, 8, rngs=rngs)
        self.multi_head_dot_product_attention_0 = nnx.MultiHeadAttention(2, 8, decode=False, rngs=rngs)
        self.layer_norm_0 = nnx.LayerNorm(8, rngs=rngs)

    def __call__(self, tokens, decode=False):
        x = self.embed_0(tokens)
        mask = None if decode else nnx.make_causal_mask(tokens)
        x = x + self.multi_head_dot_product_attention_0(x, mask=mask, decode=decode)
        return self.embed_0.attend(self.layer_norm_0(x))


def test_a_decode_cache_loads_into_the_nnx_cache_and_decoding_continues_the_same():
    prompt, length = jnp.array([[1, 2, 3], [4, 5, 6]]), 6
    params = LinenDecoder().init(jax.random.key(0), jnp.ones((2, length), jnp.int32))["params"]
    cache = LinenDecoder(decode=True).init(jax.random.key(0), jnp.ones((2, length), jnp.int32))["cache"]
    for position in range(2):  # Linen decodes two tokens, then NNX takes over from its cache
        _, updates = LinenDecoder(decode=True).apply({"params": params, "cache": cache},
                                                     prompt[:, position:position + 1], mutable=["cache"])
        cache = updates["cache"]
    model = NNXDecoder(rngs=nnx.Rngs(0))
    with pytest.raises(TransplantError, match="no Cache variables yet"):
        load_linen_variables(model, {"params": params, "cache": cache})
    load_linen_variables(model, {"params": params})  # without a cache: a checkpoint
    model.multi_head_dot_product_attention_0.init_cache((2, length, 8))
    load_linen_variables(model, {"params": params, "cache": cache})
    assert int(model.multi_head_dot_product_attention_0.cache_index[...]) == 2
    expected, _ = LinenDecoder(decode=True).apply({"params": params, "cache": cache}, prompt[:, 2:3],
                                                  mutable=["cache"])
    np.testing.assert_allclose(np.asarray(model(prompt[:, 2:3], decode=True)), np.asarray(expected), atol=1e-6)
