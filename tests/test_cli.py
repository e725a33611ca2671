"""The command line as users and CI see it: exit codes, formats, config, suppression,
odd files, and fixes that keep every other byte."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

OLD_OPTIMIZER = "from flax import nnx\nimport optax\n\noptimizer = nnx.Optimizer(model, optax.adam(1e-3))  # keep me\n"
FIXED_OPTIMIZER = ("from flax import nnx\nimport optax\n\n"
                   "optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)  # keep me\n")
LINEN = "import flax.linen as nn\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.py").write_text(LINEN)
    (tmp_path / "pkg" / "train.py").write_text(OLD_OPTIMIZER)
    (tmp_path / "pkg" / "plain.py").write_text("import os\nprint(os.getcwd())\n")
    return tmp_path


def test_version_and_module_entry_point(run_cli):
    result = run_cli("--version")
    assert result.returncode == 0 and "nnxlint" in result.stdout


def test_exit_codes(run_cli, project):
    assert run_cli("check", project / "pkg" / "plain.py").returncode == 0
    assert run_cli("check", project).returncode == 1
    assert run_cli("check", project, "--exit-zero").returncode == 0
    assert run_cli("check", project, "--select", "NNX999").returncode == 2
    assert run_cli("check", project / "missing.py").returncode == 2
    assert run_cli("check", project, "--output-format", "xml").returncode == 2


def test_text_output(run_cli, project):
    result = run_cli("check", "pkg", cwd=project)
    lines = result.stdout.splitlines()
    assert "pkg/model.py:1:1: NNX001 `flax.linen` imported" in lines[0]
    assert any(line.startswith("pkg/train.py:4:13: NNX102 [*] ") for line in lines)
    assert "Found 2 errors." in lines
    assert "[*] 1 fixable with the `--fix` option." in lines


def test_select_and_ignore(run_cli, project):
    only = run_cli("check", project, "--select", "NNX102", "--output-format", "json")
    assert {f["code"] for f in json.loads(only.stdout)} == {"NNX102"}
    ignored = run_cli("check", project, "--ignore", "NNX1", "--output-format", "json")
    assert {f["code"] for f in json.loads(ignored.stdout)} == {"NNX001"}


def test_json_output_fields(run_cli, project):
    findings = json.loads(run_cli("check", project, "--output-format", "json").stdout)
    by_code = {f["code"]: f for f in findings}
    fixable = by_code["NNX102"]
    assert (fixable["line"], fixable["column"], fixable["end_line"]) == (4, 13, 4)
    assert fixable["name"] == "optimizer-without-wrt" and "wrt" in fixable["message"]
    assert fixable["fix"]["applicability"] == "safe" and fixable["fix"]["description"]
    assert by_code["NNX001"]["fix"] is None


def test_github_output(run_cli, project):
    lines = run_cli("check", project, "--output-format", "github").stdout.splitlines()
    assert any(line.startswith("::error file=") and ",line=4,col=13," in line and "title=NNX102::" in line
               for line in lines)


def test_sarif_output(run_cli, project):
    document = json.loads(run_cli("check", project, "--output-format", "sarif").stdout)
    assert document["version"] == "2.1.0" and "$schema" in document
    run = document["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "nnxlint"
    assert {"NNX001", "NNX101", "NNX102", "NNX103"} <= {rule["id"] for rule in rules}
    assert all(rule["help"]["text"] and rule["shortDescription"]["text"] for rule in rules)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert result["message"]["text"]


def test_statistics(run_cli, project):
    result = run_cli("check", project, "--statistics")
    assert "1  NNX001" in result.stdout and "1  NNX102  [*]" in result.stdout


def test_statistics_mark_a_deferred_conversion(run_cli, tmp_path):
    """Plain ``check`` does not work out NNX002's conversion: ``[-]``, as the footer says."""
    (tmp_path / "model.py").write_text(
        "from flax import linen as nn\n\n\nclass Head(nn.Module):\n    @nn.compact\n"
        "    def __call__(self, x):\n        return nn.Dense(3)(x)\n")
    result = run_cli("check", tmp_path, "--statistics")
    assert "1  NNX002  [-] linen-module" in result.stdout
    assert "[-] 1 more may be fixable with `--fix --unsafe-fixes`" in result.stdout + result.stderr


def test_config_in_pyproject(run_cli, project):
    (project / "pyproject.toml").write_text(
        '[tool.nnxlint]\nignore = ["NNX001"]\nper-file-ignores = { "pkg/train.py" = ["NNX102"] }\n')
    assert run_cli("check", "pkg", cwd=project).returncode == 0
    # command-line flags win over the file
    assert run_cli("check", "pkg", "--select", "NNX001", cwd=project).returncode == 1


def test_config_exclude_and_gitignore(run_cli, project):
    import subprocess

    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "pyproject.toml").write_text('[tool.nnxlint]\nexclude = ["pkg/model.py"]\n')
    (project / ".gitignore").write_text("train.py\n")
    assert run_cli("check", "pkg", cwd=project).returncode == 0
    # a file named explicitly is always checked
    assert run_cli("check", "pkg/train.py", cwd=project).returncode == 1
    assert run_cli("check", "pkg/model.py", "--force-exclude", cwd=project).returncode == 0


