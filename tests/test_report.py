"""``nnxlint report``: exact counts on a known tree, all formats, the chart, and the repository's fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LINEN_MODELS = """\
import flax.linen as nn


class Encoder(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(x)


class DeepEncoder(Encoder):  # a Linen module through a local base
    pass


class Wide(nn.Dense):
    pass


class Config:  # not a module
    width = 4
"""

MIXED = """\
import flax
from flax import nnx


class Block(nnx.Module):
    def __init__(self, *, rngs):
        self.linear = nnx.Linear(2, 2, rngs=rngs)
        self.legacy = flax.linen.Dense(2)


class Scaled(nnx.Linear):
    pass


class Count(nnx.Variable):  # a variable type, not a module
    pass
"""

TRAIN = """\
import optax
from flax import nnx


class Net(nnx.Module):
    pass


optimizer = nnx.Optimizer(Net(), optax.adam(1e-3))
"""

NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": ["import flax.linen as nn\n", "class Head(nn.Module):\n", "    pass"]}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def tree(tmp_path):
    # only the two rules whose findings the test counts, whatever rules land later
    (tmp_path / "pyproject.toml").write_text("[tool.nnxlint]\nselect = ['NNX001', 'NNX102']\n")
    for name, text in {"pkg/a/linen_models.py": LINEN_MODELS, "pkg/a/mixed.py": MIXED,
                       "pkg/b/train.py": TRAIN, "pkg/b/util.py": "import os\n",
                       "pkg/b/explore.ipynb": json.dumps(NOTEBOOK)}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_json_report_counts(run_cli, tree):
    result = run_cli("report", "--no-cache", "--output-format", "json", "pkg", cwd=tree)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["directories"] == {
        "pkg/a": {"files": 2, "linen_files": 2, "linen_classes": 3, "nnx_classes": 2, "progress": 0.4,
                  "findings": 2, "safe_fixes": 0, "unsafe_fixes": 0},
        "pkg/b": {"files": 3, "linen_files": 1, "linen_classes": 1, "nnx_classes": 1, "progress": 0.5,
                  "findings": 2, "safe_fixes": 1, "unsafe_fixes": 0},
    }
    assert data["total"] == {"files": 5, "linen_files": 3, "linen_classes": 4, "nnx_classes": 3,
                             "progress": 0.4286, "findings": 4, "safe_fixes": 1, "unsafe_fixes": 0}
    assert data["rules"] == [
        {"code": "NNX001", "name": "linen-usage", "findings": 3, "safe_fixes": 0, "unsafe_fixes": 0},
        {"code": "NNX102", "name": "optimizer-without-wrt", "findings": 1, "safe_fixes": 1, "unsafe_fixes": 0},
    ]


def test_text_and_markdown_tables(run_cli, tree):
    text = run_cli("report", "--no-cache", "pkg", cwd=tree).stdout.splitlines()
    assert text[:3] == ["NNX module classes: 3 of 7 (43%)", "Files still using flax.linen: 3 of 5",
                        "Findings: 4 (1 safe fixes, 0 unsafe fixes available)"]
    assert any(line.split() == ["pkg/a", "2", "2", "3", "2", "40%", "2", "0", "0"] for line in text)
    assert any(line.split() == ["TOTAL", "5", "3", "4", "3", "43%", "4", "1", "0"] for line in text)
    assert any(line.split() == ["NNX102", "optimizer-without-wrt", "1", "1", "0"] for line in text)

    markdown = run_cli("report", "--no-cache", "--output-format", "markdown", "pkg", cwd=tree).stdout
    assert markdown.startswith("## nnxlint migration report\n")
    assert "| `pkg/b` | 3 | 1 | 1 | 1 | 50% | 2 | 1 | 0 |" in markdown
    assert "| **TOTAL** | **5** | **3** | **4** | **3** | **43%** | **4** | **1** | **0** |" in markdown
    assert "| `NNX001` | linen-usage | 3 | 0 | 0 |" in markdown


def test_chart_is_a_png(run_cli, tree):
    pytest.importorskip("matplotlib")
    result = run_cli("report", "--no-cache", "--chart", "progress.png", "pkg", cwd=tree)
    assert result.returncode == 0, result.stderr
    assert (tree / "progress.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_report_on_the_repository_fixtures(run_cli):
    """The fixtures grow while rules land: check the report agrees with `check` and the file count."""
    fixtures = ROOT / "fixtures"
    if not any(fixtures.rglob("*.py")):
        pytest.skip("no fixtures yet")
    report = json.loads(run_cli("report", "--no-cache", "--output-format", "json", "fixtures", cwd=ROOT).stdout)
    findings = json.loads(run_cli("check", "--no-cache", "--output-format", "json", "fixtures", cwd=ROOT).stdout)
    files = [path for path in fixtures.rglob("*") if path.suffix in (".py", ".pyi", ".ipynb")
             and "__pycache__" not in path.parts]
    assert report["total"]["files"] == len(files)
    assert report["total"]["findings"] == len(findings)
    assert report["total"]["safe_fixes"] == sum(1 for f in findings if f["fix"] and f["fix"]["applicability"] == "safe")
    assert sum(row["findings"] for row in report["rules"]) == len(findings)
    assert report["total"]["linen_classes"] + report["total"]["nnx_classes"] > 0
