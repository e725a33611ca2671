"""Hostile trees, configurations, caches and options: a clear message or an NNX000
finding, the rest of the run goes on, never a traceback (issue 13)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnxlint.cli import main

LINEN = "import flax.linen as nn\n"


def run(*arguments, cwd=None):
    """``nnxlint`` in this process (fast); the result has exit_code, stdout, stderr."""
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        return CliRunner().invoke(main, [str(argument) for argument in arguments], catch_exceptions=False)
    finally:
        os.chdir(old)


def assert_no_traceback(result):
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "model.py").write_text(LINEN)
    return tmp_path


# -- odd file trees ----------------------------------------------------------

@pytest.mark.parametrize("cache", [["--no-cache"], []])
@pytest.mark.parametrize("command", ["check", "report"])
def test_symlink_loop_in_a_directory_is_reported_and_the_rest_checked(tree, cache, command):
    os.symlink("loop.py", tree / "loop.py")
    if command == "report":
        result = run("report", tree, *cache)
        assert_no_traceback(result)
        assert result.exit_code in (0, 1)
        return
    result = run("check", tree, *cache, "--output-format", "json")
    assert_no_traceback(result)
    findings = {(Path(f["path"]).name, f["code"]) for f in json.loads(result.stdout)}
    assert ("model.py", "NNX001") in findings
    assert ("loop.py", "NNX000") in findings
    assert result.exit_code == 1


def test_symlink_loop_named_first_on_the_command_line(tree):
    os.symlink("loop.py", tree / "loop.py")
    result = run("check", tree / "loop.py", tree / "model.py", "--no-cache", "--output-format", "json")
    assert_no_traceback(result)
    findings = {(Path(f["path"]).name, f["code"]) for f in json.loads(result.stdout)}
    assert findings == {("loop.py", "NNX000"), ("model.py", "NNX001")}


def test_dangling_symlink_named_on_the_command_line_is_nnx000(tree):
    os.symlink("gone.py", tree / "dangling.py")
    result = run("check", tree / "dangling.py", tree / "model.py", "--no-cache", "--output-format", "json")
    assert_no_traceback(result)
    findings = json.loads(result.stdout)
    assert {(Path(f["path"]).name, f["code"]) for f in findings} == {("dangling.py", "NNX000"),
                                                                     ("model.py", "NNX001")}
    assert result.exit_code == 1


def test_a_path_that_does_not_exist_is_still_a_usage_error(tree):
    result = run("check", tree / "missing.py")
    assert result.exit_code == 2 and "no such file" in result.stderr


def _as_unprivileged(*arguments, cwd):
    """Run nnxlint where file permissions apply (root ignores them: drop its override)."""
    import subprocess

    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run([*prefix, sys.executable, "-m", "nnxlint", *map(str, arguments)], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=60)


def test_unreadable_subdirectory_is_skipped_with_a_message(tree):
    (tree / "secret").mkdir()
    (tree / "secret" / "inner.py").write_text(LINEN)
    os.chmod(tree / "secret", 0o000)
    try:
        result = _as_unprivileged("check", ".", "--no-cache", "--output-format", "json", cwd=tree)
    finally:
        os.chmod(tree / "secret", 0o755)
    assert "Traceback" not in result.stderr, result.stderr
    assert "secret" in result.stderr and "cannot read directory" in result.stderr
    assert [f["code"] for f in json.loads(result.stdout)] == ["NNX001"]


def test_unreadable_file_named_on_the_command_line_is_nnx000(tree):
    (tree / "locked.py").write_text(LINEN)
    os.chmod(tree / "locked.py", 0o000)
    result = _as_unprivileged("check", "locked.py", "model.py", "--no-cache", "--output-format", "json",
                              cwd=tree)
    assert "Traceback" not in result.stderr, result.stderr
    found = {(f["path"], f["code"]) for f in json.loads(result.stdout)}
    assert found == {("locked.py", "NNX000"), ("model.py", "NNX001")}


# -- configuration -------------------------------------------------------------

@pytest.mark.parametrize("text", ["tool = 5\n", "[tool]\nruff = 3\n", "[project]\nname = 'x'\n"])
def test_pyproject_without_an_nnxlint_table_breaks_nothing(tree, text):
    (tree / "pyproject.toml").write_text(text)
    result = run("check", tree, "--no-cache")
    assert_no_traceback(result)
    assert result.exit_code == 1 and "NNX001" in result.stdout


@pytest.mark.parametrize("text, key", [
    ("[tool]\nnnxlint = 5\n", "tool.nnxlint"),
    ("[tool.nnxlint]\ncache-dir = 5\n", "cache-dir"),
    ("[tool.nnxlint]\ncache-dir = ['a']\n", "cache-dir"),
    ("[tool.nnxlint]\nexclude = ['src/', '!']\n", "exclude"),
    ("[tool.nnxlint]\nextend-exclude = ['[z-a]']\n", "extend-exclude"),
    ("[tool.nnxlint]\nper-file-ignores = { 'x' = 5 }\n", "per-file-ignores"),
])
def test_config_error_is_one_line_naming_file_and_key(tree, text, key):
    (tree / "pyproject.toml").write_text(text)
    result = run("check", tree, "--no-cache")
    assert_no_traceback(result)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pyproject.toml" in lines[0] and key in lines[0], result.stderr


def test_non_utf8_pyproject_is_a_config_error(tree):
    (tree / "pyproject.toml").write_bytes(b"[tool.nnxlint]\nignore = ['\xff']\n")
    result = run("check", tree, "--no-cache")
    assert_no_traceback(result)
    assert result.exit_code == 2 and "pyproject.toml" in result.stderr and "UTF-8" in result.stderr


@pytest.mark.parametrize("option", [["-j", "0"], ["-j", "-3"], ["--jobs", "-1"]])
def test_invalid_jobs_is_a_usage_error(tree, option):
    result = run("check", tree, "--no-cache", *option)
    assert result.exit_code == 2 and "jobs" in result.stderr


# -- the cache -------------------------------------------------------------------

def _entries(tree):
    return list((tree / ".nnxlint_cache").rglob("*.json"))


def _prime(tree):
    (tree / "pyproject.toml").write_text("[tool.nnxlint]\n")
    first = run("check", tree)
    assert first.exit_code == 1
    (entry,) = _entries(tree)
    return entry, json.loads(entry.read_text())


@pytest.mark.parametrize("mangle", [
    lambda entry: None,
    lambda entry: [],
    lambda entry: 5,
    lambda entry: {**entry, "findings": 5},
    lambda entry: {**entry, "findings": [{"code": "NNX001"}]},
    lambda entry: {**entry, "findings": [{**entry["findings"][0], "line": "one"}]},
    lambda entry: {**entry, "findings": [{**entry["findings"][0], "fix": {"bogus": 1}}]},
    lambda entry: {**entry, "findings": [{**entry["findings"][0], "extra": 1}]},
])
def test_a_malformed_cache_entry_is_a_miss(tree, mangle):
    entry, content = _prime(tree)
    entry.write_text(json.dumps(mangle(content)))
    result = run("check", tree)
    assert_no_traceback(result)
    assert result.exit_code == 1 and "model.py:1:1: NNX001" in result.stdout


def test_a_fifo_at_a_cache_entry_is_a_miss_not_a_hang(tree):
    entry, _ = _prime(tree)
    entry.unlink()
    os.mkfifo(entry)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("result", run("check", tree)), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the reader so the test process can end
        with open(entry, "wb"):
            pass
        pytest.fail("the run hangs on a FIFO in the cache")
    assert outcome["result"].exit_code == 1 and "NNX001" in outcome["result"].stdout


# -- verify ------------------------------------------------------------------------

def test_verify_workers_do_not_import_from_the_working_directory(tmp_path, monkeypatch):
    import subprocess as subprocess_module

    from nnxlint.verify import command
    from nnxlint.verify.manifest import discover

    fixture = discover(Path(__file__).resolve().parent.parent / "fixtures")[0]
    seen = {}

    def fake_run(arguments, **options):
        seen.update(options, arguments=arguments)
        raise subprocess_module.TimeoutExpired(arguments, 1)

    monkeypatch.chdir(tmp_path)
    (tmp_path / "jax.py").write_text("raise SystemExit('imported from the working directory')\n")
    monkeypatch.setattr(command.subprocess, "run", fake_run)
    command.run_fixture(fixture)
    assert seen["cwd"] != str(tmp_path) and Path(seen["cwd"]).resolve() != tmp_path.resolve()
    assert Path(seen["arguments"][3]).is_absolute()


def test_verify_skips_a_fixture_linked_from_outside_dir(tmp_path):
    from nnxlint.verify import command
    from nnxlint.verify.manifest import discover

    corpus = Path(__file__).resolve().parent.parent / "fixtures"
    inside = tmp_path / "mine"
    inside.mkdir()
    name = sorted(path.parent.name for path in corpus.glob("*/fixture.toml"))[0]
    os.symlink(corpus / name, inside / "elsewhere")
    assert command._inside(discover(inside), inside) == []


def test_syntax_warnings_of_user_code_are_not_printed(tree):
    import subprocess

    (tree / "odd.py").write_text("x = 1(2)\ny = 'a' is 'a'\nz = '\\d'\n")
    result = subprocess.run([sys.executable, "-m", "nnxlint", "check", "odd.py", "--no-cache"], cwd=tree,
                            capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                 if k != "PYTHONWARNINGS"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