def test_skips_virtualenvs_and_build_dirs(run_cli, tmp_path):
    for directory in (".venv/lib", "build", ".git", "env_like"):
        (tmp_path / directory).mkdir(parents=True)
        (tmp_path / directory / "bad.py").write_text(LINEN)
    (tmp_path / "env_like" / "pyvenv.cfg").write_text("home = /usr\n")
    assert run_cli("check", tmp_path).returncode == 0


@pytest.mark.parametrize("config, message", [
    ('[tool.nnxlint]\nselect = ["NNX9"]\n', "NNX9"),
    ('[tool.nnxlint]\nper-file-ignores = { "a.py" = ["XYZ1"] }\n', "XYZ1"),
    ('[tool.nnxlint]\nselekt = ["NNX1"]\n', "selekt"),
    ('[tool.nnxlint\n', "not valid TOML"),
])
def test_bad_config_exits_2(run_cli, project, config, message):
    (project / "pyproject.toml").write_text(config)
    result = run_cli("check", "pkg", cwd=project)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_noqa(run_cli, tmp_path):
    path = tmp_path / "a.py"
    path.write_text("import flax.linen as nn  # noqa: NNX001\nfrom flax import linen  # noqa\n"
                    "from flax.linen import Dense  # noqa: NNX102, NNX001\nimport flax.linen  # noqa: NNX102\n")
    findings = json.loads(run_cli("check", path, "--output-format", "json").stdout)
    assert [f["line"] for f in findings] == [4]


def test_unknown_code_in_noqa_exits_2(run_cli, tmp_path):
    path = tmp_path / "a.py"
    path.write_text("import flax.linen as nn  # noqa: NNX999\nx = 1  # noqa: E501\n")
    result = run_cli("check", path)
    assert result.returncode == 2 and "NNX999" in result.stderr and "E501" not in result.stderr


def test_skip_file(run_cli, tmp_path):
    path = tmp_path / "a.py"
    path.write_text("# nnxlint: skip-file\nimport flax.linen as nn\n")
    assert run_cli("check", path).returncode == 0


@pytest.mark.parametrize("content, expected", [
    (b"", 0),
    (b"\xef\xbb\xbfimport flax.linen as nn\n", 1),
    (b"import flax.linen as nn\r\nx = 1\r\n", 1),
    (b"# -*- coding: latin-1 -*-\nname = '\xe9'\nimport flax.linen as nn\n", 1),
])
def test_odd_but_valid_files(run_cli, tmp_path, content, expected):
    path = tmp_path / "a.py"
    path.write_bytes(content)
    result = run_cli("check", path)
    assert result.returncode == expected, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content, message", [
    (b"import flax.linen as nn\ndef f(:\n    pass\n", "syntax error"),
    (b"import flax.linen as nn\nname = '\xff\xfe'\n", "not valid utf-8"),
])
def test_bad_files_are_findings_and_the_run_goes_on(run_cli, tmp_path, content, message):
    (tmp_path / "bad.py").write_bytes(content)
    (tmp_path / "good.py").write_text(LINEN)
    findings = json.loads(run_cli("check", tmp_path, "--output-format", "json").stdout)
    bad = [f for f in findings if f["path"].endswith("bad.py")]
    assert [f["code"] for f in bad] == ["NNX000"] and message in bad[0]["message"]
    assert any(f["path"].endswith("good.py") and f["code"] == "NNX001" for f in findings)


def test_unreadable_file_is_a_finding(tmp_path):
    """A file that vanishes (or cannot be opened) between discovery and reading."""
    from nnxlint.runner import Job, check_file

    outcome = check_file(str(tmp_path / "vanished.py"), Job(frozenset({"NNX001"}), (), str(tmp_path)))
    assert [f.code for f in outcome.findings] == ["NNX000"]
    assert "cannot read file" in outcome.findings[0].message


def test_rules_and_explain(run_cli):
    listing = run_cli("rules").stdout.splitlines()
    assert any(line.startswith("NNX102  optimizer-without-wrt") and "safe" in line for line in listing)
    explained = run_cli("explain", "nnx102")
    assert explained.returncode == 0 and "## Why is this bad?" in explained.stdout
    assert "Missing required argument `wrt`" in explained.stdout
    assert run_cli("explain", "NNX999").returncode == 2


# -- fixing ---------------------------------------------------------------------------

def test_fix_writes_and_summarises(run_cli, project):
    result = run_cli("check", "pkg", "--fix", cwd=project)
    assert (project / "pkg" / "train.py").read_text() == FIXED_OPTIMIZER
    assert "Found 2 errors (1 fixed, 1 remaining)." in result.stdout
    assert result.returncode == 1  # the Linen import remains
    again = run_cli("check", "pkg", "--fix", cwd=project)
    assert "(0 fixed, 1 remaining)" in again.stdout
    assert (project / "pkg" / "train.py").read_text() == FIXED_OPTIMIZER


