"""The result cache: same answers warm as cold, invalidated by content and config, safe in parallel."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nnxlint.cache import Cache, content_digest, source_fingerprint
from nnxlint.engine import FixSummary, Finding

LINEN = "import flax.linen as nn\n"
OPTIMIZER = "from flax import nnx\nimport optax\nopt = nnx.Optimizer(model, optax.adam(1e-3))\n"


@pytest.fixture
def project(tmp_path):
    # the rules these tests count; rules landing later must not change the expectations
    (tmp_path / "pyproject.toml").write_text("[tool.nnxlint]\nselect = ['NNX001', 'NNX102']\n")
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "old.py").write_text(LINEN)
    (package / "train.py").write_text(OPTIMIZER)
    (package / "clean.py").write_text("x = 1\n")
    return tmp_path


def _entries(root):
    return sorted((root / ".nnxlint_cache").glob("*/*.json"))


def test_warm_run_gives_the_cold_run_output(run_cli, project):
    cold = run_cli("check", "--output-format", "json", "pkg", cwd=project)
    assert len(_entries(project)) == 3
    warm = run_cli("check", "--output-format", "json", "pkg", cwd=project)
    assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout)
    assert [f["code"] for f in json.loads(warm.stdout)] == ["NNX001", "NNX102"]
    text = run_cli("check", "pkg", cwd=project)
    assert "[*] 1 fixable with the `--fix` option." in text.stdout  # fix summaries survive the cache
    cache_root = project / ".nnxlint_cache"
    assert (cache_root / "CACHEDIR.TAG").is_file() and (cache_root / ".gitignore").read_text().endswith("*\n")


def test_cached_findings_are_served_until_the_file_changes(run_cli, project):
    run_cli("check", "pkg/old.py", cwd=project)
    [entry] = _entries(project)
    data = json.loads(entry.read_text())
    data["findings"][0]["message"] = "served from the cache"
    entry.write_text(json.dumps(data))
    assert "served from the cache" in run_cli("check", "pkg/old.py", cwd=project).stdout
    assert "served from the cache" not in run_cli("check", "--no-cache", "pkg/old.py", cwd=project).stdout

    (project / "pkg" / "old.py").write_text("# edited\n" + LINEN)
    result = run_cli("check", "pkg/old.py", cwd=project)
    assert "served from the cache" not in result.stdout
    assert "pkg/old.py:2:1: NNX001" in result.stdout


def test_config_and_fix_level_are_part_of_the_key(run_cli, project):
    assert run_cli("check", "pkg", cwd=project).returncode == 1
    assert run_cli("check", "--ignore", "NNX001,NNX102", "pkg", cwd=project).returncode == 0
    (project / "pyproject.toml").write_text("[tool.nnxlint]\nselect = ['NNX001', 'NNX102']\n"
                                           "per-file-ignores = {'pkg/old.py' = ['NNX001']}\n")
    assert "NNX001" not in run_cli("check", "pkg", cwd=project).stdout
    fixed = run_cli("check", "--fix", "pkg", cwd=project)  # findings were cached without a fix level
    assert "1 fixed" in fixed.stdout
    assert "wrt=nnx.Param" in (project / "pkg" / "train.py").read_text()
    assert "NNX102" not in run_cli("check", "pkg", cwd=project).stdout


def test_no_cache_writes_nothing_and_cache_dir_overrides(run_cli, project):
    run_cli("check", "--no-cache", "pkg", cwd=project)
    assert not (project / ".nnxlint_cache").exists()
    (project / "pyproject.toml").write_text("[tool.nnxlint]\nselect = ['NNX001', 'NNX102']\n"
                                           "cache-dir = 'build/lint-cache'\n")
    run_cli("check", "pkg", cwd=project)
    assert not (project / ".nnxlint_cache").exists()
    assert len(list((project / "build" / "lint-cache").glob("*/*.json"))) == 3


def test_concurrent_runs_agree_and_leave_only_complete_entries(project):
    for index in range(40):  # enough files for the process pool in each run
        (project / "pkg" / f"m{index}.py").write_text(LINEN * (index % 3) + OPTIMIZER)
    command = [sys.executable, "-m", "nnxlint", "check", "--output-format", "json", "pkg"]
    runs = [subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    outputs = {run.communicate()[0] for run in runs}
    assert len(outputs) == 1
    entries = _entries(project)
    assert len(entries) == 43
    assert all(json.loads(entry.read_text())["findings"] is not None for entry in entries)
    assert not list((project / ".nnxlint_cache").rglob("*.tmp"))
    warm = subprocess.run(command, cwd=project, capture_output=True, text=True)
    assert warm.stdout in outputs


def test_store_and_load_round_trip_findings(tmp_path):
    source = tmp_path / "nb.ipynb"
    source.write_text("{}")
    finding = Finding(str(source), "NNX102", "optimizer-without-wrt", "message", 3, 5, 3, 9,
                      FixSummary("safe", "add wrt"), cell=2)
    cache = Cache(tmp_path / "cache")
    cache.store(str(source), ["NNX102"], None, content_digest(b"{}"), [finding])
    assert cache.load(str(source), ["NNX102"], None) == [finding]
    assert cache.load(str(source), ["NNX102"], "safe") is None
    assert cache.load(str(source), ["NNX001", "NNX102"], None) is None


def test_an_edited_module_in_a_subpackage_changes_the_fingerprint(tmp_path):
    """A development install edits ``nnxlint/conversion/constructs/*.py`` as often as the
    rules: cached results must not outlive such an edit."""
    import os

    module = tmp_path / "package" / "conversion" / "constructs" / "unit.py"
    module.parent.mkdir(parents=True)
    module.write_text("VALUE = 1\n")
    (tmp_path / "package" / "__pycache__").mkdir()
    (tmp_path / "package" / "__pycache__" / "stale.py").write_text("")
    before = source_fingerprint([str(tmp_path / "package")])
    module.write_text("VALUE = 22\n")
    assert source_fingerprint([str(tmp_path / "package")]) != before
    os.utime(module, ns=(1, 1))
    touched = source_fingerprint([str(tmp_path / "package")])
    os.utime(module, ns=(2, 2))
    edited = source_fingerprint([str(tmp_path / "package")])
    assert edited != touched
    (tmp_path / "package" / "__pycache__" / "stale.py").write_text("not a module of the package")
    assert source_fingerprint([str(tmp_path / "package")]) == edited
