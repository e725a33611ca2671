"""The README tells the truth: its rule table and its test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_rule_table_is_current():
    table = subprocess.run([sys.executable, "-m", "nnxlint", "rules", "--output-format", "markdown"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert table in README, "README's rule table is stale: paste `nnxlint rules --output-format markdown`"


def test_ci_runs_the_readme_test_command():
    command = "pip install -e '.[dev]' && pytest"
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text()
