"""Intermediates read back (constructs/sow.py, training_constructs/capture.py) and the
noise stream of ``apply(..., rngs={'noise': key})`` (training.py): the sow becomes NNX's,
``apply(..., mutable=['intermediates'])`` becomes ``nnx.capture(model, nnx.Intermediate)``,
the model's other calls ``nnx.capture(model)``; readers the conversion cannot follow are
refused naming their line."""

from __future__ import annotations

import warnings

import pytest

from conversion_helpers import convert

PROGRAM = '''\
import jax
import jax.numpy as jnp
import optax
import flax.linen as nn


class Tower(nn.Module):
    def setup(self):
        self.hidden = nn.Dense(5)
        self.out = nn.Dense(2)

    def __call__(self, x):
        h = nn.relu(self.hidden(x))
        self.sow('intermediates', 'h', h)
        return self.out(h)


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        y = Tower(name='tower')(x)
        return y + 0.1 * jax.random.normal(self.make_rng('noise'), y.shape)


def train(x):
    model = Net()
    params = model.init({'params': jax.random.key(0), 'noise': jax.random.key(1)}, x)['params']
    tx = optax.sgd(0.1)
    opt_state = tx.init(params)

    def loss_fn(params, key):
        return model.apply({'params': params}, x, rngs={'noise': key}).sum()

    grads = jax.grad(loss_fn)(params, jax.random.key(2))
    updates, opt_state = tx.update(grads, opt_state)
    params = optax.apply_updates(params, updates)
    y, state = model.apply({'params': params}, x, rngs={'noise': jax.random.key(3)}, mutable=['intermediates'])
    return y, READ
'''
READ = "state['intermediates']['tower']['h'][0]"


def _program(read: str = READ, reader: str = "mutable=['intermediates']") -> str:
    return PROGRAM.replace("mutable=['intermediates']", reader).replace("READ", read)


def test_the_reader_becomes_nnx_capture_and_the_noise_key_a_stream():
    fixed, messages = convert(_program())
    assert fixed is not None, messages
    assert "        self.sow(nnx.Intermediate, 'h', h)\n" in fixed
    assert "rngs=nnx.Rngs(params=0, noise=1)" in fixed
    assert "self.noise_rngs = rngs.noise.fork()" in fixed
    assert "y, state = nnx.capture(model, nnx.Intermediate)(x)\n" in fixed
    assert "return y, state['tower']['h'][0]\n" in fixed
    assert "return nnx.capture(model)(x).sum()" in fixed  # the step's call keeps nothing on the module
    assert "rngs={" not in fixed and "mutable" not in fixed and "'intermediates'" not in fixed
    compile(fixed, "models.py", "exec")


def test_a_string_mutable_is_the_same_reader():
    fixed, messages = convert(_program(reader="mutable='intermediates'"))
    assert fixed is not None, messages
    assert "y, state = nnx.capture(model, nnx.Intermediate)(x)\n" in fixed


def test_captured_values_equal_linen_intermediates_and_nothing_stays_on_the_module():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, _ = convert(_program())
    linen_namespace: dict = {}
    exec(_program(), linen_namespace)
    nnx_namespace: dict = {}
    exec(fixed, nnx_namespace)
    x = jax.random.normal(jax.random.key(5), (3, 4))
    linen_model = linen_namespace["Tower"]()
    variables = linen_model.init(jax.random.key(0), x)
    expected_y, state = linen_model.apply(variables, x, mutable=["intermediates"])
    model = nnx_namespace["Tower"](4, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)

    @nnx.jit
    def forward(model, x):
        return nnx.capture(model, nnx.Intermediate)(x)

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # NNX's warning for a sow outside capture
        for _ in range(3):
            y, captured = forward(model, x)
            plain = nnx.capture(model)(x)
    assert jnp.allclose(y, expected_y, atol=1e-6) and jnp.allclose(plain, expected_y, atol=1e-6)
    assert jnp.allclose(captured["h"][0], state["intermediates"]["h"][0], atol=1e-6)
    assert len(captured["h"].get_value()) == 1  # one call, one value: no tuple growing across calls
    assert not any(isinstance(value, nnx.Intermediate) for _, value in nnx.graph.iter_graph(model))


def test_the_converted_program_runs():
    pytest.importorskip("jax")
    import jax

    fixed, _ = convert(_program())
    namespace: dict = {}
    exec(fixed, namespace)
    y, h = namespace["train"](jax.random.normal(jax.random.key(5), (3, 4)))
    assert y.shape == (3, 2) and h.shape == (3, 5)


def _line(source: str, text: str) -> int:
    return source[:source.index(text)].count("\n") + 1


@pytest.mark.parametrize("read, why", [
    ("state['intermediates']['Tower_0']['h'][0]", "`Tower_0` read at line"),
    ("(lambda inter: inter['Tower_0']['h'][0])(state['intermediates'])", "`Tower_0` read at line"),
    ("state", "`state` at line"),
])
def test_a_reader_the_conversion_cannot_follow_is_refused_with_its_line(read, why):
    source = _program(read).replace("Tower(name='tower')", "Tower()")  # Linen names it Tower_0
    fixed, messages = convert(source)
    assert fixed is None
    line = _line(source, "return y, ")
    if read == "state":  # returned whole: the collection is read otherwise, the sow stays Linen
        assert f"this file:{_line(source, 'mutable=')} (`mutable=['intermediates']`) may read" in messages["Tower"]
    else:
        assert f"{why} {line}" in messages["Net"]


@pytest.mark.parametrize("reader, shown", [
    ("mutable=['intermediates', 'batch_stats']", "mutable=['intermediates', 'batch_stats']"),
    ("capture_intermediates=True", "capture_intermediates="),
])
def test_other_readers_keep_the_sow_refused_naming_the_site(reader, shown):
    source = _program(reader=reader)
    fixed, messages = convert(source)
    assert fixed is None
    assert f"this file:{_line(source, reader)} (`{shown}" in messages["Tower"]


def test_apply_with_a_params_stream_is_refused():
    source = _program().replace("rngs={'noise': key}", "rngs={'params': key}")
    fixed, messages = convert(source)
    assert fixed is None
    assert "`rngs=` of `apply` with a stream that is not a literal name, or 'params'" in messages["Net"]


def test_verify_draws_the_other_streams_alike_on_both_sides():
    jax = pytest.importorskip("jax")
    import flax.linen as nn
    from flax import nnx

    from nnxlint.verify.programs import _other_streams_controlled

    class Draw(nn.Module):
        @nn.compact
        def __call__(self):
            return self.make_rng("noise"), self.make_rng("params")

    def draws(seed):
        with _other_streams_controlled(seed):
            linen_noise, linen_params = Draw().apply({}, rngs={"noise": jax.random.key(1),
                                                               "params": jax.random.key(2)})
            rngs = nnx.Rngs(params=2, noise=5)
            return linen_noise, rngs.noise(), rngs.noise(), linen_params, rngs.params()

    same = jax.random.key_data
    linen_noise, nnx_noise, nnx_again, linen_params, nnx_params = draws(None)
    assert (same(linen_noise) == same(nnx_noise)).all() and (same(nnx_noise) == same(nnx_again)).all()
    assert not (same(linen_params) == same(nnx_params)).all()  # initialisers keep their own keys
    seeded = draws(3)
    assert not (same(seeded[0]) == same(seeded[1])).all()  # reseeded: drawn as each side draws, seed folded in
    assert not (same(seeded[1]) == same(seeded[2])).all()
