"""The baseline ratchet: known findings pass, new ones fail, fixed ones go stale and are dropped."""

from __future__ import annotations

import json

# the rules these tests count; rules landing later must not change the expectations
CHECK = ("check", "--no-cache", "--select", "NNX001,NNX102")
MODEL = """\
import flax.linen as nn
from flax import nnx
import optax


def make_optimizer(model):
    return nnx.Optimizer(model, optax.adam(1e-3))
"""


def _baseline(run_cli, tmp_path, *extra):
    return run_cli(*CHECK, "--baseline", "baseline.json", *extra, ".", cwd=tmp_path)


def _write_baseline(run_cli, tmp_path):
    result = run_cli(*CHECK, "--write-baseline", "baseline.json", ".", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads((tmp_path / "baseline.json").read_text())


def test_written_baseline_is_sorted_stable_json_without_line_numbers(run_cli, tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "b.py").write_text("import flax.linen as nn\n")
    data = _write_baseline(run_cli, tmp_path)
    text = (tmp_path / "baseline.json").read_text()
    keys = [(entry["path"], entry["code"], entry["hash"], entry["occurrence"]) for entry in data["findings"]]
    assert keys == sorted(keys)
    assert [(path, code) for path, code, _, _ in keys] == [("b.py", "NNX001"), ("model.py", "NNX001"),
                                                           ("model.py", "NNX102")]
    assert all("line" not in entry for entry in data["findings"])
    _write_baseline(run_cli, tmp_path)
    assert (tmp_path / "baseline.json").read_text() == text  # rewriting an unchanged tree changes nothing


def test_baseline_passes_known_findings_after_inserted_lines_and_moved_code(run_cli, tmp_path):
    source = tmp_path / "model.py"
    source.write_text(MODEL)
    _write_baseline(run_cli, tmp_path)
    assert run_cli(*CHECK, ".", cwd=tmp_path).returncode == 1  # the findings are real

    # lines inserted above, and the function moved into a class (re-indented)
    source.write_text('"""Docstring."""\n# a comment\n\n' + MODEL.replace(
        "def make_optimizer(model):\n    return",
        "class Trainer:\n    def make_optimizer(self, model):\n        return"))
    result = _baseline(run_cli, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 finding(s) already in baseline" in result.stderr
    assert "stale" not in result.stderr


def test_new_finding_fails_the_gate(run_cli, tmp_path):
    source = tmp_path / "model.py"
    source.write_text(MODEL)
    _write_baseline(run_cli, tmp_path)
    # the same flagged text again: the occurrence counter makes the second copy new
    source.write_text(MODEL + "\n\ndef another(model):\n    return nnx.Optimizer(model, optax.adam(1e-3))\n")
    result = _baseline(run_cli, tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        "model.py:11:12: NNX102 [*] `nnx.Optimizer` without `wrt`: required since Flax 0.11 (TypeError); "
        "pass `wrt=nnx.Param`")
    assert "Found 1 error." in result.stdout

    json_result = _baseline(run_cli, tmp_path, "--output-format", "json")
    assert [(f["code"], f["line"]) for f in json.loads(json_result.stdout)] == [("NNX102", 11)]


def test_fixed_finding_is_stale_and_update_baseline_shrinks_the_file(run_cli, tmp_path):
    source = tmp_path / "model.py"
    source.write_text(MODEL)
    before = _write_baseline(run_cli, tmp_path)
    source.write_text(MODEL.replace("optax.adam(1e-3))", "optax.adam(1e-3), wrt=nnx.Param)"))

    result = _baseline(run_cli, tmp_path)
    assert result.returncode == 0
    assert "stale baseline entry (fixed): model.py: NNX102" in result.stderr
    assert "1 stale baseline entry: run with --update-baseline" in result.stderr
    assert json.loads((tmp_path / "baseline.json").read_text()) == before  # only reported

    result = _baseline(run_cli, tmp_path, "--update-baseline")
    assert result.returncode == 0
    after = json.loads((tmp_path / "baseline.json").read_text())
    assert after["findings"] == [entry for entry in before["findings"] if entry["code"] != "NNX102"]
    assert "stale" not in _baseline(run_cli, tmp_path).stderr


def test_update_baseline_never_adds_new_findings(run_cli, tmp_path):
    source = tmp_path / "model.py"
    source.write_text(MODEL)
    before = _write_baseline(run_cli, tmp_path)
    source.write_text(MODEL.replace("optax.adam(1e-3))", "optax.adam(1e-3), wrt=nnx.Param)")
                      + "from flax.linen import Dense\n")
    result = _baseline(run_cli, tmp_path, "--update-baseline")
    assert result.returncode == 1  # the new import still fails
    after = json.loads((tmp_path / "baseline.json").read_text())
    assert len(after["findings"]) == len(before["findings"]) - 1


def test_baseline_usage_errors(run_cli, tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    missing = _baseline(run_cli, tmp_path)
    assert missing.returncode == 2 and "--write-baseline" in missing.stderr
    (tmp_path / "baseline.json").write_text("[]")
    assert _baseline(run_cli, tmp_path).returncode == 2
    lone_update = run_cli("check", "--update-baseline", ".", cwd=tmp_path)
    assert lone_update.returncode == 2 and "needs --baseline" in lone_update.stderr


def test_notebook_findings_are_baselined_by_cell_text(run_cli, tmp_path):
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
              "source": ["import flax.linen as nn"]}]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "demo.ipynb"
    path.write_text(json.dumps(notebook))
    data = _write_baseline(run_cli, tmp_path)
    assert [entry["source"] for entry in data["findings"]] == ["import flax.linen as nn"]
    cells.insert(0, {"cell_type": "markdown", "metadata": {}, "source": ["# Title"]})
    cells[1]["source"] = ["x = 1\n", "import flax.linen as nn"]
    path.write_text(json.dumps(notebook))
    assert _baseline(run_cli, tmp_path).returncode == 0
