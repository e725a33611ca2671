"""Project-level fixes: a Linen models file converted together with the files of the
run that build and train its classes (NNX002), written all files or none."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import libcst as cst
import pytest

from nnxlint.engine import check_source
from nnxlint.rule import FileEdit, Fix, OtherFiles, Rule

MODELS = '''\
"""Two models."""

import flax.linen as nn


class MLP(nn.Module):
    hidden: int
    out: int = 2

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.out)(nn.relu(nn.Dense(self.hidden)(x)))


class Tagger(nn.Module):
    vocab: int
    dim: int

    @nn.compact
    def __call__(self, tokens):
        return nn.Dense(3)(nn.Embed(self.vocab, self.dim)(tokens))
'''

TRAIN = '''\
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from models import MLP


def create(key):
    model = MLP(hidden=8)
    params = model.init(key, jnp.ones((1, 3)))['params']
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))


@jax.jit
def step(state, x, y):
    def loss_fn(params):
        return jnp.mean((state.apply_fn({'params': params}, x) - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def run(steps):
    state = create(jax.random.key(0))
    x, y = jnp.linspace(-1, 1, 12).reshape(4, 3), jnp.ones((4, 2))
    losses = []
    for _ in range(steps):
        state, loss = step(state, x, y)
        losses.append(float(loss))
    return losses
'''

SERVE = '''\
import models


def tagger():
    return models.Tagger(vocab=10, dim=4)
'''

EXPORT = '''\
from models import MLP


def small():
    return MLP(hidden=4)
'''


@pytest.fixture
def project(tmp_path):
    for name, text in {"models.py": MODELS, "train.py": TRAIN, "serve.py": SERVE, "export.py": EXPORT}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _texts(directory):
    return {path.name: path.read_text() for path in sorted(directory.glob("*.py"))}


def test_a_two_file_project_converts_and_trains(run_cli, project):
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    after = _texts(project)
    assert "class MLP(nnx.Module):" in after["models.py"] and "flax.linen" not in after["models.py"]
    # the training file: the class is built with the size of init's example input, the state is NNX's
    assert "model = MLP(3, hidden=8, rngs=nnx.Rngs(key))" in after["train.py"]
    assert "nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)" in after["train.py"]
    assert "train_state" not in after["train.py"] and "from flax import nnx\n" in after["train.py"]
    # another construction in the run gets rngs; one whose input size is unknown there keeps a
    # Linen module (what its callers had), which reads the size off its first input
    assert "models.Tagger(vocab=10, dim=4, rngs=nnx.Rngs(0))" in after["serve.py"]
    assert "    return to_linen_sized(MLP, lambda x, *_, **__: (x.shape[-1],), hidden=4)\n" in after["export.py"]
    assert "export.py stays Linen (`init`, `apply`, `TrainState`)" in result.stderr
    # the converted files are no longer flagged (train.py was checked again after it was rewritten)
    assert "train.py" not in result.stdout and "serve.py" not in result.stdout
    trained = subprocess.run([sys.executable, "-c", "import jax, jax.numpy as jnp, train, serve, export; "
                                                    "export.small().init(jax.random.key(0), jnp.ones((1, 3))); "
                                                    "serve.tagger(); print(train.run(4))"],
                             cwd=project, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert trained.returncode == 0, trained.stderr
    losses = json.loads(trained.stdout.strip().splitlines()[-1])
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_a_second_fix_changes_nothing(run_cli, project):
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    once = _texts(project)
    again = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert _texts(project) == once
    assert "0 fixed" in again.stdout or "fixed" not in again.stdout


def test_diff_shows_every_file_and_writes_nothing(run_cli, project):
    result = run_cli("check", "--no-cache", "--diff", "--unsafe-fixes", project)
    assert result.returncode == 1
    for name in ("models.py", "train.py", "serve.py", "export.py"):
        assert f"+++ b/{project / name}" in result.stdout
    assert "+    model = MLP(3, hidden=8, rngs=nnx.Rngs(key))" in result.stdout
    assert _texts(project) == {"export.py": EXPORT, "models.py": MODELS, "serve.py": SERVE, "train.py": TRAIN}


def test_the_description_names_the_run_and_callers_outside_it(run_cli, project):
    result = run_cli("check", "--no-cache", "--unsafe-fixes", "--output-format", "json", project / "models.py",
                     project / "train.py")
    fixes = {finding["fix"]["description"] for finding in json.loads(result.stdout)
             if finding["code"] == "NNX002" and finding["fix"]}
    assert len(fixes) == 1
    description = fixes.pop()
    assert str(project / "train.py") in description and "serve.py" not in description
    assert "code outside the run that builds these classes must pass the new arguments" in description


def test_nothing_is_written_when_one_file_of_the_fix_cannot_be(run_cli, project):
    os.chmod(project / "train.py", 0o444)
    try:
        result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    finally:
        os.chmod(project / "train.py", 0o644)
    assert _texts(project) == {"export.py": EXPORT, "models.py": MODELS, "serve.py": SERVE, "train.py": TRAIN}
    assert "fixes not written" in result.stderr and "read-only" in result.stderr
    assert result.returncode == 1 and "NNX002" in result.stdout  # the findings of the files as they are
    assert not [path for path in project.iterdir() if path.name.startswith(".nnxlint-")]  # no temporary left


def test_a_symlinked_file_of_the_fix_is_written_through(run_cli, project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("real") / "train.py"
    (project / "train.py").rename(elsewhere)
    (project / "train.py").symlink_to(elsewhere)
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert (project / "train.py").is_symlink()
    assert "nnx.Optimizer(" in elsewhere.read_text()


def test_a_package_with_relative_imports(run_cli, tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MODELS)
    (package / "train.py").write_text(TRAIN.replace("from models import MLP", "from .models import MLP"))
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", tmp_path)
    assert "model = MLP(3, hidden=8, rngs=nnx.Rngs(key))" in (package / "train.py").read_text()
    assert "class MLP(nnx.Module):" in (package / "models.py").read_text()


# -- the engine's part, without any rule's knowledge ------------------------------------

class RenamesEverywhere(Rule):
    """Renames ``old`` in this file and in ``other.py``: a project-level fix."""

    code, name, summary = "TST201", "renames-everywhere", "renames `old` in two files"
    triggers = ("old",)
    other_text = "from here import old\n"

    def visit_Name(self, node):
        if node.value == "old":
            other = FileEdit("other.py", self.other_text, self.other_text.replace("old", "new"))
            self.report(node, "old name", Fix("rename old", "unsafe", {node: cst.Name("new")},
                                              other_files=OtherFiles((other,), ("a note",))))


def test_the_engine_returns_the_other_files_of_a_project_fix():
    result = check_source("old = 1\n", "here.py", [RenamesEverywhere], "unsafe")
    assert result.fixed_text == "new = 1\n"
    assert result.other_files["other.py"].after == "from here import new\n" and result.notes == ["a note"]
    assert check_source("old = 1\n", "here.py", [RenamesEverywhere], "safe").other_files == {}


def test_a_project_fix_whose_other_file_would_not_compile_is_dropped_whole():
    class Breaks(RenamesEverywhere):
        other_text = "def f(old, new):\n    pass\n"  # the rename makes a duplicate parameter

    result = check_source("old = 1\n", "here.py", [Breaks], "unsafe")
    assert result.fixed_text is None and result.other_files == {}
    assert "other.py would not compile" in result.drop_reasons["rename old"]


def test_runner_all_or_nothing_keeps_both_files(tmp_path):
    """The write of a project fix prepares every file before renaming any."""
    from nnxlint.textio import write_all_atomic

    first, second = tmp_path / "a.py", tmp_path / "b.py"
    first.write_text("a\n")
    second.write_text("b\n")
    os.chmod(second, 0o444)
    with pytest.raises(PermissionError):
        write_all_atomic({str(first): b"A\n", str(second): b"B\n"})
    assert first.read_text() == "a\n" and second.read_text() == "b\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.py", "b.py"]
    os.chmod(second, 0o644)
    write_all_atomic({str(first): b"A\n", str(second): b"B\n"})
    assert first.read_text() == "A\n" and second.read_text() == "B\n"


def test_a_class_that_a_linen_class_of_another_file_uses_stays_linen(run_cli, project):
    """...when that class cannot convert with it (here: it sows into a collection `init` keeps);
    tests/test_cross_file_classes.py converts both when it can."""
    (project / "bigger.py").write_text(
        "import flax.linen as nn\n\nimport models\n\n\nclass Bigger(nn.Module):\n"
        "    @nn.compact\n    def __call__(self, x):\n        self.sow('stats', 'x', x)\n"
        "        return models.MLP(hidden=4)(x)\n")
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    after = _texts(project)
    assert "class MLP(nn.Module):" in after["models.py"] and "class Tagger(nnx.Module):" in after["models.py"]
    assert f"`MLP`: migrate to `nnx.Module` (no fix: `Bigger` of {project / 'bigger.py'}, a Linen class, uses it: " \
        "`Bigger` stays Linen: " in result.stdout


def test_a_fix_made_from_a_text_that_other_fixes_rewrote_is_made_again(run_cli, project):
    """train.py's own safe fix (NNX102) is written by its worker first; the project fix,
    made from train.py's old text, is made again from the new one in the same run."""
    (project / "train.py").write_text(TRAIN + "\n\ndef unrelated(model, tx):\n    from flax import nnx\n\n"
                                      "    return nnx.Optimizer(model, tx)\n")
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    after = (project / "train.py").read_text()
    assert "model = MLP(3, hidden=8, rngs=nnx.Rngs(key))" in after
    assert "return nnx.Optimizer(model, tx, wrt=nnx.Param)" in after


