"""``nnxlint verify``: run every fixture's before and after programs and compare their training."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Optional

import click

from nnxlint.verify import report
from nnxlint.verify.against_command import against_options, run_against_command
from nnxlint.verify.compare import worker_environment
from nnxlint.verify.manifest import Fixture, ManifestError, discover
from nnxlint.verify.regenerate import fixer_output, is_current, missing_rules, regenerate

VERIFY_PACKAGES = ("jax", "flax", "optax")
FIXTURE_TIMEOUT_S = 900
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def _fail(message: str) -> click.exceptions.Exit:
    click.echo(f"nnxlint: error: {message}", err=True)
    return click.exceptions.Exit(EXIT_ERROR)


def run_fixture(fixture: Fixture) -> dict[str, Any]:
    """Verify one fixture in a process of its own; returns its result record."""
    with tempfile.TemporaryDirectory(prefix="nnxlint-verify-") as scratch:
        result_path = Path(scratch) / "result.json"
        try:
            # run in the scratch directory: ``-m`` puts the working directory first on
            # sys.path, and a jax.py where the user stands must not be imported
            completed = subprocess.run(
                [sys.executable, "-m", "nnxlint.verify.worker", str(fixture.directory.resolve()), str(result_path)],
                capture_output=True, text=True, timeout=FIXTURE_TIMEOUT_S, cwd=scratch,
                env=worker_environment())
        except subprocess.TimeoutExpired:
            return {"fixture": fixture.name, "rules": list(fixture.rules), "status": "error",
                    "error": f"timed out after {FIXTURE_TIMEOUT_S} s"}
        if not result_path.exists():
            return {"fixture": fixture.name, "rules": list(fixture.rules), "status": "error",
                    "error": f"the verifying process died (exit {completed.returncode}): "
                             f"{completed.stderr.strip()[-2000:]}"}
        return json.loads(result_path.read_text(encoding="utf-8"))


def _inside(fixtures: list[Fixture], root: Path) -> list[Fixture]:
    """The fixtures whose directory really is in ``root``: a symlink to a directory
    elsewhere would run programs the user never pointed at."""
    base = root.resolve()
    kept = []
    for fixture in fixtures:
        if fixture.directory.resolve().is_relative_to(base):
            kept.append(fixture)
        else:
            click.echo(f"nnxlint: warning: {fixture.directory}: links outside {root}; skipped", err=True)
    return kept


def _skipped(fixture: Fixture, missing: list[str]) -> dict[str, Any]:
    return {"fixture": fixture.name, "rules": list(fixture.rules), "steps": fixture.steps, "status": "skipped",
            "reason": f"rule(s) {', '.join(missing)} not available in this nnxlint"}


def _stale_after(fixture: Fixture) -> bool:
    return fixture.after_path.is_file() and not is_current(fixture, fixer_output(fixture))


@click.command()
@click.argument("targets", nargs=-1, metavar="[FIXTURES_DIR | PATH...]", type=click.Path(path_type=Path))
@click.option("-k", "pattern", metavar="PATTERN", help="Only fixtures whose name contains PATTERN (or matches it as a glob).")
@click.option("--output-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a Markdown report (with loss-curve PNGs when matplotlib is installed).")
@click.option("-j", "--jobs", type=int, default=None, help="Fixtures verified at once (default: min(2, CPUs)).")
@click.option("--regenerate", "regenerate_after", is_flag=True,
              help="Rewrite every after.py from the fixer's current output instead of verifying.")
@against_options
def verify(targets: tuple[Path, ...], pattern: Optional[str], output_format: str, report_path: Optional[Path],
           jobs: Optional[int], regenerate_after: bool, **against: Any) -> None:
    """Prove the fixes: train each fixture's before and after programs and compare them.

    FIXTURES_DIR (default: ./fixtures) holds one directory per fixture with
    before.py, after.py (the fixer's output), an optional reference.py and a
    fixture.toml manifest; a fixture of several files has before/ and after/
    directories instead, and its manifest names the program to run.

    With --against REV, prove your own migration instead: each Linen class of
    git revision REV converted in the working tree (in PATHS, default: the
    files changed since REV) is compared with its NNX version.
    """
    if against["revision"] is not None:
        if pattern or jobs or regenerate_after:
            raise _fail("-k, -j and --regenerate apply to the fixture corpus, not to --against")
        run_against_command(targets, output_format, report_path, **against)
    for option in ("examples", "input_shapes", "input_dtypes"):
        if against[option]:
            raise _fail(f"--{option[:-1].replace('_', '-')} needs --against REV")
    if len(targets) > 1:
        raise _fail("one FIXTURES_DIR at most (files to compare with a git revision need --against REV)")
    fixtures_dir = targets[0] if targets else Path("fixtures")
    if not fixtures_dir.is_dir():
        raise _fail(f"{fixtures_dir}: no such directory")
    try:
        fixtures = discover(fixtures_dir, pattern)
    except ManifestError as error:
        raise _fail(str(error))
    fixtures = _inside(fixtures, fixtures_dir)
    if not fixtures:
        raise _fail(f"no fixtures in {fixtures_dir}" + (f" matching {pattern!r}" if pattern else ""))

    if regenerate_after:
        for fixture in fixtures:
            changed = regenerate(fixture)
            missing = missing_rules(fixture)
            note = f" (waits on {', '.join(missing)})" if missing else ""
            written = f"{fixture.after_path.parent}/" if fixture.program else fixture.after_path
            click.echo(f"{'rewrote' if changed else 'unchanged':<9} {written}{note}")
        return

    absent = [name for name in VERIFY_PACKAGES if importlib.util.find_spec(name) is None]
    if absent:
        raise _fail(f"`nnxlint verify` needs {', '.join(absent)}: pip install 'nnxlint[verify]'")
    results = _verify_all(fixtures, jobs or min(2, os.cpu_count() or 1), progress_to_stderr=output_format == "json")
    if output_format == "json":
        click.echo(report.render_json(results))
    else:
        click.echo("")
        click.echo(report.table(results))
        click.echo(report.summary_line(results))
    if report_path is not None:
        report.write_markdown(results, report_path)
        click.echo(f"report written to {report_path}", err=output_format == "json")
    counts = report.summary(results)
    raise click.exceptions.Exit(EXIT_FAILED if counts["fail"] or counts["error"] else EXIT_OK)


def _verify_all(fixtures: list[Fixture], jobs: int, progress_to_stderr: bool) -> list[dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    done = 0

    def finished(result: dict[str, Any], seconds: float) -> None:
        nonlocal done
        done += 1
        results[result["fixture"]] = result
        click.echo(report.progress_line(done, len(fixtures), result, seconds), err=progress_to_stderr)

    runnable = []
    for fixture in fixtures:
        missing = missing_rules(fixture)
        if missing:
            finished(_skipped(fixture, missing), 0.0)
            continue
        if _stale_after(fixture):
            click.echo(f"nnxlint: warning: {fixture.after_path} differs from the fixer's current output; "
                       "`nnxlint verify --regenerate` rewrites it", err=True)
        runnable.append(fixture)

    def timed(fixture: Fixture) -> tuple[dict[str, Any], float]:
        start = time.monotonic()
        return run_fixture(fixture), time.monotonic() - start

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for future in as_completed([pool.submit(timed, fixture) for fixture in runnable]):
            finished(*future.result())
    return [results[fixture.name] for fixture in fixtures]
