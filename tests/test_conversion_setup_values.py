"""Plain values made in ``setup`` (``constructs/setup_values.py``): a weights file opened
when a pretrained name is given, a config chosen in an ``if``/``else``, attributes read
from it; all stay ``__init__`` code, in place, and later reads follow the attribute."""

from __future__ import annotations

import textwrap

import pytest

from conversion_helpers import convert, max_relative_difference

HEAD = '''
import types

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

STORE = {"tiny": "WEIGHTS_PATH"}


class Head(nn.Module):
    config: types.SimpleNamespace = None
    pretrained: str = None

    def setup(self):
        self.stored = None
        if self.pretrained is not None:
            assert self.pretrained in STORE, f"no weights named {self.pretrained}"
            path = STORE[self.pretrained]
            self.stored = np.load(path)
            self.config_ = types.SimpleNamespace(width=3, scale=2.0)
        else:
            self.config_ = self.config
        self.width = self.config_.width

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.width,
                     kernel_init=nn.initializers.lecun_normal() if self.stored is None
                     else lambda *_: jnp.array(self.stored["kernel"]))(x)
        return nn.Dense(2)(nn.relu(x)) * self.config_.scale
'''

EXPECTED_INIT = '''\
        self.stored = None
        if pretrained is not None:
            assert pretrained in STORE, f"no weights named {pretrained}"
            path = STORE[pretrained]
            self.stored = np.load(path)
            self.config_ = types.SimpleNamespace(width=3, scale=2.0)
        else:
            self.config_ = config
        self.width = self.config_.width
        self.dense_0 = nnx.Linear(in_features, self.width,'''


def test_the_if_of_plain_values_stays_whole_and_reads_follow_the_attribute():
    fixed, messages = convert(HEAD)
    assert fixed is not None, messages
    assert EXPECTED_INIT in fixed
    assert "return self.dense_1(nnx.relu(x)) * self.config_.scale" in fixed


def test_random_weights_forward_equal_from_transplanted_weights():
    jax = pytest.importorskip("jax")
    fixed, messages = convert(HEAD)
    assert fixed is not None, messages
    difference = max_relative_difference(
        HEAD, fixed,
        lambda linen: linen["Head"](config=linen["types"].SimpleNamespace(width=4, scale=0.5)),
        lambda converted, nnx: converted["Head"](5, config=converted["types"].SimpleNamespace(width=4, scale=0.5),
                                                 rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 5)), [({}, "eval")])
    assert difference == 0.0


def test_pretrained_weights_load_from_the_file_and_the_handle_is_static(tmp_path):
    """The file is opened in ``__init__``: its kernel is the layer's, the handle (not an
    array, not a Variable) stays out of the state and passes ``nnx.jit``."""
    jax = pytest.importorskip("jax")
    import numpy as np
    from flax import nnx

    kernel = np.arange(15, dtype=np.float32).reshape(5, 3) / 10
    np.savez(tmp_path / "tiny.npz", kernel=kernel)
    source = HEAD.replace("WEIGHTS_PATH", str(tmp_path / "tiny.npz"))
    fixed, messages = convert(source)
    assert fixed is not None, messages
    linen, converted = {}, {}
    exec(textwrap.dedent(source), linen)
    exec(fixed, converted)
    x = jax.random.normal(jax.random.key(1), (2, 5))
    linen_model = linen["Head"](pretrained="tiny")
    variables = linen_model.init(jax.random.key(0), x)
    model = converted["Head"](5, pretrained="tiny", rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(model.dense_0.kernel[...], kernel)
    np.testing.assert_array_equal(variables["params"]["Dense_0"]["kernel"], kernel)
    assert "stored" not in nnx.state(model)
    got = nnx.jit(lambda m, x: m(x))(model, x)
    assert got.shape == linen_model.apply(variables, x).shape


@pytest.mark.parametrize("setup, reason", [
    ("""
        path = STORE["tiny"]
        if path.endswith(".npz"):
            self.stored = np.load(path)
        self.width = 3
     """, "an `if` in `setup` (line 17) whose test reads other than fields is not converted"),
    ("""
        pretrained = "tiny"
        self.width = 3
     """, "`setup` binds `pretrained`, which would rebind the NNX constructor's parameter `pretrained`"),
    ("""
        self.tables = [np.zeros(3)]
        self.width = 3
     """, "`self.tables` is set in `setup` to a container of computed values"),
    ("""
        if self.pretrained is not None:
            for name in STORE:
                print(name)
        self.width = 3
     """, "`setup` line 17: only assignments, `assert`s and `if`s on fields are converted"),
])
def test_what_is_not_converted_is_named(setup, reason):
    start = HEAD.index("    def setup(self):\n") + len("    def setup(self):\n")
    end = HEAD.index("    @nn.compact")
    source = HEAD[:start] + textwrap.indent(textwrap.dedent(setup).strip("\n"), " " * 8) + "\n\n" + HEAD[end:]
    source = source.replace("self.config_.scale", "2.0")
    fixed, messages = convert(source)
    assert fixed is None
    assert reason in messages["Head"], messages