def test_a_model_built_through_a_factory_function_of_the_models_file(run_cli, tmp_path):
    (tmp_path / "models.py").write_text(MODELS + "\n\ndef make(hidden):\n    return MLP(hidden=hidden)\n")
    (tmp_path / "train.py").write_text(TRAIN.replace("from models import MLP", "import models")
                                       .replace("model = MLP(hidden=8)", "model = models.make(8)"))
    run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", tmp_path)
    models, train = (tmp_path / "models.py").read_text(), (tmp_path / "train.py").read_text()
    assert "def make(hidden, *, in_features: int, rngs: nnx.Rngs):\n    return MLP(in_features, hidden=hidden, " \
           "rngs=rngs)" in models
    assert "model = models.make(8, in_features=3, rngs=nnx.Rngs(key))" in train
    compile(train, "train.py", "exec")


LEGACY = '''\
import jax.numpy as jnp

from models import MLP

model = MLP(hidden=4)


def fresh(key):
    return model.init(key, jnp.ones((1, 3)))["params"]


def predict(params, x):
    return model.apply({"params": params}, x)
'''


def test_a_file_keeping_linen_init_and_apply_is_bridged_where_another_files_training_converts(run_cli, project):
    (project / "legacy.py").write_text(LEGACY)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    after = _texts(project)
    assert "model = MLP(3, hidden=8, rngs=nnx.Rngs(key))" in after["train.py"]  # train.py converts, as before
    assert "models.Tagger(vocab=10, dim=4, rngs=nnx.Rngs(0))" in after["serve.py"]  # built NNX's way, as before
    # legacy.py keeps its ``init``/``apply``: the NNX class is built as a Linen module, sized at its first call
    assert "model = to_linen_sized(MLP, lambda x, *_, **__: (x.shape[-1],), hidden=4)" in after["legacy.py"]
    assert "legacy.py stays Linen (`init`, `apply`, `TrainState`)" in result.stderr
    assert "to_linen_sized(MLP," in after["export.py"]  # the NNX way, it would need the size it does not know
    used = subprocess.run([sys.executable, "-c", "import jax, jax.numpy as jnp, legacy; "
                                                 "p = legacy.fresh(jax.random.key(0)); "
                                                 "print(legacy.predict(p, jnp.ones((2, 3))).shape)"],
                          cwd=project, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert used.stdout.strip() == "(2, 2)", used.stderr


def test_a_file_that_can_be_neither_updated_nor_bridged_keeps_the_classes_it_builds_linen(run_cli, project):
    starred_export = "from models import MLP\n\n\ndef small(options):\n    return MLP(**options)\n"
    (project / "export.py").write_text(starred_export)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    after = _texts(project)
    # MLP stays Linen, and with it train.py's training; Tagger converts, and with no training code
    # converted serve.py keeps the Linen module it had
    assert "class MLP(nn.Module):" in after["models.py"] and "class Tagger(nnx.Module):" in after["models.py"]
    assert after["train.py"] == TRAIN and after["export.py"] == starred_export
    assert "nnx.bridge.to_linen(models.Tagger, vocab=10, dim=4, metadata_fn=None)" in after["serve.py"]
    assert "the training code in " in result.stderr and "train.py is not converted: `MLP` stays Linen" in result.stderr
    assert ("Linen Module class `MLP`: migrate to `nnx.Module` (no fix: " in result.stdout
            and "export.py builds it and cannot be updated: " in result.stdout
            and "export.py:5: a construction with starred arguments is not bridged" in result.stdout)
    assert run_cli("check", "--no-cache", "--select", "NNX1", project).returncode == 0


def test_a_class_held_linen_can_leave_another_file_unable_to_update_and_its_classes_stay_linen_too(run_cli, project):
    # with MLP held, train.py's training no longer converts: serve.py must then be bridged, which it cannot be
    (project / "export.py").write_text("from models import MLP\n\n\ndef small(options):\n    return MLP(**options)\n")
    (project / "serve.py").write_text("import models\n\n\ndef tagger(options):\n    return models.Tagger(**options)\n")
    before = _texts(project)
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    assert _texts(project) == before
    assert "serve.py builds it and cannot be updated: " in result.stdout


def test_a_file_picking_a_class_by_name_keeps_every_class_linen(run_cli, project):
    # ``getattr(models, name)`` may build any class of the file: none of them can change under it
    (project / "export.py").write_text("import models\n\n\ndef build(name, **options):\n"
                                       "    return getattr(models, name)(**options)\n")
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", project)
    after = _texts(project)
    assert after["models.py"] == MODELS and after["train.py"] == TRAIN and after["serve.py"] == SERVE
    assert result.stdout.count("export.py builds it and cannot be updated") == 2  # MLP's and Tagger's findings
    assert "picks a class of the models file by name" in result.stdout
