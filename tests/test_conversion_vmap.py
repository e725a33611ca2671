"""``nn.vmap`` ensembles and shared modules, ``nn.jit`` (constructs/vmap.py): the converted
text, forward equality from transplanted weights, and the refusals naming the line."""

from __future__ import annotations

import pytest
from conversion_helpers import convert, max_relative_difference

ENSEMBLE = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class Head(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.tanh(nn.Dense(self.width)(x)))


class Net(nn.Module):
    members: int = 3

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8)(x)
        Heads = nn.vmap(Head, variable_axes={"params": 0}, split_rngs={"params": True},
                        in_axes=None, out_axes=0, axis_size=self.members)
        y = Heads(4)(x)
        z = nn.jit(Head)(5)(x)
        w = nn.vmap(Head, variable_axes={"params": None}, split_rngs={"params": False}, in_axes=0)(6)(x)
        return y.mean(0) + z + w


def train(steps):
    model = Net()
    params = model.init(jax.random.key(0), jnp.ones((1, 6)))["params"]
    return model.apply({"params": params}, jnp.ones((2, 6)))
'''


def _forward_difference(linen_source, fixed, x, modes=(({}, "eval"),), in_features=6):
    return max_relative_difference(linen_source, fixed, lambda ns: ns["Net"](),
                                   lambda ns, nnx: ns["Net"](in_features, rngs=nnx.Rngs(1)), x, list(modes))


def test_an_ensemble_a_shared_vmap_and_a_jit_convert_and_run_as_linen_from_transplanted_weights():
    fixed, messages = convert(ENSEMBLE)
    assert fixed is not None, messages
    assert "        @nnx.split_rngs(splits=members)\n" \
           "        @nnx.vmap(in_axes=(0,), out_axes=0)\n" \
           "        def vmap_head_0(rngs: nnx.Rngs):\n" \
           "            return Head(8, 4, rngs=rngs)\n" \
           "        self.vmap_head_0 = vmap_head_0(rngs)\n" \
           "        self.jit_head_0 = Head(8, 5, rngs=rngs)\n" \
           "        self.vmap_head_1 = Head(8, 6, rngs=rngs)\n" in fixed
    assert "        y = nnx.vmap(Head.__call__, in_axes=(0, None), out_axes=0)(self.vmap_head_0, x)\n" \
           "        z = self.jit_head_0(x)\n" \
           "        w = nnx.vmap(Head.__call__, in_axes=(None, 0), out_axes=0)(self.vmap_head_1, x)\n" in fixed
    assert "Heads" not in fixed and "nn.vmap" not in fixed and "nn.jit" not in fixed
    jax = pytest.importorskip("jax")
    x = jax.random.normal(jax.random.key(3), (4, 6))
    assert _forward_difference(ENSEMBLE, fixed, x) < 1e-6  # VmapHead_0's leading axis loads as it is


def test_an_ensemble_mapping_its_inputs_and_a_shared_module_over_two_arguments():
    # copy i of the ensemble gets example i; the shared module maps x and broadcasts the scale
    source = ENSEMBLE.replace('in_axes=None, out_axes=0, axis_size=self.members)',
                              'in_axes=0, out_axes=1, axis_size=self.members)') \
        .replace("y = Heads(4)(x)", "y = Heads(4)(x).T") \
        .replace('split_rngs={"params": False}, in_axes=0)(6)(x)',
                 'split_rngs={"params": False}, in_axes=(0, None))(6)(x, 0.5)') \
        .replace("    def __call__(self, x):\n        return nn.Dense(2)",
                 "    def __call__(self, x, scale=1.0):\n        return scale * nn.Dense(2)")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    # nnx.vmap passes the omitted default (``scale``) positionally: it needs an axis, None
    assert "nnx.vmap(Head.__call__, in_axes=(0, 0, None), out_axes=1)(self.vmap_head_0, x).T" in fixed
    assert "nnx.vmap(Head.__call__, in_axes=(None, 0, None), out_axes=0)(self.vmap_head_1, x, 0.5)" in fixed
    jax = pytest.importorskip("jax")
    x = jax.random.normal(jax.random.key(4), (3, 6))
    assert _forward_difference(source, fixed, x) < 1e-6


DROPOUT = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class Head(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        return nn.Dense(3)(nn.Dropout(0.5, deterministic=not train)(x))


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.vmap(Head, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                       in_axes=(None, None), axis_size=4)()(x, train)
'''