def test_diff_writes_nothing(run_cli, project):
    result = run_cli("check", "pkg/train.py", "--diff", cwd=project)
    assert result.returncode == 1
    assert "-optimizer = nnx.Optimizer(model, optax.adam(1e-3))  # keep me" in result.stdout
    assert "+optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)  # keep me" in result.stdout
    assert (project / "pkg" / "train.py").read_text() == OLD_OPTIMIZER
    assert run_cli("check", "pkg/model.py", "--diff", cwd=project).returncode == 0


def test_unsafe_fixes_need_the_flag(run_cli, tmp_path):
    path = tmp_path / "m.py"
    source = ("from flax import nnx\n\nclass M(nnx.Module):\n    def __init__(self):\n"
              "        self.linear = nnx.Linear(2, 3)\n")
    path.write_text(source)
    safe = run_cli("check", path, "--fix")
    assert path.read_text() == source and "--unsafe-fixes" in safe.stdout
    run_cli("check", path, "--fix", "--unsafe-fixes")
    assert "def __init__(self, *, rngs: nnx.Rngs):" in path.read_text()
    assert "nnx.Linear(2, 3, rngs=rngs)" in path.read_text()


@pytest.mark.parametrize("prefix, newline", [(b"", b"\r\n"), (b"\xef\xbb\xbf", b"\n"), (b"\xef\xbb\xbf", b"\r\n")])
def test_fix_keeps_bom_and_line_endings(run_cli, tmp_path, prefix, newline):
    path = tmp_path / "t.py"
    path.write_bytes(prefix + OLD_OPTIMIZER.encode().replace(b"\n", newline))
    assert run_cli("check", path, "--fix").returncode == 0
    assert path.read_bytes() == prefix + FIXED_OPTIMIZER.encode().replace(b"\n", newline)


def test_fix_adds_import_with_file_conventions(run_cli, tmp_path):
    path = tmp_path / "t.py"
    path.write_text('"""Doc."""\nimport optax\nfrom flax.nnx import Optimizer\n\nopt = Optimizer(m, optax.sgd(0.1))\n')
    run_cli("check", path, "--fix")
    assert path.read_text() == ('"""Doc."""\nimport optax\nfrom flax.nnx import Optimizer\nfrom flax import nnx\n\n'
                                "opt = Optimizer(m, optax.sgd(0.1), wrt=nnx.Param)\n")


@pytest.mark.skipif(os.name != "posix", reason="permissions")
def test_read_only_file_is_reported_not_written(run_cli, tmp_path):
    path = tmp_path / "t.py"
    path.write_text(OLD_OPTIMIZER)
    path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    result = run_cli("check", path, "--fix")
    assert path.read_text() == OLD_OPTIMIZER
    assert "read-only" in result.stderr and result.returncode == 1
    assert [p.name for p in tmp_path.iterdir()] == ["t.py"]  # no temporary left behind


def test_fix_keeps_file_mode(run_cli, tmp_path):
    path = tmp_path / "t.py"
    path.write_text(OLD_OPTIMIZER)
    path.chmod(0o640)
    run_cli("check", path, "--fix")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == FIXED_OPTIMIZER


def test_unparsable_file_is_left_untouched(run_cli, tmp_path):
    path = tmp_path / "t.py"
    content = OLD_OPTIMIZER + "def broken(:\n"
    path.write_text(content)
    result = run_cli("check", path, "--fix")
    assert path.read_text() == content and result.returncode == 1 and "NNX000" in result.stdout


def test_many_files_in_parallel_match_serial(run_cli, tmp_path):
    for index in range(80):
        (tmp_path / f"m{index}.py").write_text(LINEN if index % 2 else OLD_OPTIMIZER)
    serial = json.loads(run_cli("check", tmp_path, "-j", "1", "--output-format", "json").stdout)
    parallel = json.loads(run_cli("check", tmp_path, "-j", "2", "--output-format", "json").stdout)
    assert len(serial) == 80 and sorted(map(str, serial)) == sorted(map(str, parallel))


def test_check_path_imports_no_jax(tmp_path):
    """A pre-commit hook must stay light: the check path never imports jax/flax/optax."""
    import subprocess

    path = tmp_path / "t.py"
    path.write_text(OLD_OPTIMIZER + LINEN)
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "nnxlint", "check", str(path)],
                            capture_output=True, text=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "libcst" in imported and not imported & {"jax", "flax", "optax", "numpy"}


def test_rule_codes_are_known_without_importing_rules():
    from nnxlint.registry import all_rules, rule_codes

    assert rule_codes() == set(all_rules())


def test_cached_run_does_not_import_the_parser(tmp_path):
    """A warm re-run (the common pre-commit/CI case) never needs LibCST."""
    import subprocess

    path = tmp_path / "t.py"
    path.write_text(OLD_OPTIMIZER)
    command = [sys.executable, "-X", "importtime", "-m", "nnxlint", "check", str(path)]
    subprocess.run(command, capture_output=True, cwd=tmp_path)
    warm = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert "NNX102" in warm.stdout
    imported = {line.split("|")[-1].strip() for line in warm.stderr.splitlines() if line.startswith("import time:")}
    assert "libcst" not in imported and "nnxlint.engine" not in imported
