"""Runs that are killed, run twice at once, or meet a file that takes the parser down:
every file unchanged or completely fixed, no temporary file, no process left behind
(issue 13)."""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnxlint import runner
from nnxlint.registry import all_rules
from nnxlint.runner import Job, check_files

OLD = "from flax import nnx\nimport optax\n\nopt = nnx.Optimizer(model, optax.adam(1e-3))\n"
FIXED = "from flax import nnx\nimport optax\n\nopt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)\n"
ALL = frozenset(all_rules())


def job(tmp_path, **changes):
    return Job(ALL, (), str(tmp_path), **changes)


def test_a_native_abort_costs_only_its_own_file(tmp_path, monkeypatch):
    paths = []
    for number in range(40):  # enough for the parallel path too
        path = tmp_path / f"m{number}.py"
        path.write_text("import flax.linen as nn\n")
        paths.append(str(path))
    fatal = str(tmp_path / "m7.py")
    check_file = runner.check_file

    def aborting(path, job):  # what LibCST's native parser does on an allocation failure
        if path == fatal:
            faulthandler.disable()  # the abort is the test: no traceback dump on the run's stderr
            os.abort()
        return check_file(path, job)

    monkeypatch.setattr(runner, "check_file", aborting)
    for jobs in (1, 2):
        outcomes = check_files(paths, job(tmp_path), jobs)
        assert [f.code for f in outcomes[7].findings] == ["NNX000"]
        assert "crashed the parser" in outcomes[7].findings[0].message and "SIGABRT" in outcomes[7].findings[0].message
        assert all([f.code for f in outcome.findings] == ["NNX001"] for i, outcome in enumerate(outcomes) if i != 7)


def test_a_file_above_the_size_limit_is_nnx000(tmp_path):
    path = tmp_path / "big.py"
    path.write_text("import flax.linen as nn\n" + "x = 1\n" * 1000)
    (outcome,) = check_files([str(path)], job(tmp_path, max_file_size=1000))
    (finding,) = outcome.findings
    assert finding.code == "NNX000" and "too large" in finding.message


def test_max_file_size_is_configurable(tmp_path, run_cli):
    (tmp_path / "pyproject.toml").write_text("[tool.nnxlint]\nmax-file-size = 100\n")
    (tmp_path / "big.py").write_text("import flax.linen as nn\n" + "x = 1\n" * 100)
    result = run_cli("check", "big.py", "--no-cache", cwd=tmp_path)
    assert "NNX000" in result.stdout and "too large" in result.stdout


def test_fix_writes_through_a_symlink_and_keeps_hard_links(tmp_path):
    target = tmp_path / "real.py"
    target.write_text(OLD)
    link = tmp_path / "link.py"
    link.symlink_to("real.py")
    check_files([str(link)], job(tmp_path, fix_level="safe", write=True))
    assert link.is_symlink() and target.read_text() == FIXED
    other = tmp_path / "other.py"
    other.write_text(OLD)
    twin = tmp_path / "twin.py"
    os.link(other, twin)
    check_files([str(other)], job(tmp_path, fix_level="safe", write=True))
    assert twin.read_text() == FIXED and os.stat(twin).st_ino == os.stat(other).st_ino


def _tree(root: Path, count: int) -> list[Path]:
    paths = []
    for number in range(count):
        path = root / f"pkg{number % 4}" / f"m{number}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(OLD + f"value = {number}\n" + "y = 1\n" * 200)
        paths.append(path)
    return paths


def _assert_whole(root: Path, paths: list[Path]) -> None:
    for path in paths:
        number = int(path.stem[1:])
        assert path.read_text() in (OLD + f"value = {number}\n" + "y = 1\n" * 200,
                                    FIXED + f"value = {number}\n" + "y = 1\n" * 200), path
    assert not [p for p in root.rglob(".nnxlint-*") if ".nnxlint_cache" not in p.parts]


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _nnxlint(root: Path, *arguments) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nnxlint", "check", ".", "--fix", "--no-cache", "-j", "2",
                             *arguments], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_main_process_leaves_whole_files_and_no_process(tmp_path):
    rng = random.Random(13)
    for attempt in range(3):
        root = tmp_path / f"run{attempt}"
        root.mkdir()
        paths = _tree(root, 60)
        process = _nnxlint(root)
        time.sleep(rng.uniform(0.3, 2.0))
        workers = _children_of(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
            time.sleep(0.05)
        alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
                 and "Z" not in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:1])]
        assert not alive, f"workers outlived the killed run: {alive}"
        snapshot = {path: path.read_text() for path in paths}
        time.sleep(0.5)  # nobody writes after the run is gone
        assert {path: path.read_text() for path in paths} == snapshot
        _assert_whole(root, paths)


def test_two_concurrent_fix_runs_on_one_tree(tmp_path):
    paths = _tree(tmp_path, 48)
    first, second = _nnxlint(tmp_path), _nnxlint(tmp_path)
    assert first.wait(120) in (0, 1) and second.wait(120) in (0, 1)
    _assert_whole(tmp_path, paths)
    assert all(path.read_text().startswith(FIXED) for path in paths)


def test_without_fork_the_plain_pool_still_checks_every_file(tmp_path, monkeypatch):
    from nnxlint import workers

    paths = []
    for number in range(runner.PARALLEL_THRESHOLD):
        path = tmp_path / f"m{number}.py"
        path.write_text("import flax.linen as nn\n")
        paths.append(str(path))
    monkeypatch.setattr(workers, "can_isolate", lambda: False)
    outcomes = check_files(paths, job(tmp_path), jobs=2)
    assert all([f.code for f in outcome.findings] == ["NNX001"] for outcome in outcomes)
