"""Every committed after.py is exactly what the fixer makes of its before.py today.

`nnxlint verify` executes the committed after.py, so what a reviewer reads is
what is proven; when a rule's fix changes, this fails until
`nnxlint verify --regenerate` rewrites the after.py files (and verify runs again).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nnxlint.registry import all_rules
from nnxlint.verify.manifest import discover
from nnxlint.verify.regenerate import fixer_output, is_current, missing_rules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CORPUS = discover(FIXTURES)


def _skip_if_waiting(fixture):
    missing = missing_rules(fixture)
    if missing:
        pytest.skip(f"waits on rule(s) {', '.join(missing)}")


@pytest.mark.parametrize("fixture", CORPUS, ids=lambda fixture: fixture.name)
def test_after_is_the_fixers_current_output(fixture):
    _skip_if_waiting(fixture)
    assert fixture.after_path.is_file(), "after.py is missing: run `nnxlint verify --regenerate`"
    assert is_current(fixture, fixer_output(fixture)), (
        f"{fixture.after_path} (or another file of after/) is not the fixer's current output: "
        "run `nnxlint verify --regenerate`")


@pytest.mark.parametrize("fixture", CORPUS, ids=lambda fixture: fixture.name)
def test_before_is_flagged_by_the_rules_it_exercises(fixture):
    _skip_if_waiting(fixture)
    output = fixer_output(fixture)
    assert set(fixture.rules) <= output.reported, f"not reported on before.py: {set(fixture.rules) - output.reported}"
    assert output.text != fixture.before_path.read_text(encoding="utf-8"), "the fixer changes nothing"


def test_every_fixable_nnx_rule_has_fixtures():
    exercised = [code for fixture in CORPUS for code in fixture.rules]
    fixable = [code for code, rule in all_rules().items() if rule.fixable and code.startswith("NNX1")]
    thin = {code: exercised.count(code) for code in fixable if exercised.count(code) < 2}
    assert not thin, f"fixable rules with fewer than two fixtures: {thin}"
    assert len([fixture for fixture in CORPUS if not fixture.name.startswith("linen_")]) >= 20
