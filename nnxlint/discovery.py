"""Which files to check: walk directories, skip what users never want linted."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from nnxlint.textio import resolved

SOURCE_SUFFIXES = (".py", ".pyi", ".ipynb")
# Directories that never hold the user's own sources (ruff's list, plus ours).
SKIPPED_DIRECTORIES = frozenset({
    ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".ipynb_checkpoints", ".mypy_cache",
    ".nox", ".pants.d", ".pyenv", ".pytest_cache", ".pytype", ".ruff_cache", ".nnxlint_cache", ".svn",
    ".tox", ".venv", ".vscode", "__pycache__", "__pypackages__", "_build", "buck-out", "build", "dist",
    "node_modules", "site-packages", "venv",
})


class _Patterns:
    """gitignore-style patterns anchored at a directory."""

    def __init__(self, base: Path, lines: Sequence[str]) -> None:
        import pathspec  # only when there is something to match

        self.base = base
        try:
            self.spec = pathspec.GitIgnoreSpec.from_lines(lines)
        except (ValueError, re.error):  # git skips a .gitignore line it cannot use: so do we
            self.spec = pathspec.GitIgnoreSpec.from_lines([line for line in lines if _valid_pattern(line)])

    def matches(self, path: Path, is_dir: bool) -> bool:
        try:
            relative = path.relative_to(self.base).as_posix()
        except ValueError:
            return False
        return self.spec.match_file(relative + "/" if is_dir else relative)


def _valid_pattern(line: str) -> bool:
    import pathspec

    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except (ValueError, re.error):
        return False
    return True


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a symlink loop
        return False


def _gitignore(directory: Path) -> Optional[_Patterns]:
    candidate = directory / ".gitignore"
    if os.path.isfile(candidate):  # os.path: False, not an exception, in an unreadable directory
        try:
            lines = candidate.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        return _Patterns(directory, lines)
    return None


def _git_root(directory: Path) -> Optional[Path]:
    for candidate in [directory, *directory.parents]:
        if os.path.exists(candidate / ".git"):
            return candidate
    return None


class FileFinder:
    """``warn`` hears of every directory that is skipped because it cannot be read."""

    def __init__(self, root: Path, exclude: Sequence[str], respect_gitignore: bool,
                 suffixes: Sequence[str] = SOURCE_SUFFIXES, warn: Callable[[str], None] = lambda message: None) -> None:
        self.exclude = _Patterns(root, exclude) if exclude else None
        self.respect_gitignore = respect_gitignore
        self.suffixes = tuple(suffixes)
        self.warn = warn

    def excluded(self, path: Path, is_dir: bool) -> bool:
        return self.exclude is not None and self.exclude.matches(resolved(path), is_dir)

    def _ancestor_ignores(self, directory: Path) -> list[_Patterns]:
        """The .gitignore files from the repository root (if any) down to ``directory``."""
        if not self.respect_gitignore:
            return []
        root = _git_root(directory) or directory
        chain = [root]
        for part in directory.relative_to(root).parts:
            chain.append(chain[-1] / part)
        return [patterns for patterns in map(_gitignore, chain) if patterns is not None]

    def files(self, paths: Sequence[str], force_exclude: bool = False) -> Iterator[Path]:
        seen: set[Path] = set()
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                for found in self._walk(path.resolve(), Path(raw)):
                    if found not in seen:
                        seen.add(found)
                        yield found
            elif not (force_exclude and self.excluded(path, False)) and path not in seen:
                seen.add(path)
                yield path  # a file named explicitly is always checked (unless --force-exclude)

    def _walk(self, top: Path, shown: Path) -> Iterator[Path]:
        ignores = self._ancestor_ignores(top)
        stack: list[tuple[Path, Path, list[_Patterns]]] = [(top, shown, ignores)]
        while stack:
            directory, shown_directory, active = stack.pop()
            try:
                with os.scandir(directory) as scan:
                    entries = sorted(scan, key=lambda entry: entry.name)
            except OSError as error:
                self.warn(f"{shown_directory}: cannot read directory ({error.strerror or error}); skipped")
                continue
            local = _gitignore(directory) if self.respect_gitignore and directory != top else None
            if local is not None:
                active = active + [local]
            subdirectories = []
            for entry in entries:
                path = directory / entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if is_dir and (entry.name in SKIPPED_DIRECTORIES or entry.name.endswith(".egg-info")
                               or os.path.exists(path / "pyvenv.cfg")):
                    continue
                if not is_dir and not entry.name.endswith(self.suffixes):
                    continue
                if self.excluded(path, is_dir) or any(p.matches(path, is_dir) for p in active):
                    continue
                if is_dir:
                    subdirectories.append((path, shown_directory / entry.name, active))
                elif _is_file(entry) or (entry.is_symlink() and not os.path.exists(path)):
                    yield shown_directory / entry.name  # a dangling or looping link: reported as NNX000
            stack.extend(reversed(subdirectories))
