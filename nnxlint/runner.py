"""Checking many files: per-file work, optionally in parallel processes."""

from __future__ import annotations

import difflib
import fnmatch
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from nnxlint.engine import Finding, check_source, source_error, unknown_noqa_codes
from nnxlint.registry import all_rules
from nnxlint.rule import Applicability
from nnxlint.textio import SourceError, read_source, write_atomic

PARALLEL_THRESHOLD = 32  # below this many files a process pool costs more than it saves


@dataclass(frozen=True)
class Job:
    """What every file of a run shares."""

    codes: frozenset[str]
    per_file_ignores: tuple[tuple[str, frozenset[str]], ...]
    root: str
    fix_level: Optional[Applicability] = None
    write: bool = False  # write fixes back (``--fix``); otherwise only diff them
    diff: bool = False


@dataclass
class FileOutcome:
    path: str
    findings: list[Finding] = field(default_factory=list)
    fixes_applied: int = 0
    diff: str = ""
    errors: list[str] = field(default_factory=list)  # rule crashes, unknown noqa codes: exit 2
    warnings: list[str] = field(default_factory=list)  # write failures, dropped fixes


def _ignored_here(path: str, job: Job) -> frozenset[str]:
    try:
        relative = Path(path).resolve().relative_to(job.root).as_posix()
    except ValueError:
        relative = Path(path).as_posix()
    ignored: set[str] = set()
    for pattern, codes in job.per_file_ignores:
        if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(Path(path).name, pattern):
            ignored |= codes
    return frozenset(ignored)


def check_file(path: str, job: Job) -> FileOutcome:
    outcome = FileOutcome(path)
    try:
        source = read_source(path)
    except SourceError as error:
        outcome.findings.append(source_error(path, str(error)))
        return outcome
    known = all_rules()
    codes = job.codes - _ignored_here(path, job)
    rules = [known[code] for code in sorted(codes)]
    result = check_source(source.text, path, rules, job.fix_level)
    if "noqa" in source.text:
        for line, code in unknown_noqa_codes(source.text, set(known)):
            outcome.errors.append(f"{path}:{line}: unknown rule code {code} in a noqa comment")
    outcome.findings = result.findings
    outcome.errors += [f"{path}: rule {crash.code} crashed: {crash.detail}" for crash in result.crashes]
    outcome.warnings += [f"{path}: fix dropped because its output did not parse: {description}"
                         for description in result.dropped_fixes]
    if result.fixed_text is not None:
        if job.diff:
            outcome.diff = "".join(difflib.unified_diff(
                source.text.splitlines(keepends=True), result.fixed_text.splitlines(keepends=True),
                fromfile=f"a/{path}", tofile=f"b/{path}"))
        if job.write:
            try:
                write_atomic(path, source.encode(result.fixed_text))
            except OSError as error:
                outcome.warnings.append(f"{path}: fixes not written: {error.strerror or error}")
                # the file is unchanged: report what it still contains
                result = check_source(source.text, path, rules)
                outcome.findings = result.findings
                return outcome
        outcome.fixes_applied = result.fixes_applied
    return outcome


def _check_one(arguments: tuple[str, Job]) -> FileOutcome:
    return check_file(*arguments)


def check_files(paths: Sequence[str], job: Job, jobs: Optional[int] = None) -> list[FileOutcome]:
    workers = jobs or os.cpu_count() or 1
    if workers <= 1 or len(paths) < PARALLEL_THRESHOLD:
        return [check_file(path, job) for path in paths]
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        chunk = max(1, min(64, len(paths) // (workers * 8)))
        return list(pool.map(_check_one, [(path, job) for path in paths], chunksize=chunk))
