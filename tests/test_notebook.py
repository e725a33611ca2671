"""Notebooks: code cells are checked as one program, findings name their cell, and
--fix rewrites only the changed cells' sources, byte for byte."""

from __future__ import annotations

import json

import pytest

from nnxlint.findings import source_error
from nnxlint.notebook import Notebook, NotebookError

# the rules these tests count; rules landing later must not change the expectations
CHECK = ("check", "--no-cache", "--select", "NNX001,NNX102")
IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def _code(source, outputs=(), count=None):
    return {"cell_type": "code", "execution_count": count, "metadata": {"id": "c", "tags": ["é"]},
            "outputs": list(outputs), "source": source}


CELLS = [
    {"cell_type": "markdown", "metadata": {}, "source": ["# Migrating to NNX ✨\n", "Text."]},
    _code(["%pip install -q flax\n", "import optax\n", "from flax import nnx"], count=1),
    _code(["import flax.linen as nn\n", "\n", "class Old(nn.Module):\n", "    @nn.compact\n",
           "    def __call__(self, x):\n", "        return nn.Dense(3)(x)"],
          outputs=[{"output_type": "display_data", "metadata": {}, "data": {"image/png": IMAGE}}], count=2),
    _code(["!nvidia-smi\n", "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n",
           "optimizer = nnx.Optimizer(model, optax.adam(1e-3))\n", "model?"],
          outputs=[{"output_type": "stream", "name": "stdout", "text": ["ok\n"]}], count=3),
    _code(["%%bash\n", "echo nnx.Optimizer(model, tx)"]),
]


def _notebook_text(cells=CELLS):
    # the layout Jupyter writes: indent 1, non-ASCII kept, trailing newline
    document = {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}, "colab": {"provenance": []}},
                "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


@pytest.fixture
def notebook(tmp_path):
    path = tmp_path / "demo.ipynb"
    path.write_bytes(_notebook_text().encode())
    return path


def test_findings_name_the_cell_and_see_imports_of_earlier_cells(run_cli, notebook, tmp_path):
    result = run_cli(*CHECK, "demo.ipynb", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("demo.ipynb")]
    # cells count from 1 over all cells (the markdown cell is cell 1); magics and `!` lines are no error
    assert [line.split(": ")[0] + ": " + line.split(": ")[1].split()[0] for line in lines] == [
        "demo.ipynb:cell 3:1:1: NNX001",
        "demo.ipynb:cell 4:3:13: NNX102",  # nnx comes from cell 2
    ]
    findings = json.loads(run_cli(*CHECK, "--output-format", "json", "demo.ipynb",
                                  cwd=tmp_path).stdout)
    assert [(f["cell"], f["line"], f["column"], f["code"]) for f in findings] == [
        (3, 1, 1, "NNX001"), (4, 3, 13, "NNX102")]
    sarif = json.loads(run_cli(*CHECK, "--output-format", "sarif", "demo.ipynb",
                               cwd=tmp_path).stdout)
    results = sarif["runs"][0]["results"]
    assert [(r["properties"]["cell"], r["locations"][0]["physicalLocation"]["region"]["startLine"])
            for r in results] == [(3, 1), (4, 3)]


def test_directories_yield_notebooks(run_cli, notebook, tmp_path):
    result = run_cli(*CHECK, ".", cwd=tmp_path)
    assert "demo.ipynb:cell 4:3:13: NNX102" in result.stdout


def test_fix_rewrites_only_the_changed_cell_source(run_cli, notebook, tmp_path):
    original = notebook.read_bytes()
    result = run_cli(*CHECK, "--fix", "demo.ipynb", cwd=tmp_path)
    assert result.returncode == 1  # the Linen import remains
    assert "1 fixed, 1 remaining" in result.stdout
    fixed = notebook.read_bytes()

    fixed_cells = [dict(cell) for cell in CELLS]
    fixed_cells[3] = _code(["!nvidia-smi\n", "model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n",
                            "optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)\n", "model?"],
                           outputs=CELLS[3]["outputs"], count=3)
    assert fixed == _notebook_text(fixed_cells).encode()
    # byte comparison outside the changed source: everything before and after it is untouched
    old_source = json.dumps(CELLS[3]["source"], indent=1, ensure_ascii=False).replace("\n", "\n   ")
    start = original.index(old_source.encode())
    new_source = json.dumps(fixed_cells[3]["source"], indent=1, ensure_ascii=False).replace("\n", "\n   ")
    assert fixed[:start] == original[:start]
    assert fixed[start + len(new_source.encode()):] == original[start + len(old_source.encode()):]
    assert run_cli(*CHECK, "--fix", "demo.ipynb", cwd=tmp_path).stdout.count("NNX") == 1


