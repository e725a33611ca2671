"""Shared by the conversion tests: NNX002's fix and messages for one models file."""

from __future__ import annotations

import textwrap

from nnxlint.engine import check_source
from nnxlint.registry import all_rules

NNX002 = all_rules()["NNX002"]


def convert(source: str):
    """(fixed text or None, {class: message})."""
    source = textwrap.dedent(source)
    fixed = check_source(source, "models.py", [NNX002], "unsafe").fixed_text
    findings = check_source(source, "models.py", [NNX002]).findings
    return fixed, {f.message.split("`")[1]: f.message for f in findings}