def test_dropout_in_an_ensemble_draws_per_copy_masks_and_its_flag_becomes_the_mode():
    fixed, messages = convert(DROPOUT)
    assert fixed is not None, messages
    assert "return nnx.vmap(Head.__call__, in_axes=(0, None), out_axes=0)(self.vmap_head_0, x)" in fixed
    jax = pytest.importorskip("jax")
    x = jax.random.normal(jax.random.key(5), (2, 6))
    assert _forward_difference(DROPOUT, fixed, x, modes=(({"train": False}, "eval"),)) < 1e-6
    from flax import nnx

    namespace: dict = {}
    exec(fixed, namespace)  # noqa: S102 (the converted test text)
    model = namespace["Net"](6, rngs=nnx.Rngs(0))
    model.train()
    out = model(jax.numpy.ones((2, 6)))
    assert out.shape == (4, 2, 3)
    assert not jax.numpy.allclose(out[0], out[1])  # each copy its own dropout key, as Linen's split


def test_dropout_in_an_ensemble_matches_linen_in_train_mode_where_both_draw_the_same_masks(monkeypatch):
    # the keys differ (Linen folds by module path, NNX counts): one key sequence for both sides
    jax = pytest.importorskip("jax")
    bernoulli, drawn = jax.random.bernoulli, []

    def same_masks(key, p=0.5, shape=None, **kwargs):
        drawn.append(shape)
        return bernoulli(jax.random.key(7), p, shape, **kwargs)

    monkeypatch.setattr(jax.random, "bernoulli", same_masks)
    fixed, messages = convert(DROPOUT)
    assert fixed is not None, messages
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen, converted = {}, {}
    exec(DROPOUT, linen)  # noqa: S102 (the test program)
    exec(fixed, converted)  # noqa: S102 (its conversion)
    x = jax.random.normal(jax.random.key(5), (2, 6))
    variables = linen["Net"]().init(jax.random.key(0), x)
    expected = linen["Net"]().apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    model = converted["Net"](6, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    model.train()
    assert jax.numpy.allclose(model(x), expected, rtol=1e-6, atol=1e-6)
    assert len(drawn) == 2  # one draw per side, through the patched function


@pytest.mark.parametrize("old, new, reason", [
    ('variable_axes={"params": 0}', 'variable_axes={"param": 0}', "`variable_axes` does not map `params`"),
    ('variable_axes={"params": 0}', 'variable_axes={"params": 1}', "neither {'params': 0}"),
    ('variable_axes={"params": 0}, split_rngs={"params": True}', 'variable_axes={"params": 0}, split_rngs={}',
     "ensemble whose `split_rngs` is not"),
    ("in_axes=None, out_axes=0, axis_size=self.members)", "in_axes=0)", "ensemble without `axis_size=`"),
    ("out_axes=0, axis_size", "out_axes=0, spmd_axis_name='x', axis_size", "`nn.vmap` with `spmd_axis_name=`"),
    ("out_axes=0, axis_size", "out_axes=(0, None), axis_size", "`nn.vmap` with `out_axes` other than ints"),
    ('split_rngs={"params": False}, in_axes=0)', 'split_rngs={"params": False, "dropout": True}, in_axes=0)',
     "shared parameters whose `split_rngs` is not {'params': False}"),
    ('split_rngs={"params": False}, in_axes=0)', 'split_rngs={"params": False}, in_axes=None)',
     "maps no input"),
    ("nn.jit(Head)(5)(x)", "nn.jit(Head, static_argnums=(1,))(5)(x)", "`nn.jit` with `static_argnums=`"),
    ("nn.jit(Head)(5)(x)", "nn.jit(nn.Dense)(5)(x)", "`nn.jit` of something other than a Linen class"),
    ("y = Heads(4)(x)", "y = Heads(4)(x=x)", "keyword or starred arguments"),
])
def test_vmaps_and_jits_without_an_exact_nnx_form_get_no_fix_naming_the_line(old, new, reason):
    assert old in ENSEMBLE
    source = ENSEMBLE.replace(old, new)
    fixed, messages = convert(source)
    assert fixed is None or "class Net(nn.Module):" in fixed  # Net stays Linen
    net = messages.get("Net", "")
    assert reason in net, messages
    line = next(number for number, text in enumerate(source.splitlines(), 1) if new.splitlines()[0] in text)
    assert f"(line {line}))" in net or f"(line {line - 1}))" in net, net  # (a bound nn.vmap spans two lines)


BATCH_NORM = '''\
import flax.linen as nn


class Head(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        return nn.Dense(3)(nn.BatchNorm(use_running_average=not train)(x))


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.vmap(Head, variable_axes={"params": 0, "batch_stats": 0}, split_rngs={"params": True},
                       in_axes=(None, None), axis_size=2)()(x, train)
'''


def test_an_ensemble_of_batch_norms_keeps_per_copy_statistics_in_train_and_eval():
    fixed, messages = convert(BATCH_NORM)
    assert fixed is not None, messages
    jax = pytest.importorskip("jax")
    x = jax.random.normal(jax.random.key(6), (4, 6))
    # eval first: the helper applies Linen to the initial statistics each time
    assert _forward_difference(BATCH_NORM, fixed, x, modes=(({"train": False}, "eval"),
                                                            ({"train": True}, "train"))) < 1e-6
