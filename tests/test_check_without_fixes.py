"""Plain ``nnxlint check`` leaves NNX002's conversion to the runs that fix or show fixes:
the same findings, identified the same way (baseline), never served across modes (cache)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nnxlint.cli import main
from nnxlint.conversion import linen_users, project_files
from nnxlint.engine import check_source
from nnxlint.rules.nnx002_linen_module import LinenModule

MODELS = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class MLP(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)


class Empty(nn.Module):
    pass


def predict(x):
    model = MLP(hidden=8)
    variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
    return model.apply(variables, x)
'''
TRAIN = "from models import MLP\n\nmodel = MLP(hidden=4)\n"
DEFERRED = "(`--unsafe-fixes` shows whether it converts)"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "train.py").write_text(TRAIN)
    monkeypatch.chdir(tmp_path)  # the cache lives here
    return tmp_path


def run_cli(*arguments):
    """``nnxlint`` in this process (click 8.2+: stdout and stderr apart)."""
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def _refuse(*arguments, **keywords):
    raise AssertionError("the conversion ran")


def test_without_describe_fixes_the_conversion_is_not_called(monkeypatch):
    monkeypatch.setattr(linen_users, "convert_with_users", _refuse)
    monkeypatch.setattr(project_files, "importers", _refuse)
    plain = check_source(MODELS, "models.py", [LinenModule], describe_fixes=False)
    assert not plain.crashes
    assert [(f.message.split("`")[1], f.fix, f.fix_deferred) for f in plain.findings] == [
        ("MLP", None, True), ("Empty", None, True)]
    assert all(f.message.endswith(DEFERRED) for f in plain.findings)
    # the same patch reaches the rule when fixes are described: the check above can fail
    described = check_source(MODELS, "models.py", [LinenModule])
    assert all("the conversion failed (AssertionError: the conversion ran)" in f.message for f in described.findings)


def test_a_fix_run_describes_fixes_whatever_it_is_asked():
    fixed = check_source(MODELS, "models.py", [LinenModule], "unsafe", describe_fixes=False)
    assert fixed.fixed_text is not None and "class MLP(nnx.Module):" in fixed.fixed_text


def _json(project, *options):
    result = run_cli("check", "--no-cache", "--output-format", "json", *options, project)
    return {(f["code"], f["line"]): f for f in json.loads(result.stdout)}


def test_plain_check_and_unsafe_fixes_report_the_same_findings(project):
    plain, described = _json(project), _json(project, "--unsafe-fixes")
    assert plain.keys() == described.keys()
    for key, finding in plain.items():
        other = described[key]
        assert {**finding, "message": "", "fix": None} == {**other, "message": "", "fix": None}
        if key[0] != "NNX002":
            assert finding == other
    mlp, empty = plain[("NNX002", 6)], plain[("NNX002", 15)]
    assert mlp["message"].endswith(DEFERRED) and mlp["fix"] is None and empty["fix"] is None
    assert described[("NNX002", 6)]["fix"]["applicability"] == "unsafe"
    assert "(no fix: " in described[("NNX002", 15)]["message"]


def test_the_summary_says_how_to_get_the_fixes(project):
    plain = run_cli("check", "--no-cache", project)
    assert "[-] 2 more may be fixable with `--fix --unsafe-fixes` (`--unsafe-fixes` shows which" in plain.stdout
    described = run_cli("check", "--no-cache", "--unsafe-fixes", project)
    assert "[-] 1 more fixable with `--fix --unsafe-fixes`." in described.stdout
    assert "may be fixable" not in described.stdout and DEFERRED not in described.stdout


@pytest.mark.parametrize("written_with, checked_with", [((), ("--unsafe-fixes",)), (("--unsafe-fixes",), ())])
def test_a_baseline_matches_across_modes(project, written_with, checked_with):
    baseline = project / "baseline.json"
    written = run_cli("check", "--no-cache", *written_with, "--write-baseline", baseline, project)
    assert written.exit_code == 0, written.stderr
    gate = run_cli("check", "--no-cache", *checked_with, "--baseline", baseline, project)
    assert gate.exit_code == 0, gate.stdout + gate.stderr
    assert "stale" not in gate.stderr and "finding(s) already in baseline" in gate.stderr


def test_the_cache_serves_each_mode_its_own_result(project):
    def nnx002_messages(*options):
        result = run_cli("check", "--select", "NNX002", "--output-format", "json", *options, project)
        return [finding["message"] for finding in json.loads(result.stdout)]

    plain = nnx002_messages()
    described = nnx002_messages("--unsafe-fixes")
    assert all(message.endswith(DEFERRED) for message in plain)
    assert not any(DEFERRED in message for message in described) and "(no fix: " in described[1]
    assert list((project / ".nnxlint_cache").rglob("*.json"))  # both runs stored their results
    assert nnx002_messages() == plain and nnx002_messages("--unsafe-fixes") == described
