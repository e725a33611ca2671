"""Notebooks from a hostile user: deep JSON, cells that must keep every byte, shell
escapes continued over lines (issue 13)."""

from __future__ import annotations

import json

import pytest

from nnxlint.engine import check_source
from nnxlint.notebook import Notebook, NotebookError
from nnxlint.registry import all_rules

RULES = list(all_rules().values())
OPTIMIZER = "opt = nnx.Optimizer(model, optax.adam(1e-3))"


def _text(*sources):
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
             for source in sources]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n"


def _fixed(text):
    notebook = Notebook(text)
    result = check_source(notebook.python, "n.ipynb", RULES, "safe")
    assert result.fixed_text is not None
    return notebook.with_python(result.fixed_text)


def test_json_nested_deeper_than_the_recursion_limit_is_a_notebook_error():
    deep = '{"cells": [], "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(NotebookError):
        Notebook(deep)


def test_a_fix_in_one_cell_keeps_another_cells_unusual_characters():
    other = 'note = "a\u2028b\x0cc\x85d"\nx = 1\n'
    text = _text(other, f"from flax import nnx\nimport optax\n{OPTIMIZER}\n")
    fixed = json.loads(_fixed(text))
    assert fixed["cells"][0]["source"] == other
    assert "wrt=nnx.Param" in fixed["cells"][1]["source"]


def test_crlf_cells_without_a_fix_keep_their_bytes_and_fixed_ones_their_line_endings():
    untouched = "import jax\r\nx = 1\r\n"
    text = _text(untouched, f"from flax import nnx\r\nimport optax\r\n{OPTIMIZER}\r\n")
    fixed = _fixed(text)
    cells = json.loads(fixed)["cells"]
    assert cells[0]["source"] == untouched
    assert cells[1]["source"] == f"from flax import nnx\r\nimport optax\r\n{OPTIMIZER[:-1]}, wrt=nnx.Param)\r\n"
    original = text.split('"source"')
    assert fixed.split('"source"')[1] == original[1]  # the untouched cell's JSON, byte for byte


@pytest.mark.parametrize("source", [
    "!python main.py \\\n    --steps 10 \\\n    --lr 0.1\nx = 1\n",
    "%run train.py \\\n  --epochs 3\n",
    "files = !ls \\\n   -la\n",
])
def test_shell_escapes_continued_with_a_backslash_are_not_python(source):
    notebook = Notebook(_text(source))
    assert [f.code for f in check_source(notebook.python, "n.ipynb", RULES).findings if f.code == "NNX000"] == []


def test_a_python_line_continued_with_a_backslash_is_still_python():
    notebook = Notebook(_text("x = 1 + \\\n    2\n%time y = 3\n"))
    assert "x = 1 + \\\n    2\n" in notebook.python
