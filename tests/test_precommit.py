"""The pre-commit hooks, run by the real ``pre-commit`` tool on a temporary git repository:
``try-repo`` for the check hook, and a ``.pre-commit-config.yaml`` naming the hook repository
for the fix hook (its environment, unlike try-repo's, stays in PRE_COMMIT_HOME for inspection).
The hook repository is a committed copy of this working tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pre_commit")

ROOT = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=nnxlint tests", "-c", "user.email=tests@example.invalid", "-c", "commit.gpgsign=false"]

MODEL = """\
import flax.linen as nn
from flax import nnx
import optax

optimizer = nnx.Optimizer(model, optax.adam(1e-3))
"""
NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": ["from flax import nnx\n", "opt = nnx.Optimizer(model, tx)"]}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _git(*arguments, cwd):
    subprocess.run([*GIT, *arguments], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def hook_repository(tmp_path_factory):
    """This working tree (tracked and untracked, not ignored files) committed into a fresh repository."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    repository = tmp_path_factory.mktemp("hook-repository")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = repository / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    if not (repository / "README.md").exists():  # pyproject's readme, needed to build the package
        (repository / "README.md").write_text("# nnxlint\n")
    _git("init", "-q", cwd=repository)
    _git("add", ".", cwd=repository)
    _git("commit", "-q", "-m", "snapshot", cwd=repository)
    return repository


@pytest.fixture
def project(tmp_path):
    project = tmp_path / "project"
    (project / "generated").mkdir(parents=True)
    # the rules this test counts, so that rules landing later do not change the expectations
    (project / "pyproject.toml").write_text("[tool.nnxlint]\nselect = ['NNX001', 'NNX102']\nexclude = ['generated']\n")
    (project / "model.py").write_text(MODEL)
    (project / "clean.py").write_text("x = 1\n")
    (project / "generated" / "old.py").write_text("import flax.linen as nn\n")
    (project / "explore.ipynb").write_text(json.dumps(NOTEBOOK, indent=1) + "\n")
    _git("init", "-q", cwd=project)
    _git("add", ".", cwd=project)
    return project


def _pre_commit(*arguments, project, home):
    environment = {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    environment.pop("VIRTUAL_ENV", None)
    return subprocess.run([sys.executable, "-m", "pre_commit", *arguments, "--all-files", "--verbose"],
                          cwd=project, env=environment, capture_output=True, text=True, timeout=600)


def test_hooks_check_and_fix_through_pre_commit_without_installing_jax(hook_repository, project, tmp_path):
    home = tmp_path / "pre-commit-home"
    checked = _pre_commit("try-repo", str(hook_repository), "nnxlint", project=project, home=home)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "model.py:1:1: NNX001" in checked.stdout
    assert "model.py:5:13: NNX102" in checked.stdout
    assert "explore.ipynb:cell 1:2:7: NNX102" in checked.stdout  # notebooks reach the hook (types jupyter)
    assert "generated/old.py" not in checked.stdout  # --force-exclude honours the configured exclude
    assert "wrt" not in (project / "model.py").read_text()

    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=hook_repository, check=True,
                              capture_output=True, text=True).stdout.strip()
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {hook_repository}\n  rev: {revision}\n  hooks:\n  - id: nnxlint-fix\n")
    _git("add", ".pre-commit-config.yaml", cwd=project)
    fixed = _pre_commit("run", project=project, home=home)
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr  # a finding without fix remains
    assert (project / "model.py").read_text() == MODEL.replace("adam(1e-3))", "adam(1e-3), wrt=nnx.Param)")
    assert json.loads((project / "explore.ipynb").read_text())["cells"][0]["source"][1] == \
        "opt = nnx.Optimizer(model, tx, wrt=nnx.Param)"

    # the hook's virtual environment holds nnxlint and its light dependencies, never jax or flax
    site_packages = [path for path in home.glob("repo*/py_env-*/lib*/python*/site-packages")]
    assert site_packages, sorted(str(path) for path in home.rglob("py_env-*"))
    installed = {path.name.split("-")[0].lower() for packages in site_packages for path in packages.iterdir()}
    assert {"nnxlint", "libcst", "click", "pathspec"} <= installed
    assert not installed & {"jax", "jaxlib", "flax", "optax"}, installed
