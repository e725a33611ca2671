"""What `pip install .` installs: the packages, and no heavy dependencies in the core."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_installed_and_rules_live_under_nnxlint():
    setuptools = PROJECT["tool"]["setuptools"]
    declared = set(setuptools["packages"])
    on_disk = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "nnxlint").rglob("__init__.py")}
    assert on_disk | {"nnxlint.rules"} == declared
    assert setuptools["package-dir"]["nnxlint.rules"] == "rules"
    assert "rules" not in declared


def test_core_dependencies_are_light():
    names = {requirement.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for requirement in PROJECT["project"]["dependencies"]}
    assert names == {"libcst", "click", "pathspec", "tomli"}
    verify = " ".join(PROJECT["project"]["optional-dependencies"]["verify"])
    assert all(name in verify for name in ("jax", "flax", "optax"))
