"""``nnxlint verify --against REV``: prove the user's own migration.

For every Linen module class that REV defines and the working tree has
converted (or each ``--example``), the isolated worker builds REV's Linen model
and the working tree's NNX model with the same constructor arguments, loads the
Linen initial variables into the NNX model (``nnxlint.transplant``) and compares
them (``nnxlint.verify.against_worker``).  Exit codes: 0 every class agrees; 1 a
class differs, including weights that do not even transplant (a changed layer
width: the path and both shapes are named); 2 a model cannot be built or the
revision cannot be read.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from nnxlint.verify.isolated import run_isolated
from nnxlint.verify.report import format_difference
from nnxlint.verify.sites import (
    Example, ModelSpec, Repository, SiteError, converted_classes, example_spec, init_site_spec,
)

Result = dict[str, Any]
STATUSES = ("pass", "fail", "error")


def plan(repository: Repository, paths: Sequence[Path], examples: Sequence[Example]) -> list[ModelSpec | Result]:
    """A spec per model to verify, or an error record where one cannot be set up."""
    planned: list[ModelSpec | Result] = []
    example_files = set()
    for example in examples:
        relative = repository.relative(Path(example.path))
        example_files.add(relative)
        planned.append(_guarded(relative, example.class_name or "?",
                                lambda: example_spec(_revision_source(repository, relative), relative, example)))
    if paths:
        files = repository.python_files([repository.relative(path) for path in paths])
    else:
        files = [] if examples else repository.changed_python_files()
    for relative in files:
        if relative in example_files or not (repository.root / relative).is_file():
            continue
        source = repository.source_at_revision(relative)
        if source is None:
            continue
        try:
            current = (repository.root / relative).read_text(encoding="utf-8")
            converted = converted_classes(source, current, relative)
        except (OSError, UnicodeDecodeError) as error:
            planned.append(_error(relative, "?", f"{relative} cannot be read: {error}"))
            continue
        except SiteError as error:
            planned.append(_error(relative, "?", str(error)))
            continue
        if converted:
            planned += _init_site_plan(source, relative, converted)
    return planned


def _init_site_plan(source: str, relative: str, converted: list[str]) -> list[ModelSpec | Result]:
    """The init site's model, and an error for each converted class it does not build
    (with per-class conversion, a file can convert some classes and keep others Linen)."""
    spec = _guarded(relative, ", ".join(converted), lambda: init_site_spec(source, relative))
    if isinstance(spec, dict):
        return [spec]
    planned: list[ModelSpec | Result] = [spec] if spec.class_name in converted else []
    built = {spec.class_name, *spec.covers} if planned else set()
    for name in converted:
        if name not in built:
            planned.append(_error(relative, name, f"`{name}` was converted, but the init site builds "
                                  f"`{spec.class_name}`{'' if planned else ', which stays Linen'}: pass "
                                  f"--example '{relative}:{name}(arguments)' --input-shape N,..."))
    return planned


def _revision_source(repository: Repository, relative: str) -> str:
    source = repository.source_at_revision(relative)
    if source is None:
        raise SiteError(f"{relative} does not exist at {repository.revision}")
    return source


def _guarded(relative: str, class_name: str, make) -> ModelSpec | Result:
    try:
        return make()
    except SiteError as error:
        return _error(relative, class_name, str(error))


def _error(relative: str, class_name: str, message: str) -> Result:
    return {"file": relative, "class_name": class_name, "status": "error", "error": message, "checks": []}


def verify_against(repository: Repository, planned: Sequence[ModelSpec | Result], *, steps: int,
                   learning_rate: float, tolerance: float, timeout: float) -> list[Result]:
    specs = [spec for spec in planned if isinstance(spec, ModelSpec)]
    with tempfile.TemporaryDirectory(prefix="nnxlint-revision-") as export:
        repository.export_python(Path(export))
        jobs = [{"task": "compare", "spec": spec.__dict__, "revision": repository.revision,
                 "linen_root": export, "nnx_root": str(repository.root), "roots": [export, str(repository.root)],
                 "steps": steps, "learning_rate": learning_rate, "tolerance": tolerance, "seed": 0}
                for spec in specs]
        outcomes = iter(run_isolated(jobs, timeout) if jobs else [])
    results = []
    for spec in planned:
        if isinstance(spec, dict):
            results.append(spec)
            continue
        result = next(outcomes)
        for key, value in (("file", spec.relative), ("class_name", spec.class_name), ("origin", spec.origin),
                           ("covers", spec.covers), ("checks", [])):
            result.setdefault(key, value)
        results.append(result)
    return results


# -- reporting ----------------------------------------------------------------------
def summary(results: Sequence[Result]) -> dict[str, int]:
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result["status"]] += 1
    return counts


def exit_code(results: Sequence[Result]) -> int:
    counts = summary(results)
    return 2 if counts["error"] else (1 if counts["fail"] else 0)


def title(result: Result) -> str:
    return f"{result['file']}:{result['class_name']}"


def _context(result: Result) -> str:
    """Where the model's arguments came from, the classes it covers, the device."""
    parts = [f"from {result['origin']}"] if result.get("origin") else []
    if result.get("covers"):
        parts.append(f"covers {', '.join(result['covers'])}")
    if result.get("device"):
        parts.append(result["device"])
    return "; ".join(parts)


