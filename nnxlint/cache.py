"""Per-file result cache, ruff-style: ``.nnxlint_cache/<version>/`` at the config root.

One entry per (file, effective configuration): its name hashes the file's path,
the codes enabled for it and the mode (the fix level, and whether fixes were worked
out: plain ``check`` leaves NNX002's conversion out); it holds the hash of the content it
was computed for and the findings.  A changed file misses (content hash), a new
nnxlint misses (version directory, and a fingerprint of nnxlint's own modules, so
an edited rule in a development install is never served stale results), a changed
configuration misses (entry name).
Entries are written atomically, so concurrent runs at worst both compute and
store the same result.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from nnxlint import __version__
from nnxlint.textio import read_regular, replace_file, resolved
from nnxlint.findings import FixSummary, Finding

CACHE_DIRECTORY = ".nnxlint_cache"


def content_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _code_fingerprint() -> str:
    """Names, sizes and modification times of nnxlint's modules and rules."""
    import nnxlint
    import nnxlint.rules

    return source_fingerprint([*nnxlint.__path__, *nnxlint.rules.__path__])


def source_fingerprint(directories: Sequence[str]) -> str:
    """Names, sizes and modification times of the ``.py`` files under ``directories``,
    subpackages included (the conversion lives in ``nnxlint/conversion/constructs/``)."""
    stats = []
    for top in directories:
        for directory, subdirectories, files in os.walk(top):
            subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    status = os.stat(path)
                    stats.append(f"{path}:{status.st_size}:{status.st_mtime_ns}")
    return content_digest("\n".join(sorted(stats)).encode())


_FINDING_FIELDS = {field.name: field for field in dataclasses.fields(Finding) if field.name != "path"}
_INTEGER_FIELDS = ("line", "column", "end_line", "end_column")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finding_from(data: object, path: str) -> Optional[Finding]:
    """The finding a cache record holds, or None when the record is not one we wrote."""
    if not isinstance(data, dict) or set(data) != set(_FINDING_FIELDS):
        return None
    if not all(isinstance(data[key], str) for key in ("code", "name", "message")):
        return None
    if not all(_is_int(data[key]) for key in _INTEGER_FIELDS) or not (data["cell"] is None or _is_int(data["cell"])):
        return None
    if not isinstance(data["fix_deferred"], bool):
        return None
    fix = data["fix"]
    if fix is not None:
        if (not isinstance(fix, dict) or set(fix) != {"applicability", "description"}
                or fix["applicability"] not in ("safe", "unsafe") or not isinstance(fix["description"], str)):
            return None
        fix = FixSummary(**fix)
    return Finding(path=path, **{**data, "fix": fix})


@functools.lru_cache(maxsize=4096)
def _resolved_text(path: str) -> str:
    """One realpath per file and run: the entry is looked up on load and again on store."""
    return str(resolved(path))


class Cache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory / __version__
        self.code = _code_fingerprint()

    def _entry(self, path: str, codes: Sequence[str], mode: Optional[str]) -> Path:
        key = "\0".join([_resolved_text(path), ",".join(sorted(codes)), mode or ""])
        return self.directory / f"{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}.json"

    def load(self, path: str, codes: Sequence[str], mode: Optional[str],
             dependencies_hold: Optional[Callable[[object], bool]] = None) -> Optional[list[Finding]]:
        """The cached findings for the file as it is now, or None; ``mode`` names what
        the findings were computed for (``Job.cache_mode``); ``dependencies_hold``
        says whether what they depended on in other files (the entry's ``depends``) is
        unchanged."""
        try:
            digest = content_digest(read_regular(path))
            entry = json.loads(read_regular(self._entry(path, codes, mode)))
        except (OSError, ValueError, RecursionError):  # regular files only: a FIFO must not block
            return None
        if not isinstance(entry, dict) or entry.get("content") != digest or entry.get("code") != self.code:
            return None
        if entry.get("depends") and (dependencies_hold is None or not dependencies_hold(entry["depends"])):
            return None
        records = entry.get("findings")
        findings = [_finding_from(record, path) for record in records] if isinstance(records, list) else [None]
        return None if None in findings else findings  # type: ignore[return-value]

    def store(self, path: str, codes: Sequence[str], mode: Optional[str], digest: str,
              findings: Sequence[Finding], depends: Optional[dict] = None) -> None:
        """Remember ``findings`` for the content with ``digest``; a cache that cannot be
        written only costs speed, so errors are ignored."""
        records = []
        for finding in findings:
            record = dataclasses.asdict(finding)
            del record["path"]  # the entry belongs to one path
            records.append(record)
        try:
            self._prepare()
            # a lost entry is only recomputed: no fsync per file
            replace_file(self._entry(path, codes, mode),
                         json.dumps({"content": digest, "code": self.code, "findings": records,
                                     "depends": depends}).encode(),
                         durable=False)
        except OSError:
            pass

    def _prepare(self) -> None:
        if self.directory.is_dir():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        root = self.directory.parent
        # like ruff: keep the cache out of git and out of backups
        for name, text in ((".gitignore", "# Automatically created by nnxlint.\n*\n"),
                           ("CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55\n")):
            if not (root / name).exists():
                replace_file(root / name, text.encode(), durable=False)