def test_diff_shows_the_notebook_change_without_writing(run_cli, notebook, tmp_path):
    original = notebook.read_bytes()
    result = run_cli(*CHECK, "--diff", "demo.ipynb", cwd=tmp_path)
    assert result.returncode == 1
    assert '+    "optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)\\n",' in result.stdout
    assert notebook.read_bytes() == original


def test_fix_adding_an_import_keeps_cells_and_compact_layout(tmp_path, run_cli):
    cells = [_code("from flax.nnx import Optimizer\nimport optax"), _code(["opt = Optimizer(model, optax.sgd(0.1))"])]
    path = tmp_path / "compact.ipynb"
    text = json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    path.write_text(text)
    run_cli(*CHECK, "--fix", "compact.ipynb", cwd=tmp_path)
    fixed = json.loads(path.read_text())
    assert [cell["source"] for cell in fixed["cells"]] == [
        "from flax.nnx import Optimizer\nfrom flax import nnx\nimport optax",  # a string stays a string
        ["opt = Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)"],
    ]
    assert path.read_text().startswith('{"cells": [{"cell_type": "code"')  # one-line JSON stays one line


def test_joined_python_hides_magics_and_maps_lines_back():
    notebook = Notebook(_notebook_text())
    assert "%pip" not in notebook.python and "!nvidia-smi" not in notebook.python
    assert "echo" not in notebook.python  # a %%bash cell is not Python
    finding = source_error("demo.ipynb", "x", line=notebook.python.splitlines().index("from flax import nnx") + 1)
    located = notebook.locate(finding)
    assert (located.cell, located.line) == (2, 3)
    assert notebook.with_python(notebook.python) == notebook.text  # no change, same bytes


def test_a_fix_across_cells_keeps_each_line_in_its_cell():
    cells = [_code(["import jax\n", "import flax.linen as nn"]),
             _code(["class MLP(nn.Module):\n", "    @nn.compact\n", "    def __call__(self, x):\n",
                    "        return nn.Dense(2)(x)"]),
             _code(["model = MLP()\n", "%time x = 1\n", "params = model.init(jax.random.key(0), x)\n",
                    "y = model.apply(params, x)\n"])]
    notebook = Notebook(_notebook_text(cells))
    # what a model conversion does: an import dropped, the class rewritten, init and apply replaced
    fixed = notebook.python.replace("import jax\n", "").replace("import flax.linen as nn", "from flax import nnx")
    fixed = fixed.replace("""class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(x)""", """class MLP(nnx.Module):
    def __init__(self, *, rngs):
        self.linear = nnx.Linear(1, 2, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)""")
    fixed = fixed.replace("model = MLP()\n", "").replace(
        "params = model.init(jax.random.key(0), x)\ny = model.apply(params, x)",
        "model = MLP(rngs=nnx.Rngs(0))\ny = model(x)")
    sources = ["".join(cell["source"]) for cell in json.loads(notebook.with_python(fixed))["cells"]]
    assert sources == [
        "from flax import nnx",
        "class MLP(nnx.Module):\n    def __init__(self, *, rngs):\n        self.linear = nnx.Linear(1, 2, rngs=rngs)\n"
        "\n    def __call__(self, x):\n        return self.linear(x)",
        "%time x = 1\nmodel = MLP(rngs=nnx.Rngs(0))\ny = model(x)\n",
    ]


def test_a_fix_that_removes_a_magic_is_refused():
    notebook = Notebook(_notebook_text())
    assert notebook.with_python(notebook.python.replace("pass  # nnxlint: magic 0\n", "")) is None


def test_invalid_notebook_is_a_source_error(run_cli, tmp_path):
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    result = run_cli(*CHECK, "broken.ipynb", cwd=tmp_path)
    assert result.returncode == 1
    assert "broken.ipynb:1:1: NNX000" in result.stdout
    with pytest.raises(NotebookError):
        Notebook('{"metadata": {}}')
