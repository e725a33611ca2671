"""`nnxlint verify`: the corpus passes on this machine, and wrong fixes are caught.

The two end-to-end runs (the corpus, and mutated copies) execute every program,
so they take a few minutes on two CPU cores; everything else here is quick.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnxlint.verify import command
from nnxlint.verify.compare import Z_LIMIT, max_relative_difference, max_z_score, tolerance_for
from nnxlint.verify.manifest import ManifestError, discover, load_fixture

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
HARNESS_FIXTURES = Path(__file__).resolve().parent / "verify_fixtures"


# -- comparisons ------------------------------------------------------------

def test_relative_difference():
    assert max_relative_difference([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert max_relative_difference([1.0, 2.0], [1.0, 2.02]) == pytest.approx(0.02 / 2.02)
    # near-zero entries are measured against a thousandth of the array's scale
    assert max_relative_difference([1e-9, 10.0], [0.0, 10.0]) == pytest.approx(1e-9 / 1e-2)
    assert max_relative_difference([1.0], [1.0, 2.0]) == math.inf
    assert max_relative_difference([float("nan")], [1.0]) == math.inf


def test_z_score_separates_shifted_curves_from_noise():
    noise = [[1.0 + 0.01 * ((seed * 7 + step) % 5) for step in range(4)] for seed in range(8)]
    same = [[value + 0.001 * (-1) ** seed for value in run] for seed, run in enumerate(noise)]
    shifted = [[value + 0.1 for value in run] for run in noise]
    assert max_z_score(same, noise) < Z_LIMIT
    assert max_z_score(shifted, noise) > Z_LIMIT
    identical = [[2.0, 1.0]] * 4
    assert max_z_score(identical, identical) == 0.0


def test_accelerators_get_a_looser_limit():
    assert tolerance_for("cpu", 1e-5) == 1e-5
    assert tolerance_for("gpu", 1e-5) > 1e-5


def test_unmeasurable_differences_fail_and_stay_valid_json():
    from nnxlint.verify.worker import FixtureResult

    result = FixtureResult("f", [], "current", "none", 20, "cpu", 1e-5)
    difference = max_relative_difference([1.0, 2.0], [1.0, 2.0, 3.0])
    result.check("eval outputs", difference <= 1e-5, "shapes (2,) vs (3,)", difference, 1e-5)
    assert result.status == "fail"
    assert result.checks[0].value is None and "not comparable" in result.checks[0].detail


# -- manifests ----------------------------------------------------------------

def _write_fixture(directory: Path, manifest: str, programs=("before.py", "after.py")) -> Path:
    directory.mkdir(parents=True)
    (directory / "fixture.toml").write_text(manifest, encoding="utf-8")
    for name in programs:
        (directory / name).write_text("def train(steps):\n    return [0.0] * steps, [0.0]\n", encoding="utf-8")
    return directory


def test_manifest_defaults(tmp_path):
    fixture = load_fixture(_write_fixture(tmp_path / "f", 'rules = ["nnx102"]\ndropout = "none"\n'))
    assert (fixture.rules, fixture.fix, fixture.steps, fixture.before, fixture.tolerance) == (
        ("NNX102",), "safe", 20, "current", 1e-5)
    assert fixture.baseline_path.name == "before.py"


@pytest.mark.parametrize("manifest, message", [
    ('rules = []\ndropout = "none"\n', "non-empty list"),
    ('rules = ["NNX101"]\ndropout = "none"\nsteps = 5\n', ">= 20"),
    ('rules = ["NNX101"]\ndropout = "sometimes"\n', "`dropout` must be one of"),
    ('rules = ["NNX101"]\ndropout = "none"\nbefore = "fails"\n', "`expected_error`"),
    ('rules = ["NNX101"]\ndropout = "none"\nexpected_error = "TypeError"\n', "`expected_error`"),
    ('rules = ["NNX101"]\ndropout = "none"\nbefore = "silent-bug"\n', "reference.py is missing"),
    ('rules = ["NNX101"]\ndropout = "none"\nseed = 3\n', "unknown key(s) seed"),
])
def test_manifest_errors(tmp_path, manifest, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_fixture(_write_fixture(tmp_path / "f", manifest))


def test_discover_selects_by_substring_or_glob(tmp_path):
    for name in ("nnx101_a", "nnx102_b", "linen_c"):
        _write_fixture(tmp_path / name, 'rules = ["NNX101"]\ndropout = "none"\n')
    assert [f.name for f in discover(tmp_path, "nnx10")] == ["nnx101_a", "nnx102_b"]
    assert [f.name for f in discover(tmp_path, "*_c")] == ["linen_c"]


# -- the command, without running programs -------------------------------------

def test_fixtures_waiting_on_a_rule_are_skipped(tmp_path):
    _write_fixture(tmp_path / "future", 'rules = ["NNX999"]\ndropout = "none"\n')
    result = CliRunner().invoke(command.verify, [str(tmp_path), "--output-format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["skipped"] == 1
    assert "NNX999 not available" in report["fixtures"][0]["reason"]


def test_missing_verify_extra_is_a_clear_error(tmp_path, monkeypatch):
    _write_fixture(tmp_path / "f", 'rules = ["NNX102"]\ndropout = "none"\n')
    real_find_spec = command.importlib.util.find_spec
    monkeypatch.setattr(command.importlib.util, "find_spec",
                        lambda name, *args: None if name == "optax" else real_find_spec(name, *args))
    result = CliRunner().invoke(command.verify, [str(tmp_path)])
    assert result.exit_code == 2
    assert "needs optax: pip install 'nnxlint[verify]'" in result.output


def test_regenerate_rewrites_a_stale_after(tmp_path, run_cli):
    shutil.copytree(FIXTURES / "nnx102_mlp_sgd_missing_wrt", tmp_path / "fixture")
    after = tmp_path / "fixture" / "after.py"
    expected = after.read_text(encoding="utf-8")
    after.write_text("stale\n", encoding="utf-8")
    first = run_cli("verify", tmp_path, "--regenerate")
    assert first.returncode == 0 and "rewrote" in first.stdout, first.stderr
    assert after.read_text(encoding="utf-8") == expected
    assert "unchanged" in run_cli("verify", tmp_path, "--regenerate").stdout


# -- end to end ---------------------------------------------------------------

def _verify(run_cli, directory: Path, *extra) -> dict[str, dict]:
    jobs = str(min(8, max(2, os.cpu_count() or 2)))  # the corpus is most of the suite's time: use the machine
    completed = run_cli("verify", directory, "--output-format", "json", "-j", jobs, *extra)
    assert completed.returncode in (0, 1), completed.stderr
    return {result["fixture"]: result for result in json.loads(completed.stdout)["fixtures"]}


@pytest.mark.heavy
def test_the_corpus_passes(run_cli, tmp_path):
    report = tmp_path / "report.md"
    results = _verify(run_cli, FIXTURES, "--report", report)
    failed = {name: result for name, result in results.items() if result["status"] not in ("pass", "skipped")}
    assert not failed, json.dumps(failed, indent=1)[:4000]
    nnx_fixtures = [name for name in results if not name.startswith("linen_")]
    assert len(nnx_fixtures) >= 20
    assert all(results[name]["status"] == "pass" for name in nnx_fixtures)
    text = report.read_text(encoding="utf-8")
    assert "| fixture | rules | device | steps | max loss diff | status |" in text
    assert "- device: cpu" in text
    for name in nnx_fixtures:
        assert (tmp_path / "report_plots" / f"{name}.png").is_file()


def _mutant(root: Path, source: Path, name: str, file: str, *edits: tuple[str, str]) -> None:
    target = root / name
    shutil.copytree(source, target)
    path = target / file
    text = path.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, f"{old!r} must occur once in {path}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


@pytest.mark.heavy
def test_wrong_fixes_are_caught(run_cli, tmp_path):
    mlp = FIXTURES / "nnx102_103_legacy_mlp_adam"
    cheatsheet = FIXTURES / "nnx102_103_legacy_cheatsheet_dropout"
    cnn = FIXTURES / "nnx102_cnn_batchnorm_missing_wrt"
    _mutant(tmp_path, mlp, "layer_width_changed", "after.py", ("MLP(8, 32, 1", "MLP(8, 48, 1"))
    _mutant(tmp_path, mlp, "learning_rate_changed", "after.py", ("optax.adam(1e-2)", "optax.adam(1.2e-2)"))
    _mutant(tmp_path, cheatsheet, "batchnorm_dropped", "after.py",
            ("self.dropout(self.bn(self.linear(x)))", "self.dropout(self.linear(x))"))
    # trains the BatchNorm statistics too: the training losses stay equal, the eval outputs do not
    _mutant(tmp_path, cnn, "wrt_trains_batchstat", "after.py",
            ("wrt=nnx.Param)", "wrt=nnx.Any(nnx.Param, nnx.BatchStat))"),
            ("nnx.value_and_grad(loss_fn)(model)",
             "nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Any(nnx.Param, nnx.BatchStat)))(model)"))
    _mutant(tmp_path, HARNESS_FIXTURES / "linen_dropout_batchnorm_mlp", "dropout_rate_changed", "after.py",
            ("nnx.Dropout(0.2, rngs=rngs)", "nnx.Dropout(0.5, rngs=rngs)"))
    # before.py must really fail / really show the bug, or the fixture proves nothing
    _mutant(tmp_path, FIXTURES / "nnx101_mlp_layer_missing_rngs", "before_does_not_fail", "before.py",
            ("nnx.Linear(dhidden, dhidden)", "nnx.Linear(dhidden, dhidden, rngs=rngs)"))
    _mutant(tmp_path, FIXTURES / "nnx104_mlp_jax_jit_decorator", "before_has_no_bug", "before.py",
            ("@jax.jit", "@nnx.jit"))
    expected_failures = {
        "layer_width_changed": "losses",
        "learning_rate_changed": "losses",
        "batchnorm_dropped": "losses",
        "wrt_trains_batchstat": "eval outputs",
        "dropout_rate_changed": "dropout on: loss curves agree statistically",
        "before_does_not_fail": "runs",
        "before_has_no_bug": "before.py shows the bug",
    }
    results = _verify(run_cli, tmp_path)
    for name, check in expected_failures.items():
        result = results[name]
        assert result["status"] == "fail", (name, result)
        failing = {c["name"] for c in result["checks"] if not c["passed"]}
        assert check in failing, (name, failing)


def test_linen_program_starts_from_the_same_weights(run_cli):
    result = _verify(run_cli, HARNESS_FIXTURES)["linen_dropout_batchnorm_mlp"]
    assert result["status"] == "pass", result
    checks = {check["name"]: check for check in result["checks"]}
    assert checks["same starting weights"]["passed"]
    assert checks["losses (dropout off)"]["value"] <= 1e-5
    assert checks["dropout on: loss curves agree statistically"]["value"] < Z_LIMIT


def test_training_processes_ask_for_reproducible_gpu_reductions(monkeypatch):
    # an H100 run of one unchanged program differed from itself by 0.15 without it
    from nnxlint.verify.compare import worker_environment

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert worker_environment()["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=true"
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    assert worker_environment()["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_deterministic_ops=true"
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")  # the user's choice stands
    assert worker_environment()["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=false"
    assert worker_environment()["PYTHONWARNINGS"] == "ignore"
