"""Every rule's own examples: valid code stays clean, invalid code is flagged,
fixes give exactly the documented output, parse, and are idempotent."""

from __future__ import annotations

import libcst as cst
import pytest

from nnxlint.engine import check_source
from nnxlint.registry import all_rules
from nnxlint.rule import DOC_SECTIONS

RULES = [rule for rule in all_rules().values() if rule.code != "NNX000"]


def _cases(kind):
    return list(_iter_cases(kind))


def _iter_cases(kind):
    for rule in RULES:
        for index, example in enumerate(getattr(rule, kind)):
            yield pytest.param(rule, example, id=f"{rule.code}-{kind}-{index}")


def _own_findings(rule, code, fix_level=None):
    result = check_source(code, "example.py", [rule], fix_level)
    assert not result.crashes, result.crashes
    return result


@pytest.mark.parametrize("rule, example", _cases("valid"))
def test_valid_examples_are_clean(rule, example):
    result = _own_findings(rule, example.code)
    assert result.findings == []


@pytest.mark.parametrize("rule, example", _cases("invalid"))
def test_invalid_examples_are_flagged(rule, example):
    result = _own_findings(rule, example.code)
    assert [f.code for f in result.findings] == [rule.code] * example.count, result.findings
    if example.message:
        assert all(example.message in f.message for f in result.findings)


@pytest.mark.parametrize("rule, example", _cases("invalid"))
def test_fixes_give_the_documented_output(rule, example):
    level = "unsafe" if example.unsafe else "safe"
    result = _own_findings(rule, example.code, level)
    if example.fixed is None:
        assert result.fixed_text is None, f"unexpected fix:\n{result.fixed_text}"
        return
    assert result.fixed_text == example.fixed
    cst.parse_module(result.fixed_text)
    again = _own_findings(rule, result.fixed_text, level)
    assert again.fixed_text is None, "a second --fix changed the file again"
    if not example.unsafe:  # a safe fix must not need --unsafe-fixes, and must not be offered as unsafe
        assert _own_findings(rule, example.code, "safe").fixed_text == example.fixed


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.code)
def test_rule_is_documented(rule):
    assert rule.name == rule.name.lower() and " " not in rule.name and "_" not in rule.name
    doc = rule.documentation()
    for section in DOC_SECTIONS:
        assert section in doc, f"{rule.code} documentation lacks {section!r}"
    assert rule.summary and rule.valid and rule.invalid
    if rule.fixable:
        assert any(example.fixed is not None for example in rule.invalid), "a fixable rule shows a fix"
