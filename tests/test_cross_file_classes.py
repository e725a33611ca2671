"""Linen classes of different files that use each other convert together (``linen_users.py``):
layers.py's block, model.py's model built from it, train.py's init site, in one fix."""

from __future__ import annotations

import shutil

import pytest

from conversion_helpers import import_fresh

LAYERS = '''\
import flax.linen as nn


class Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.features)(x)
        x = nn.LayerNorm()(x)
        return nn.relu(x)
'''

MODEL = '''\
import flax.linen as nn

from layers import Block


class Net(nn.Module):
    hidden: int
    classes: int

    @nn.compact
    def __call__(self, x):
        x = Block(self.hidden)(x)
        x = Block(self.hidden * 2)(x)
        return nn.Dense(self.classes)(x)
'''

TRAIN = '''\
import jax
import jax.numpy as jnp

from model import Net


def predict(x):
    model = Net(hidden=8, classes=3)
    variables = model.init(jax.random.key(0), jnp.ones((1, 5)))
    return model.apply(variables, x)
'''


@pytest.fixture
def project(tmp_path):
    for name, text in {"layers.py": LAYERS, "model.py": MODEL, "train.py": TRAIN}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_block_and_the_model_of_another_file_convert_together_and_match_linen(run_cli, project, tmp_path_factory,
                                                                              monkeypatch):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen_copy = tmp_path_factory.mktemp("linen")
    for path in project.iterdir():
        shutil.copy(path, linen_copy / path.name)
    checked = run_cli("check", "--no-cache", "--unsafe-fixes", "--select", "NNX002", project)
    assert "layers.py:4:1: NNX002 [-] Linen Module class `Block`" in checked.stdout  # a fix, no reason
    assert f"it uses `Block`, a Linen class of {project / 'layers.py'}, whose fix converts this class with it" \
        in checked.stdout  # Net's finding: no fix of its own
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert result.returncode == 0, result.stdout + result.stderr
    after = {path.name: path.read_text() for path in project.glob("*.py")}
    assert "class Block(nnx.Module):" in after["layers.py"] and "class Net(nnx.Module):" in after["model.py"]
    assert "self.block_0 = Block(in_features, hidden, rngs=rngs)" in after["model.py"]
    assert "Net(5, hidden=8, classes=3, rngs=nnx.Rngs(0))" in after["train.py"]
    assert "flax.linen" not in "".join(after.values())
    again = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert {path.name: path.read_text() for path in project.glob("*.py")} == after and "NNX002" not in again.stdout

    x = jax.random.normal(jax.random.key(1), (2, 5))
    (linen_model,) = import_fresh(linen_copy, monkeypatch, "model")
    linen_net = linen_model.Net(hidden=8, classes=3)
    variables = linen_net.init(jax.random.key(0), x)
    expected = np.asarray(linen_net.apply(variables, x))
    nnx_model, nnx_train = import_fresh(project, monkeypatch, "model", "train")
    net = nnx_model.Net(5, hidden=8, classes=3, rngs=nnx.Rngs(3))
    load_linen_variables(net, variables)
    difference = np.max(np.abs(np.asarray(net(x)) - expected)) / np.max(np.abs(expected))
    assert difference <= 1e-5
    assert nnx_train.predict(jnp.ones((2, 5))).shape == (2, 3)


def test_a_user_that_cannot_convert_keeps_the_used_class_linen(run_cli, project):
    """A user that stays Linen (here: its setup builds blocks in a loop) holds the block back, named."""
    (project / "model.py").write_text(MODEL.replace(
        "    @nn.compact\n    def __call__(self, x):\n        x = Block(self.hidden)(x)\n",
        "    def setup(self):\n        self.blocks = [Block(n) for n in (self.hidden,)]\n\n"
        "    @nn.compact\n    def __call__(self, x):\n        x = self.blocks[0](x)\n"))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "class Block(nn.Module):" in (project / "layers.py").read_text()
    assert f"`Block`: migrate to `nnx.Module` (no fix: `Net` of {project / 'model.py'}, a Linen class, uses it: " \
        in result.stdout


def test_a_subclass_in_another_file_other_than_the_explicit_init_style_keeps_both_linen(run_cli, project):
    (project / "model.py").write_text(MODEL + "\n\nclass Wide(Block):\n    pass\n")
    result = run_cli("check", "--no-cache", "--unsafe-fixes", "--select", "NNX002", project)
    assert "`Wide` stays Linen: `Wide` subclasses the Linen class `Block`: only fields and a `setup` that calls " \
        "`self.__call__` on a dummy batch (the explicit-init style) are converted" in result.stdout


def test_a_class_spelled_through_its_module_converts_with_it(run_cli, project):
    (project / "model.py").write_text(MODEL.replace("from layers import Block", "import layers").replace(
        "Block(self.hidden", "layers.Block(self.hidden"))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    model = (project / "model.py").read_text()
    assert "self.block_0 = layers.Block(in_features, hidden, rngs=rngs)" in model, result.stdout
    assert "self.block_1 = layers.Block(hidden, hidden * 2, rngs=rngs)" in model
    assert "class Block(nnx.Module):" in (project / "layers.py").read_text()


