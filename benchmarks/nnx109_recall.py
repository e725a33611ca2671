"""NNX109's recall and precision against a runtime oracle.

Flax (>= 0.12.1) warns with a DeprecationWarning on every ``.value`` read or write
of an ``nnx.Variable``.  This script runs programs of a checkout with warnings
always on (``-W always``), records the source line of every such warning (the
first frame inside the checkout: the setter's own warning points into Flax) and
every line the programs executed, then runs ``nnxlint check --select NNX109`` on
the checkout and compares:

- recall: warning sites that NNX109 flags / all warning sites;
- precision: flagged lines that warned / flagged lines that ran (a flagged line
  that never ran says nothing either way and is listed apart).

    python benchmarks/nnx109_recall.py CHECKOUT --run main.py [--run other.py ...]
    python benchmarks/nnx109_recall.py CHECKOUT            # static side only: the findings

``--run`` paths are relative to the checkout, or absolute: a driver written outside
the checkout (building its models with tiny configs, calling ``pytest.main([...])`` on
its tests) counts the warnings of the checkout's code it calls.  Each program runs with
the checkout as its working directory and on ``sys.path``; one that runs past
``--timeout`` seconds is stopped (SIGTERM: what it ran so far still counts).
``--baseline "env PYTHONPATH=/tmp/old python -m nnxlint"`` scores another nnxlint (the tree
before a change) on the same runs.  ``--json`` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

_BOOTSTRAP = r"""
import atexit, json, os, runpy, signal, sys, warnings
root, out, script = os.path.realpath(sys.argv[1]), sys.argv[2], sys.argv[3]
sites, executed = set(), set()
original = warnings.warn

_known = {}

def _inside(frame):
    name = frame.f_code.co_filename
    inside = _known.get(name)
    if inside is None:
        inside = _known[name] = os.path.realpath(name).startswith(root + os.sep)
    return inside

def warn(message, category=None, stacklevel=1, source=None):
    if "'.value'" in str(message):
        frame = sys._getframe(1)
        while frame is not None and not _inside(frame):
            frame = frame.f_back
        if frame is not None:
            sites.add((os.path.realpath(frame.f_code.co_filename), frame.f_lineno))
    return original(message, category, stacklevel + 1, source)

def trace(frame, event, arg):
    if not _inside(frame):
        return None
    def line(frame, event, arg):
        if event == "line":
            executed.add((os.path.realpath(frame.f_code.co_filename), frame.f_lineno))
        return line
    return line

@atexit.register
def dump():
    sys.settrace(None)
    with open(out, "w") as handle:
        json.dump({"sites": sorted(sites), "executed": sorted(executed)}, handle)

warnings.warn = warn
warnings.simplefilter("always")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # stopped at the time limit: dump what ran
sys.argv = [script]
sys.path.insert(0, root)
sys.settrace(trace)
runpy.run_path(script, run_name="__main__")
"""


def run_oracle(checkout: Path, script: str, timeout: float) -> tuple[set, set, int]:
    """(warning sites, executed lines, exit status) of one program, sites and lines as
    (real path, line); a program that fails part-way still counts what it ran."""
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "oracle.json")
        process = subprocess.Popen(
            [sys.executable, "-W", "always", "-c", _BOOTSTRAP, str(checkout), out, str(checkout / script)],
            cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")})
        try:
            _, errors = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                _, errors = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:  # stuck in native code: nothing to count
                process.kill()
                _, errors = process.communicate()
        if not os.path.exists(out):
            raise SystemExit(f"{script} failed (exit {process.returncode}):\n{errors[-3000:]}")
        with open(out) as handle:
            data = json.load(handle)
    return {tuple(site) for site in data["sites"]}, {tuple(line) for line in data["executed"]}, process.returncode


def flagged(checkout: Path, nnxlint: list[str]) -> set:
    """(real path, line) of every NNX109 finding in the checkout."""
    completed = subprocess.run([*nnxlint, "check", str(checkout), "--select", "NNX109", "--output-format", "json",
                                "--no-cache", "--exit-zero"], capture_output=True, text=True, cwd=checkout)
    if completed.returncode != 0:
        raise SystemExit(f"nnxlint failed:\n{completed.stderr[-3000:]}")
    return {(os.path.realpath(finding["path"]), finding["line"]) for finding in json.loads(completed.stdout)}


def measure(checkout: Path, scripts: list[str], nnxlint: list[str], timeout: float = 600,
            baseline: Optional[list[str]] = None) -> dict:
    """The figures; ``baseline`` (another way to start nnxlint, e.g. an older tree on
    PYTHONPATH) is scored on the same runs, under ``"baseline"``."""
    checkout = Path(os.path.realpath(checkout))
    found = flagged(checkout, nnxlint)
    result: dict = {"checkout": str(checkout), "flagged": len(found)}
    if not scripts:
        return result
    sites: set = set()
    executed: set = set()
    failed = []
    for script in scripts:
        more_sites, more_lines, status = run_oracle(checkout, script, timeout)
        if status:
            failed.append(f"{script} (exit {status})")
        sites |= more_sites
        executed |= more_lines | more_sites
    ran = {site for site in found if site in executed}
    relative = lambda pairs: sorted(f"{os.path.relpath(path, checkout)}:{line}" for path, line in pairs)  # noqa: E731
    result.update({
        "warning_sites": len(sites), "found": len(sites & found),
        "recall": round(len(sites & found) / len(sites), 4) if sites else None,
        "flagged_and_ran": len(ran),
        "precision": round(len(ran & sites) / len(ran), 4) if ran else None,
        "missed": relative(sites - found), "false_alarms": relative(ran - sites),
        "flagged_not_run": relative(found - executed), "failed_programs": failed,
    })
    if baseline is not None:
        before = flagged(checkout, baseline)
        ran_before = {site for site in before if site in executed}
        result["baseline"] = {
            "flagged": len(before), "found": len(sites & before),
            "recall": round(len(sites & before) / len(sites), 4) if sites else None,
            "precision": round(len(ran_before & sites) / len(ran_before), 4) if ran_before else None,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("--run", action="append", default=[], help="a program of the checkout to run (repeatable)")
    parser.add_argument("--nnxlint", default=f"{sys.executable} -m nnxlint", help="how to start nnxlint")
    parser.add_argument("--baseline", help="another way to start nnxlint, scored on the same runs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each program may run (default 600)")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    result = measure(arguments.checkout, arguments.run, arguments.nnxlint.split(), arguments.timeout,
                     arguments.baseline.split() if arguments.baseline else None)
    if arguments.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['checkout']}: {result['flagged']} NNX109 findings")
    if arguments.run:
        print(f"warning sites: {result['warning_sites']}, flagged: {result['found']} (recall {result['recall']})")
        print(f"flagged lines that ran: {result['flagged_and_ran']} (precision {result['precision']})")
        if "baseline" in result:
            print(f"baseline: {result['baseline']}")
        for label in ("failed_programs", "missed", "false_alarms", "flagged_not_run"):
            for site in result[label]:
                print(f"  {label}: {site}")


if __name__ == "__main__":
    main()
