"""Fixtures of several files: the manifest's `program`, and programs that import their
sibling modules afresh in every run (before/ and after/ both hold a `models`)."""

from __future__ import annotations

import sys

import pytest

from nnxlint.verify.manifest import ManifestError, load_fixture

MANIFEST = 'rules = ["NNX002"]\nfix = "unsafe"\ndropout = "none"\nprogram = "train.py"\n'
TRAIN = '''\
import numpy as np

import models


def train(steps):
    return [models.SCALE * step for step in range(steps)], np.ones(2) * models.SCALE
'''


def _fixture(tmp_path, manifest=MANIFEST):
    for side, scale in (("before", 1.0), ("after", 2.0)):
        (tmp_path / side).mkdir()
        (tmp_path / side / "models.py").write_text(f"SCALE = {scale}\n")
        (tmp_path / side / "train.py").write_text(TRAIN)
    (tmp_path / "fixture.toml").write_text(manifest)
    return load_fixture(tmp_path)


def test_the_program_of_a_fixture_of_several_files(tmp_path):
    fixture = _fixture(tmp_path)
    assert fixture.before_path == tmp_path / "before" / "train.py"
    assert fixture.after_path == tmp_path / "after" / "train.py"
    assert list(fixture.before_files()) == ["models.py", "train.py"]
    assert fixture.after_file("models.py") == tmp_path / "after" / "models.py"


def test_a_program_needs_its_directory(tmp_path):
    (tmp_path / "before.py").write_text(TRAIN)
    (tmp_path / "fixture.toml").write_text(MANIFEST)
    with pytest.raises(ManifestError, match="`program` names the file to run in before/"):
        load_fixture(tmp_path)


def test_each_run_imports_its_own_sibling_modules(tmp_path):
    from nnxlint.verify.programs import RunOptions, run_program

    fixture = _fixture(tmp_path)
    before = run_program(fixture.before_path, 3, RunOptions())
    after = run_program(fixture.after_path, 3, RunOptions())
    again = run_program(fixture.before_path, 3, RunOptions())
    assert list(before.losses) == [0.0, 1.0, 2.0] and list(after.losses) == [0.0, 2.0, 4.0]
    assert list(again.losses) == list(before.losses)
    assert "models" not in sys.modules and str(tmp_path / "before") not in sys.path
