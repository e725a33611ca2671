"""after.py is exactly what the fixer makes of before.py: compute it, and write it back."""

from __future__ import annotations

from dataclasses import dataclass

from nnxlint.engine import check_source
from nnxlint.registry import all_rules
from nnxlint.textio import read_source
from nnxlint.verify.manifest import Fixture


@dataclass(frozen=True)
class FixerOutput:
    text: str  # the fixed program (before.py itself when nothing was fixed)
    reported: frozenset[str]  # rule codes reported on before.py


def missing_rules(fixture: Fixture) -> list[str]:
    """The fixture's rules that this nnxlint does not have (yet)."""
    known = all_rules()
    return [code for code in fixture.rules if code not in known]


def fixer_output(fixture: Fixture) -> FixerOutput:
    """``nnxlint check --fix [--unsafe-fixes]`` with every rule enabled, applied to before.py."""
    source = read_source(str(fixture.before_path))
    rules = list(all_rules().values())
    result = check_source(source.text, str(fixture.before_path), rules, fixture.fix)
    if result.crashes:
        details = "; ".join(f"{crash.code}: {crash.detail}" for crash in result.crashes)
        raise RuntimeError(f"{fixture.before_path}: rule crashed: {details}")
    reported = check_source(source.text, str(fixture.before_path), rules).findings
    return FixerOutput(result.fixed_text if result.fixed_text is not None else source.text,
                       frozenset(finding.code for finding in reported))


def regenerate(fixture: Fixture) -> bool:
    """Write after.py from the fixer's current output; True when it changed."""
    new = fixer_output(fixture).text.encode("utf-8")
    if fixture.after_path.exists() and fixture.after_path.read_bytes() == new:
        return False
    fixture.after_path.write_bytes(new)
    return True