def test_the_user_file_trains_its_model_itself(run_cli, tmp_path):
    (tmp_path / "layers.py").write_text(LAYERS)
    (tmp_path / "model.py").write_text(
        MODEL.replace("from layers import Block", "import jax\nimport jax.numpy as jnp\n\nfrom layers import Block")
        + "\n\n" + TRAIN.split("\n\n\n", 1)[1])
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", tmp_path)
    model = (tmp_path / "model.py").read_text()
    assert "model = Net(5, hidden=8, classes=3, rngs=nnx.Rngs(0))\n    return model(x)" in model, result.stdout
    assert "self.block_1 = Block(hidden, hidden * 2, rngs=rngs)" in model and "flax.linen" not in model
    assert "class Block(nnx.Module):" in (tmp_path / "layers.py").read_text()


def test_one_user_that_cannot_convert_holds_the_classes_every_user_uses(run_cli, project):
    """Odd (it sows into a collection `init` keeps) holds Block; Net, which converts, cannot then hold an
    NNX Head either."""
    (project / "layers.py").write_text(LAYERS + "\n\nclass Head(nn.Module):\n    @nn.compact\n"
                                                "    def __call__(self, x):\n        return nn.Dense(3)(x)\n")
    (project / "model.py").write_text(MODEL.replace("import Block", "import Block, Head").replace(
        "return nn.Dense(self.classes)(x)", "return Head()(x)"))
    (project / "other.py").write_text(
        "import flax.linen as nn\n\nfrom layers import Block\n\n\nclass Odd(nn.Module):\n"
        "    @nn.compact\n    def __call__(self, x):\n        self.sow('stats', 'x', x)\n"
        "        return Block(2)(x)\n")
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "class Block(nn.Module):" in (project / "layers.py").read_text()
    assert f"`Block`: migrate to `nnx.Module` (no fix: `Odd` of {project / 'other.py'}, a Linen class, uses it: " \
        in result.stdout
    assert f"`Head`: migrate to `nnx.Module` (no fix: `Net` of {project / 'model.py'}, a Linen class, uses it; " \
        f"this class converts only with every Linen class that uses it, and `Odd` of {project / 'other.py'} does " \
        "not)" in result.stdout


def test_a_class_that_uses_only_a_helper_function_of_the_file_does_not_hold_its_classes(run_cli, project):
    """Odd stays Linen but calls only ``layers.kernel_init()``, an initializer, not a class of layers.py
    (jaxrl's encoder and ``default_init``): Block converts with Net."""
    (project / "layers.py").write_text(LAYERS.replace(
        "\n\nclass Block", "\n\ndef kernel_init():\n    return nn.initializers.lecun_normal()\n\n\nclass Block"))
    (project / "other.py").write_text(
        "import flax.linen as nn\n\nfrom layers import kernel_init\n\n\nclass Odd(nn.Module):\n"
        "    @nn.compact\n    def __call__(self, x):\n        self.sow('stats', 'x', x)\n"
        "        return nn.Dense(2, kernel_init=kernel_init())(x)\n")
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "class Block(nnx.Module):" in (project / "layers.py").read_text(), result.stdout
    assert "self.block_1 = Block(hidden, hidden * 2, rngs=rngs)" in (project / "model.py").read_text()
    assert "class Odd(nn.Module):" in (project / "other.py").read_text()


HEADS = '''\
import flax.linen as nn

from model import Net


class TwoHeads(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Net(hidden=4, classes=2)(x) + Net(hidden=4, classes=2)(x)
'''


def test_a_chain_of_users_over_three_files_converts_together(run_cli, project, monkeypatch):
    """heads.py's Linen class builds model.py's Net, which builds layers.py's Block: layers.py's fix
    converts the three files' classes together, heads.py's knowing model.py's converted Net."""
    (project / "heads.py").write_text(HEADS + "\n\ndef predict(x):\n    import jax\n\n"
                                      "    model = TwoHeads()\n"
                                      "    variables = model.init(jax.random.key(0), x)\n"
                                      "    return model.apply(variables, x)\n")
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "class Block(nnx.Module):" in (project / "layers.py").read_text(), result.stdout
    assert "class Net(nnx.Module):" in (project / "model.py").read_text()
    heads = (project / "heads.py").read_text()
    assert "class TwoHeads(nnx.Module):" in heads and "self.net_0 = Net(in_features, hidden=4, classes=2, rngs=rngs)" \
        in heads
    import jax.numpy as jnp

    (heads,) = import_fresh(project, monkeypatch, "heads")
    assert heads.predict(jnp.ones((3, 5))).shape == (3, 2)


def test_a_chain_whose_last_user_stays_linen_leaves_every_class_linen(run_cli, project):
    """TwoHeads sows into a collection that `init` keeps: it stays Linen, so Net and Block stay
    Linen too (a Linen class never holds an NNX one), and the reason names the chain."""
    (project / "heads.py").write_text(HEADS.replace("return Net", "self.sow('stats', 'x', x)\n        return Net"))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert "class Net(nn.Module):" in (project / "model.py").read_text()
    assert "class Block(nn.Module):" in (project / "layers.py").read_text()
    assert f"`Block`: migrate to `nnx.Module` (no fix: `Net` of {project / 'model.py'}, a Linen class, uses it: " \
        f"in {project / 'heads.py'}, whose Linen classes use classes this fix converts, `TwoHeads` stays Linen" \
        in result.stdout
