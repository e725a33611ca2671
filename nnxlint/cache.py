"""Per-file result cache, ruff-style: ``.nnxlint_cache/<version>/`` at the config root.

One entry per (file, effective configuration): its name hashes the file's path,
the codes enabled for it and the fix level; it holds the hash of the content it
was computed for and the findings.  A changed file misses (content hash), a new
nnxlint misses (version directory, and a fingerprint of nnxlint's own modules, so
an edited rule in a development install is never served stale results), a changed
configuration misses (entry name).
Entries are written atomically, so concurrent runs at worst both compute and
store the same result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Optional, Sequence

from nnxlint import __version__
from nnxlint.textio import replace_file
from nnxlint.findings import FixSummary, Finding

CACHE_DIRECTORY = ".nnxlint_cache"


def content_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _code_fingerprint() -> str:
    """Names, sizes and modification times of nnxlint's modules and rules."""
    import nnxlint
    import nnxlint.rules

    stats = []
    for package in (nnxlint, nnxlint.rules):
        for directory in package.__path__:
            with os.scandir(directory) as entries:
                stats += [f"{entry.path}:{entry.stat().st_size}:{entry.stat().st_mtime_ns}"
                          for entry in entries if entry.name.endswith(".py")]
    return content_digest("\n".join(sorted(stats)).encode())


def _finding_from(data: dict, path: str) -> Finding:
    fix = data.pop("fix")
    return Finding(path=path, fix=FixSummary(**fix) if fix else None, **data)


class Cache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory / __version__
        self.code = _code_fingerprint()

    def _entry(self, path: str, codes: Sequence[str], fix_level: Optional[str]) -> Path:
        key = "\0".join([str(Path(path).resolve()), ",".join(sorted(codes)), fix_level or ""])
        return self.directory / f"{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}.json"

    def load(self, path: str, codes: Sequence[str], fix_level: Optional[str]) -> Optional[list[Finding]]:
        """The cached findings for the file as it is now, or None."""
        try:
            with open(path, "rb") as handle:
                digest = content_digest(handle.read())
            with open(self._entry(path, codes, fix_level), encoding="utf-8") as handle:
                entry = json.load(handle)
        except (OSError, ValueError):
            return None
        if entry.get("content") != digest or entry.get("code") != self.code:
            return None
        return [_finding_from(finding, path) for finding in entry["findings"]]

    def store(self, path: str, codes: Sequence[str], fix_level: Optional[str], digest: str,
              findings: Sequence[Finding]) -> None:
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
            replace_file(self._entry(path, codes, fix_level),
                         json.dumps({"content": digest, "code": self.code, "findings": records}).encode(),
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
