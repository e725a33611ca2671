"""after.py is exactly what the fixer makes of before.py: compute it, and write it back.

A fixture of several files (before/models.py + before/train.py) is fixed as a
project, the way ``nnxlint check --fix`` fixes a directory: a copy of before/ goes
through the runner, with its project index and project-level fixes.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nnxlint.engine import check_source
from nnxlint.registry import all_rules
from nnxlint.textio import read_source
from nnxlint.verify.manifest import Fixture


@dataclass(frozen=True)
class FixerOutput:
    text: str  # the fixed program (before.py itself when nothing was fixed)
    reported: frozenset[str]  # rule codes reported on before.py (on any file of before/)
    files: dict[str, str] = field(default_factory=dict)  # every fixed file by name (after.py: the program)


def missing_rules(fixture: Fixture) -> list[str]:
    """The fixture's rules that this nnxlint does not have (yet)."""
    known = all_rules()
    return [code for code in fixture.rules if code not in known]


def fixer_output(fixture: Fixture) -> FixerOutput:
    """``nnxlint check --fix [--unsafe-fixes]`` with every rule enabled, applied to before.py."""
    if fixture.program:
        return _project_output(fixture)
    source = read_source(str(fixture.before_path))
    rules = list(all_rules().values())
    result = check_source(source.text, str(fixture.before_path), rules, fixture.fix)
    if result.crashes:
        details = "; ".join(f"{crash.code}: {crash.detail}" for crash in result.crashes)
        raise RuntimeError(f"{fixture.before_path}: rule crashed: {details}")
    reported = check_source(source.text, str(fixture.before_path), rules).findings
    text = result.fixed_text if result.fixed_text is not None else source.text
    return FixerOutput(text, frozenset(finding.code for finding in reported), {fixture.after_path.name: text})


def _project_output(fixture: Fixture) -> FixerOutput:
    """The files of before/ fixed together, in a temporary copy."""
    from nnxlint.runner import Job, check_files

    codes = frozenset(all_rules())
    with tempfile.TemporaryDirectory(prefix="nnxlint-fixture-") as temporary:
        copy = Path(temporary) / fixture.before_path.parent.name
        shutil.copytree(fixture.before_path.parent, copy)
        paths = [str(copy / name) for name in fixture.before_files()]
        reported = check_files(paths, Job(codes, (), str(copy)), jobs=1)
        fixed = check_files(paths, Job(codes, (), str(copy), fixture.fix, write=True), jobs=1)
        problems = [problem for outcome in fixed for problem in outcome.errors]
        if problems:
            raise RuntimeError(f"{fixture.before_path.parent}: {'; '.join(problems)}")
        files = {name: (copy / name).read_text(encoding="utf-8") for name in fixture.before_files()}
    return FixerOutput(files[fixture.before_path.name],
                       frozenset(finding.code for outcome in reported for finding in outcome.findings), files)


def is_current(fixture: Fixture, output: FixerOutput) -> bool:
    """Whether every committed after file is the fixer's current output."""
    return all(fixture.after_file(name).is_file() and fixture.after_file(name).read_text(encoding="utf-8") == text
               for name, text in output.files.items())


def regenerate(fixture: Fixture) -> bool:
    """Write after.py (after/ in a fixture of several files) from the fixer's current
    output; True when it changed."""
    output = fixer_output(fixture)
    if is_current(fixture, output):
        return False
    for name, text in output.files.items():
        target = fixture.after_file(name)
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
    return True
