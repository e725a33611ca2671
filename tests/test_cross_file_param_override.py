"""A hybrid model built over files, in the style of ViT's ResNet stem: ``layers.py`` holds a
weight-standardised convolution (a ``param``-overriding subclass of ``nn.Conv``) and a stage
built from it; ``model.py`` builds both through the module (``layers.WSConv``), inside a
branch on a field, with the stages made in a loop in that branch from a local computed
there.  One fix converts the three files (``constructs/param_override.py``,
``constructs/loop_stack.py``, ``linen_users.py``), and the model computes what Linen does
from the same weights, with the branch taken or not."""

from __future__ import annotations

import shutil

import pytest

from conversion_helpers import import_fresh

LAYERS = '''\
import jax.numpy as jnp
import flax.linen as nn


def standardize(w, axis, eps=1e-5):
    w = w - jnp.mean(w, axis=axis, keepdims=True)
    return w / (jnp.std(w, axis=axis, keepdims=True) + eps)


class WSConv(nn.Conv):
    def param(self, name, *args, **kwargs):
        value = super().param(name, *args, **kwargs)
        if name == "kernel":
            value = standardize(value, axis=(0, 1, 2))
        return value


class Stage(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        y = WSConv(self.width, (3, 3), use_bias=False)(x)
        return nn.relu(nn.GroupNorm(num_groups=2)(y))
'''

MODEL = '''\
from typing import Optional

import flax.linen as nn

import layers


class Hybrid(nn.Module):
    stem: Optional[int] = None  # width factor of a convolutional stem; None: patches straight away
    growth: tuple = (1, 2)
    classes: int = 3

    @nn.compact
    def __call__(self, x):
        if self.stem is not None:
            width = 4 * self.stem
            x = layers.WSConv(width, (3, 3), use_bias=False, name="root")(x)
            x = nn.GroupNorm(num_groups=2, name="root_norm")(x)
            for i, grow in enumerate(self.growth):
                x = layers.Stage(width * grow, name=f"stage{i + 1}")(x)
        x = nn.Conv(8, (2, 2), strides=(2, 2), name="patches")(x)
        return nn.Dense(self.classes)(x.mean(axis=(1, 2)))
'''

TRAIN = '''\
import jax
import jax.numpy as jnp

from model import Hybrid


def predict(x):
    model = Hybrid(stem=2)
    variables = model.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))
    return model.apply(variables, x)
'''


@pytest.fixture
def project(tmp_path):
    for name, text in {"layers.py": LAYERS, "model.py": MODEL, "train.py": TRAIN}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_stem_of_another_file_converts_with_its_user_and_matches_linen(run_cli, project, tmp_path_factory,
                                                                         monkeypatch):
    import jax
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen_copy = tmp_path_factory.mktemp("linen")
    for path in project.iterdir():
        shutil.copy(path, linen_copy / path.name)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert result.returncode == 0, result.stdout + result.stderr
    after = {path.name: path.read_text() for path in project.glob("*.py")}
    assert "class WSConv(nnx.Conv):" in after["layers.py"]
    model = after["model.py"]
    # built as the file spells it, numbered and named as Linen does
    assert "self.root = layers.WSConv(in_features, (4 * stem), (3, 3), use_bias=False, rngs=rngs)" in model
    # the loop of the branch runs in ``__init__`` under the branch's test, with a running size
    assert ("        if stem is not None:\n"
            "            x_features = (4 * stem)\n"
            "            for i, grow in enumerate(growth):\n"
            '                setattr(self, f"stage{i + 1}", layers.Stage(x_features, (4 * stem) * grow, rngs=rngs))\n'
            "                x_features = (4 * stem) * grow\n") in model
    assert "nnx.Conv(x_features if stem is not None else in_features, 8, (2, 2)" in model
    assert "width = 4 * self.stem" not in model  # read only by what moved to ``__init__``
    assert "Hybrid(3, stem=2, rngs=nnx.Rngs(0))" in after["train.py"]
    assert "flax.linen" not in "".join(after.values())
    for text in after.values():
        compile(text, "<converted>", "exec")
    checked = run_cli("check", "--no-cache", "--select", "NNX", project)
    assert checked.returncode == 0, checked.stdout  # no Linen left, none of nnxlint's NNX1xx findings
    again = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert {path.name: path.read_text() for path in project.glob("*.py")} == after, again.stdout

    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    for stem in (2, None):  # the branch taken, and not: then ``__init__`` builds no stem either
        linen = import_fresh(linen_copy, monkeypatch, "model")[0].Hybrid(stem=stem)
        variables = linen.init(jax.random.key(0), x)
        expected = np.asarray(linen.apply(variables, x))
        net = import_fresh(project, monkeypatch, "model")[0].Hybrid(3, stem=stem, rngs=nnx.Rngs(5))
        load_linen_variables(net, variables)
        difference = np.max(np.abs(np.asarray(net(x)) - expected)) / np.max(np.abs(expected))
        assert difference <= 1e-5, (stem, difference)


def test_a_user_of_the_subclass_that_stays_linen_keeps_its_file_linen(run_cli, project):
    """A Linen class of another file that builds ``layers.WSConv`` and cannot convert (it reads
    ``self.scope``) keeps the subclass Linen, and with it the stage that builds it."""
    (project / "model.py").write_text(MODEL + '''

class Probe(nn.Module):
    @nn.compact
    def __call__(self, x):
        self.scope.make_rng("params")
        return layers.WSConv(4, (1, 1))(x)
''')
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    layers_after = (project / "layers.py").read_text()
    assert layers_after == LAYERS, result.stdout
    assert "Linen Module class `Stage`: migrate to `nnx.Module` (no fix: " in result.stdout
    assert f"`Probe` of {project / 'model.py'} does not" in result.stdout
    assert "class Hybrid(nn.Module):" in (project / "model.py").read_text()
