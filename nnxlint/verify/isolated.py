"""Running jobs on the user's code in a separate, isolated process, each with a timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from nnxlint.verify.compare import worker_environment

DEFAULT_TIMEOUT_S = 600
_POLL_S = 0.1

Job = dict[str, Any]


def run_isolated(jobs: Sequence[Job], timeout: float) -> list[dict[str, Any]]:
    """Run ``jobs`` in ``nnxlint.verify.user_worker``; one result (or error record) per job.

    One process runs the jobs one after the other (JAX starts once); a job that
    runs past ``timeout`` seconds, or kills the process, gets an error record and
    a fresh process takes the remaining jobs.  ``python -I`` keeps the current
    directory, ``PYTHONPATH`` and the user site off ``sys.path`` (the worker adds
    the user's project itself), ``-B`` writes no ``__pycache__`` into the user's
    tree, and the process starts in an empty directory.
    """
    results: list[dict[str, Any]] = []
    remaining = list(jobs)
    while remaining:
        finished, failure = _run_worker(remaining, timeout)
        results += finished
        remaining = remaining[len(finished):]
        if failure is not None and remaining:
            results.append(failure)
            remaining = remaining[1:]
    return results


def _run_worker(jobs: Sequence[Job], timeout: float) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The results of the jobs that finished, and an error record for the one that did not."""
    with tempfile.TemporaryDirectory(prefix="nnxlint-user-") as scratch:
        directory = Path(scratch)
        (directory / "jobs.json").write_text(json.dumps(list(jobs)), encoding="utf-8")
        results_path = directory / "results.jsonl"
        results_path.touch()
        (directory / "cwd").mkdir()
        with open(directory / "stderr.txt", "w+", encoding="utf-8", errors="replace") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-I", "-B", "-m", "nnxlint.verify.user_worker", str(directory / "jobs.json"),
                 str(results_path)],
                cwd=directory / "cwd", stdout=subprocess.DEVNULL, stderr=stderr,
                env=worker_environment())
            finished: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout
            while True:
                exited = process.poll() is not None
                written = results_path.read_text(encoding="utf-8").split("\n")[:-1]  # whole lines only
                complete = [json.loads(line) for line in written]
                if len(complete) > len(finished):
                    finished = complete
                    deadline = time.monotonic() + timeout  # each job gets the whole timeout
                if exited or len(finished) == len(jobs):
                    break
                if time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    return finished, {"status": "error", "error": f"timed out after {timeout:g} s (--timeout)"}
                time.sleep(_POLL_S)
            process.wait()
            if len(finished) < len(jobs):
                stderr.seek(0)
                return finished, {"status": "error", "error": f"the process running the user's code died (exit "
                                                              f"{process.returncode}): {stderr.read().strip()[-2000:]}"}
            return finished, None