def _rows(result: Result) -> list[tuple[str, str, str, str]]:
    return [(check["name"], format_difference(check["value"]), format_difference(check["limit"]),
             "pass" if check["passed"] else "FAIL") for check in result["checks"]]


def render_text(results: Sequence[Result], revision: str) -> str:
    lines = []
    for result in results:
        context = _context(result)
        lines.append(f"{title(result)}  ({context})" if context else title(result))
        if result["status"] == "error":
            lines += [f"  error: {result['error']}", ""]
            continue
        header = ("check", "max diff", "tolerance", "status")
        rows = [header] + _rows(result)
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        for check in result["checks"]:
            if not check["passed"]:
                lines.append(f"  {check['name']}: {check['detail']}")
        lines += [f"  => {result['status']}", ""]
    counts = summary(results)
    lines.append(f"{len(results)} class(es) against {revision}: "
                 + ", ".join(f"{count} {status}" for status, count in counts.items() if count))
    return "\n".join(lines)


def render_json(results: Sequence[Result], revision: str, commit: str) -> str:
    return json.dumps({"revision": revision, "commit": commit, "summary": summary(results),
                       "classes": list(results)}, indent=2)


def write_markdown(results: Sequence[Result], revision: str, path: Path) -> None:
    lines = [f"# nnxlint verify --against {revision}", "",
             "Linen (the revision) vs NNX (the working tree), from the same initial variables; "
             "difference = max relative difference over the outputs.", ""]
    for result in results:
        lines += [f"## {title(result)}", ""] + ([_context(result), ""] if _context(result) else [])
        if result["status"] == "error":
            lines += [f"error: {result['error']}", ""]
            continue
        lines += ["| check | max diff | tolerance | status |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in _rows(result)]
        lines += [""] + [f"- {check['name']}: {check['detail']}" for check in result["checks"] if not check["passed"]]
        lines += ["", f"**{result['status']}**", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_against(revision: str, paths: Sequence[Path], examples: Sequence[Example], *, start: Optional[Path] = None,
                steps: int, learning_rate: float, tolerance: float, timeout: float) -> tuple[Repository, list[Result]]:
    named = [Path(path) for path in paths] + [Path(example.path) for example in examples]
    if start is None:  # the repository of the files named, else of the current directory
        start = named[0] if named and named[0].is_dir() else (named[0].parent if named else Path.cwd())
    repository = Repository.open(start.resolve(), revision)
    planned = plan(repository, paths, examples)
    if not planned:
        where = ", ".join(str(path) for path in paths) or "the files changed since then"
        raise SiteError(f"no Linen module class of {revision} is converted in the working tree ({where})")
    return repository, verify_against(repository, planned, steps=steps, learning_rate=learning_rate,
                                      tolerance=tolerance, timeout=timeout)
