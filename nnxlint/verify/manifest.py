"""The fixture manifest (``fixture.toml``): what a fixture exercises and how it is verified.

Reading manifests needs no JAX, so the fixture corpus can be listed and
regenerated without the ``verify`` extra.
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MANIFEST = "fixture.toml"
BEFORE, AFTER, REFERENCE = "before.py", "after.py", "reference.py"
MIN_STEPS = 20
DEFAULT_TOLERANCE = 1e-5  # max relative difference on CPU float32, matmul precision "highest"
DEFAULT_DROPOUT_SEEDS = 8

# How the before-program runs:
#   current     on the installed Flax, as written; after.py is compared with it
#   legacy      written for Flax < 0.11 NNX: runs with nnx.Optimizer replaced by
#               nnx.ModelAndOptimizer (wrt defaults to nnx.Param, update(grads), .model)
#   fails       cannot run on any Flax by design: must raise the expected error;
#               after.py is compared with the hand-written reference.py
#   silent-bug  runs without an error but trains wrongly by design (a dropped update,
#               a parameter never trained): after.py is compared with reference.py, and
#               before.py must differ from reference.py, or the fixture shows no bug
BEFORE_MODES = ("current", "legacy", "fails", "silent-bug")
# Dropout: "none" (the model has none; checked), "same-key" (both programs draw
# identical masks, compared exactly with dropout active) or "statistical" (compared
# exactly with dropout off, then with dropout on over several seeds, statistically).
DROPOUT_MODES = ("none", "same-key", "statistical")
FIX_MODES = ("safe", "unsafe")
KNOWN_KEYS = {"description", "rules", "fix", "steps", "before", "expected_error", "expected_message",
              "dropout", "dropout_seeds", "tolerance", "program"}
# A fixture of several files (models.py + train.py) keeps them in directories named
# like the programs (before/, after/, reference/); ``program`` names the file run.
BEFORE_DIRECTORY, AFTER_DIRECTORY, REFERENCE_DIRECTORY = "before", "after", "reference"


class ManifestError(Exception):
    pass


@dataclass(frozen=True)
class Fixture:
    name: str
    directory: Path
    rules: tuple[str, ...]
    fix: str
    steps: int
    before: str
    dropout: str
    tolerance: float = DEFAULT_TOLERANCE
    dropout_seeds: int = DEFAULT_DROPOUT_SEEDS
    expected_error: Optional[str] = None
    expected_message: Optional[str] = None
    description: str = ""
    program: Optional[str] = None  # the file run, in a fixture of several files

    @property
    def before_path(self) -> Path:
        return self.directory / BEFORE_DIRECTORY / self.program if self.program else self.directory / BEFORE

    @property
    def after_path(self) -> Path:
        return self.directory / AFTER_DIRECTORY / self.program if self.program else self.directory / AFTER

    @property
    def reference_path(self) -> Path:
        return self.directory / REFERENCE_DIRECTORY / self.program if self.program else self.directory / REFERENCE

    def before_files(self) -> dict[str, Path]:
        """The source files of before.py's program by name: itself, or every ``.py`` file
        of before/ in a fixture of several files."""
        if not self.program:
            return {BEFORE: self.before_path}
        return {path.name: path for path in sorted(self.before_path.parent.glob("*.py"))}

    def after_file(self, name: str) -> Path:
        """Where the fixer's output of the before file ``name`` is committed."""
        return self.after_path.parent / name if self.program else self.after_path

    @property
    def baseline_path(self) -> Path:
        """The program after.py must match: reference.py where before.py cannot serve."""
        return self.reference_path if self.before in ("fails", "silent-bug") else self.before_path


def _require(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise ManifestError(f"{path}: {message}")


def load_fixture(directory: Path) -> Fixture:
    path = directory / MANIFEST
    try:
        with open(path, "rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
    except OSError as error:
        raise ManifestError(f"cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{path} is not valid TOML: {error}") from None
    unknown = set(data) - KNOWN_KEYS
    _require(not unknown, path, f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KNOWN_KEYS))}")
    rules = data.get("rules")
    _require(isinstance(rules, list) and bool(rules) and all(isinstance(r, str) for r in rules), path,
             "`rules` must be a non-empty list of rule codes")
    fix = data.get("fix", "safe")
    _require(fix in FIX_MODES, path, f"`fix` must be one of {FIX_MODES}")
    steps = data.get("steps", MIN_STEPS)
    _require(isinstance(steps, int) and steps >= MIN_STEPS, path, f"`steps` must be an integer >= {MIN_STEPS}")
    before = data.get("before", "current")
    _require(before in BEFORE_MODES, path, f"`before` must be one of {BEFORE_MODES}")
    dropout = data.get("dropout")
    _require(dropout in DROPOUT_MODES, path, f"`dropout` must be one of {DROPOUT_MODES}")
    tolerance = data.get("tolerance", DEFAULT_TOLERANCE)
    _require(isinstance(tolerance, (int, float)) and tolerance > 0, path, "`tolerance` must be a positive number")
    seeds = data.get("dropout_seeds", DEFAULT_DROPOUT_SEEDS)
    _require(isinstance(seeds, int) and seeds >= 2, path, "`dropout_seeds` must be an integer >= 2")
    expected_error = data.get("expected_error")
    program = data.get("program")
    _require(program is None or (isinstance(program, str) and program.endswith(".py") and "/" not in program
                                 and (directory / BEFORE_DIRECTORY).is_dir()), path,
             f"`program` names the file to run in {BEFORE_DIRECTORY}/ (a fixture of several files)")
    _require((expected_error is not None) == (before == "fails"), path,
             '`expected_error` (an exception class name) is required exactly when before = "fails"')
    fixture = Fixture(directory.name, directory, tuple(code.upper() for code in rules), fix, steps, before,
                      dropout, float(tolerance), seeds, expected_error, data.get("expected_message"),
                      data.get("description", ""), program)
    # after.py may be missing until `nnxlint verify --regenerate` writes it
    for program in (fixture.before_path, fixture.baseline_path):
        _require(program.is_file(), path, f"{program.name} is missing")
    return fixture


def discover(root: Path, pattern: Optional[str] = None) -> list[Fixture]:
    """Every fixture under ``root`` (a directory holding a fixture.toml), sorted by name.

    ``pattern`` selects by name: a glob, or else a substring (as pytest's -k).
    """
    directories = sorted(path.parent for path in root.glob(f"*/{MANIFEST}"))
    if pattern:
        directories = [d for d in directories
                       if (fnmatch.fnmatch(d.name, pattern) if any(c in pattern for c in "*?[") else pattern in d.name)]
    return [load_fixture(directory) for directory in directories]
