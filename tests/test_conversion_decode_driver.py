"""Decoding through Linen's ``cache`` collection in the training file
(training_constructs/decode_cache.py): the decode model is built where Linen made its
cache, its attention layers get ``init_cache``, each step loads the trained weights and
calls the model; the ``cache`` dict threading disappears.  Forms the conversion does not
follow (the cache through a function, an apply not unpacked) are refused naming the line."""

from __future__ import annotations

import pytest

from conversion_helpers import convert

PROGRAM = '''\
import jax
import jax.numpy as jnp
import optax
import flax.linen as nn
from flax.training import train_state


class LM(nn.Module):
    decode: bool = False

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(7, 8)(tokens)
        mask = None if self.decode else nn.make_causal_mask(tokens)
        x = x + nn.MultiHeadDotProductAttention(2, decode=self.decode)(x, x, mask=mask)
        return nn.Dense(7)(x)


def train(steps):
    data = (jnp.arange(6)[None] + jnp.arange(3)[:, None]) % 7
    model = LM()
    params = model.init(jax.random.key(0), data)["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.5))

    @jax.jit
    def step(state):
        def loss_fn(params):
            logits = state.apply_fn({"params": params}, data[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, data[:, 1:]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(steps):
        state, loss = step(state)
        losses.append(loss)
    decoder = LM(decode=True)
    cache = decoder.init(jax.random.key(1), data)["cache"]
    tokens = [data[:, :1]]
    for _ in range(5):
        logits, updates = decoder.apply({"params": state.params, "cache": cache}, tokens[-1], mutable=["cache"])
        cache = updates["cache"]
        tokens.append(jnp.argmax(logits[:, -1], axis=-1)[:, None])
    return losses, jnp.concatenate(tokens, axis=1)
'''


def test_the_decode_loop_converts_and_decodes_the_same_tokens(tmp_path):
    pytest.importorskip("jax")
    import numpy as np

    from nnxlint.verify.programs import RunOptions, run_program

    fixed, reasons = convert(PROGRAM)
    assert fixed is not None, reasons
    assert "    decoder = LM(decode=True, rngs=nnx.Rngs(0))\n" \
           "    for _, layer in nnx.iter_modules(decoder):\n" in fixed
    assert "layer.init_cache((*data.shape, layer.in_features))" in fixed
    assert "        nnx.update(decoder, nnx.state(model, nnx.Param))\n" \
           "        logits = decoder(tokens[-1])\n" in fixed
    driver = fixed.split("def train")[1]
    assert '"cache"' not in driver and "updates" not in driver  # no dict threading left
    # the NNX program starts from the Linen init's weights, as `nnxlint verify` runs the fixtures
    linen_path, nnx_path = tmp_path / "linen_decoder.py", tmp_path / "nnx_decoder.py"
    linen_path.write_text(PROGRAM)
    nnx_path.write_text(fixed)
    recorded: list = []
    linen = run_program(linen_path, 3, RunOptions(record_linen_init=recorded))
    converted = run_program(nnx_path, 3, RunOptions(linen_variables=recorded[0]))
    np.testing.assert_allclose(converted.losses, linen.losses, rtol=1e-5)
    np.testing.assert_array_equal(converted.outputs, linen.outputs)  # the decoded tokens

def test_a_cache_passed_through_a_function_is_refused_naming_its_line():
    source = PROGRAM.replace(
        '        logits, updates = decoder.apply({"params": state.params, "cache": cache}, tokens[-1], '
        'mutable=["cache"])\n        cache = updates["cache"]\n',
        '        logits, cache = decode_step(decoder, state.params, cache, tokens[-1])\n')
    fixed, reasons = convert(source)
    assert fixed is None
    line = source.splitlines().index('        logits, cache = decode_step(decoder, state.params, cache, tokens[-1])') + 1
    assert f"line {line} uses `cache` other than in the decode step" in reasons["LM"]
    assert "beam search" in reasons["LM"]


def test_a_decode_step_not_unpacked_is_refused():
    source = PROGRAM.replace("logits, updates = decoder.apply(", "outputs = decoder.apply(").replace(
        'cache = updates["cache"]', 'logits, cache = outputs[0], outputs[1]["cache"]')
    fixed, reasons = convert(source)
    assert fixed is None
    assert "must be unpacked as `output, updates = model.apply(...)`" in reasons["LM"]


def test_the_cache_picked_from_the_init_variables_converts_the_same_way():
    source = PROGRAM.replace('    cache = decoder.init(jax.random.key(1), data)["cache"]\n',
                             '    initial = decoder.init(jax.random.key(1), data)\n    cache = initial["cache"]\n')
    fixed, reasons = convert(source)
    assert fixed is not None, reasons
    assert fixed == convert(PROGRAM)[0]
