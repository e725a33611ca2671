"""Rendering findings: text, json, github, sarif."""

from __future__ import annotations

import json
from collections import Counter
from typing import Sequence

from nnxlint import __version__
from nnxlint.findings import Finding
from nnxlint.registry import all_rules

DOCS_URL = "https://github.com/nnxlint/nnxlint/blob/main/README.md#rules"


def location(finding: Finding) -> str:
    if finding.cell is not None:
        return f"{finding.path}:cell {finding.cell}:{finding.line}:{finding.column}"
    return f"{finding.path}:{finding.line}:{finding.column}"


def text_line(finding: Finding, show_fix: bool = True) -> str:
    marker = " [*]" if show_fix and finding.fix is not None and finding.fix.applicability == "safe" else (
        " [-]" if show_fix and finding.fix is not None else "")
    return f"{location(finding)}: {finding.code}{marker} {finding.message}"


def as_dict(finding: Finding) -> dict:
    data = {
        "path": finding.path, "line": finding.line, "column": finding.column,
        "end_line": finding.end_line, "end_column": finding.end_column,
        "code": finding.code, "name": finding.name, "message": finding.message,
        "fix": None if finding.fix is None else {
            "applicability": finding.fix.applicability, "description": finding.fix.description},
    }
    if finding.cell is not None:
        data["cell"] = finding.cell
    return data


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps([as_dict(finding) for finding in findings], indent=2)


def _github_escape(value: str, property_value: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def render_github(findings: Sequence[Finding]) -> str:
    return "\n".join(
        f"::error file={_github_escape(f.path, True)},line={f.line},col={f.column},"
        f"endLine={f.end_line},endColumn={f.end_column},title={f.code}::"
        f"{_github_escape(f'{f.code} {f.message}')}"
        for f in findings)


def render_sarif(findings: Sequence[Finding]) -> str:
    rules = all_rules()
    codes = sorted(rules)
    index = {code: position for position, code in enumerate(codes)}
    driver_rules = [{
        "id": code,
        "name": rules[code].name,
        "shortDescription": {"text": rules[code].summary},
        "fullDescription": {"text": rules[code].summary},
        "help": {"text": rules[code].documentation(), "markdown": rules[code].documentation()},
        "helpUri": f"{DOCS_URL}",
        "defaultConfiguration": {"level": "error"},
        "properties": {"fixable": rules[code].fixable or "no"},
    } for code in codes]
    results = []
    for finding in findings:
        region = {"startLine": finding.line, "startColumn": finding.column,
                  "endLine": finding.end_line, "endColumn": finding.end_column}
        result = {
            "ruleId": finding.code,
            "ruleIndex": index.get(finding.code, 0),
            "level": "error",
            "message": {"text": finding.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": finding.path.replace("\\", "/"), "uriBaseId": "%SRCROOT%"},
                "region": region}}],
        }
        if finding.cell is not None:
            result["properties"] = {"cell": finding.cell}
        results.append(result)
    document = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "nnxlint", "version": __version__, "informationUri": DOCS_URL,
                "rules": driver_rules}},
            "results": results,
        }],
    }
    return json.dumps(document, indent=2)


def statistics(findings: Sequence[Finding]) -> str:
    counts = Counter(finding.code for finding in findings)
    fixable = Counter(finding.code for finding in findings if finding.fix is not None)
    # not worked out by plain ``check``: may be fixable, as the footer's ``[-]`` line says
    deferred = Counter(finding.code for finding in findings if finding.fix_deferred)
    names = {finding.code: finding.name for finding in findings}
    width = max((len(str(count)) for count in counts.values()), default=1)
    return "\n".join(
        f"{count:>{width}}  {code}  {'[*]' if fixable[code] else '[-]' if deferred[code] else '   '} {names[code]}"
        for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
