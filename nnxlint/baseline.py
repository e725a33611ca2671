"""The baseline ratchet: record today's findings, fail only on new ones.

An entry names a finding by what it is, not where it is: the file (relative to
the baseline file's directory), the rule code, a hash of the flagged source text
with its whitespace collapsed, and an occurrence counter among identical
(path, code, hash) findings in file order.  Lines inserted above a finding, code
moved within its file or re-indented into a class keep the entry; a second copy
of a known finding is new.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nnxlint.findings import Finding
from nnxlint.textio import SourceError, replace_file, write_atomic

FORMAT_VERSION = 1
SOURCE_PREVIEW = 80  # characters of the flagged text kept for reviewers (not part of the key)


class BaselineError(Exception):
    pass


@dataclass(frozen=True, order=True)
class Key:
    path: str
    code: str
    hash: str
    occurrence: int


@dataclass
class Comparison:
    new: list[Finding]  # not in the baseline: these fail the gate
    known: int  # findings the baseline covers
    stale: list[dict]  # baseline entries no finding matches any more (fixed)
    kept: list[dict]  # baseline entries still matched: what --update-baseline writes


def _flagged_text(finding: Finding, lines: Sequence[str]) -> str:
    span = list(lines[finding.line - 1:finding.end_line])
    if not span:
        return ""
    if len(span) == 1:
        span[0] = span[0][finding.column - 1:finding.end_column - 1]
    else:
        span[0] = span[0][finding.column - 1:]
        span[-1] = span[-1][:finding.end_column - 1]
    return " ".join(" ".join(span).split())


class _Sources:
    """The source lines findings point into, each file read once."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, object], list[str]] = {}

    def lines(self, finding: Finding) -> list[str]:
        from nnxlint.runner import load_document

        key = (finding.path, finding.cell)
        if key not in self._lines:
            try:
                document, _ = load_document(finding.path)
            except SourceError:
                self._lines[key] = []
            else:
                text = document.cell_source(finding.cell) if finding.cell is not None else document.python
                self._lines[key] = text.splitlines()
        return self._lines[key]


def _relative(path: str, base: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(path).resolve().as_posix()


def entries(findings: Sequence[Finding], baseline_file: Path) -> list[tuple[Finding, dict]]:
    """Each finding with its baseline entry."""
    base = baseline_file.resolve().parent
    sources = _Sources()
    seen: Counter = Counter()
    paired = []
    ordered = sorted(findings, key=lambda f: (f.path, f.cell or 0, f.line, f.column, f.code))
    for finding in ordered:
        text = _flagged_text(finding, sources.lines(finding))
        path = _relative(finding.path, base)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        occurrence = seen[(path, finding.code, digest)]
        seen[(path, finding.code, digest)] += 1
        paired.append((finding, {"path": path, "code": finding.code, "hash": digest,
                                 "occurrence": occurrence, "source": text[:SOURCE_PREVIEW]}))
    return paired


def _key(entry: dict) -> Key:
    return Key(entry["path"], entry["code"], entry["hash"], entry["occurrence"])


def read(baseline_file: Path) -> list[dict]:
    try:
        data = json.loads(baseline_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline file {baseline_file} does not exist; "
                            "create it with `nnxlint check --write-baseline FILE`") from None
    except OSError as error:
        raise BaselineError(f"cannot read baseline file {baseline_file}: {error.strerror}") from None
    except ValueError as error:
        raise BaselineError(f"baseline file {baseline_file} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("nnxlint-baseline") != FORMAT_VERSION:
        raise BaselineError(f"{baseline_file} is not an nnxlint baseline (version {FORMAT_VERSION})")
    try:
        records = data["findings"]
        for record in records:
            _key(record)
    except (KeyError, TypeError):
        raise BaselineError(f"baseline file {baseline_file} has a malformed entry") from None
    return records


def write(baseline_file: Path, records: Sequence[dict]) -> None:
    """Stable, sorted JSON: one entry per finding, in the order of their keys."""
    ordered = sorted(records, key=_key)
    document = {"nnxlint-baseline": FORMAT_VERSION, "findings": ordered}
    data = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        if baseline_file.exists():
            write_atomic(str(baseline_file), data)  # keeps the file's mode
        else:
            replace_file(baseline_file, data)
    except OSError as error:
        raise BaselineError(f"cannot write baseline file {baseline_file}: {error.strerror or error}") from None


def compare(findings: Sequence[Finding], baseline_file: Path, records: Sequence[dict]) -> Comparison:
    recorded = {_key(record): record for record in records}
    new_ids, kept = set(), []
    for finding, entry in entries(findings, baseline_file):
        record = recorded.pop(_key(entry), None)
        if record is None:
            new_ids.add(id(finding))
        else:
            kept.append(record)
    new = [finding for finding in findings if id(finding) in new_ids]  # in the run's order
    return Comparison(new, len(kept), sorted(recorded.values(), key=_key), kept)
