"""``[tool.nnxlint]`` in the nearest pyproject.toml, merged with the command line."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from nnxlint.registry import UnknownCode, expand

KNOWN_KEYS = {"select", "extend-select", "ignore", "exclude", "extend-exclude",
              "per-file-ignores", "respect-gitignore", "cache-dir", "max-file-size"}


class ConfigError(Exception):
    pass


@dataclass
class Settings:
    root: Path  # the directory relative globs are resolved against
    source: Optional[Path] = None  # the config file, when there is one
    select: Sequence[str] = ("ALL",)
    extend_select: Sequence[str] = ()
    ignore: Sequence[str] = ()
    exclude: Sequence[str] = ()
    extend_exclude: Sequence[str] = ()
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    respect_gitignore: bool = True
    cache_dir: Optional[str] = None
    max_file_size: Optional[int] = None  # bytes; None: the default

    def apply_command_line(self, select: Sequence[str], extend_select: Sequence[str],
                           ignore: Sequence[str]) -> None:
        """Command-line flags win: ``--select`` replaces the configured selection,
        and the configured ``ignore`` no longer applies to it (ruff's semantics)."""
        if select:
            self.select, self.extend_select, self.ignore = select, (), ()
        self.extend_select = [*self.extend_select, *extend_select]
        self.ignore = [*self.ignore, *ignore]

    def enabled_codes(self) -> set[str]:
        where = f"{self.source}" if self.source else "the command line"
        try:
            codes = expand(self.select, f"select ({where})") | expand(self.extend_select, f"extend-select ({where})")
            return codes - expand(self.ignore, f"ignore ({where})")
        except UnknownCode as error:
            raise ConfigError(str(error)) from None

    def per_file_ignore_codes(self) -> list[tuple[str, set[str]]]:
        where = f"per-file-ignores ({self.source or 'the command line'})"
        try:
            return [(pattern, expand(codes, where)) for pattern, codes in self.per_file_ignores.items()]
        except UnknownCode as error:
            raise ConfigError(str(error)) from None


def _string_list(table: dict[str, Any], key: str, where: Path, shown_key: Optional[str] = None) -> list[str]:
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: `{shown_key or key}` must be a list of strings")
    return value


def _patterns(table: dict[str, Any], key: str, where: Path) -> list[str]:
    """A list of gitignore-style patterns, each checked now rather than mid-run."""
    patterns = _string_list(table, key, where)
    if patterns:
        import pathspec

        for pattern in patterns:
            try:
                pathspec.GitIgnoreSpec.from_lines([pattern])
            except (ValueError, re.error) as error:
                raise ConfigError(f"{where}: `{key}`: invalid pattern {pattern!r} ({error})") from None
    return patterns


def _load_table(path: Path) -> Optional[dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not valid UTF-8 (byte at offset {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    if path.name != "pyproject.toml":
        return data  # a dedicated nnxlint.toml holds the table at the top level
    tool = data.get("tool")
    table = tool.get("nnxlint") if isinstance(tool, dict) else None  # ``tool = 5`` is some other tool's business
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: `tool.nnxlint` must be a table ([tool.nnxlint])")
    return table


def find_config(start: Path) -> Optional[Path]:
    """The nearest pyproject.toml with a [tool.nnxlint] table, from ``start`` upward."""
    directory = start if start.is_dir() else start.parent
    for candidate_directory in [directory, *directory.parents]:
        for name in ("nnxlint.toml", "pyproject.toml"):
            candidate = candidate_directory / name
            if candidate.is_file() and _load_table(candidate) is not None:
                return candidate
    return None


def load_settings(config_file: Optional[Path], start: Path) -> Settings:
    try:
        start = start.resolve()
    except (OSError, RuntimeError):  # a symlink loop: where it is, not where it points
        start = Path(os.path.abspath(start))
    path = config_file or find_config(start)
    if path is None:
        return Settings(root=Path.cwd())
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    table = _load_table(path)
    if table is None:
        raise ConfigError(f"{path} has no [tool.nnxlint] table")
    unknown = set(table) - KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(sorted(unknown))} in [tool.nnxlint]; "
                          f"known: {', '.join(sorted(KNOWN_KEYS))}")
    settings = Settings(root=path.parent.resolve(), source=path)
    for key in ("select", "extend-select", "ignore"):
        if key in table:
            setattr(settings, key.replace("-", "_"), _string_list(table, key, path))
    for key in ("exclude", "extend-exclude"):
        if key in table:
            setattr(settings, key.replace("-", "_"), _patterns(table, key, path))
    if "per-file-ignores" in table:
        value = table["per-file-ignores"]
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: `per-file-ignores` must be a table of glob = [codes]")
        settings.per_file_ignores = {pattern: _string_list(value, pattern, path, f"per-file-ignores.{pattern}")
                                     for pattern in value}
    if "respect-gitignore" in table:
        if not isinstance(table["respect-gitignore"], bool):
            raise ConfigError(f"{path}: `respect-gitignore` must be true or false")
        settings.respect_gitignore = table["respect-gitignore"]
    if "cache-dir" in table:
        if not isinstance(table["cache-dir"], str) or not table["cache-dir"]:
            raise ConfigError(f"{path}: `cache-dir` must be a directory name (a string)")
        settings.cache_dir = table["cache-dir"]
    if "max-file-size" in table:
        size = table["max-file-size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"{path}: `max-file-size` must be a positive number of bytes")
        settings.max_file_size = size
    settings.enabled_codes()  # unknown codes are an error at load time
    settings.per_file_ignore_codes()
    return settings
