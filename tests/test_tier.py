"""The cheap tier (nnxlint/tier.py) must never change a result: every rule example,
every fixture and every multi-file test project gives the same findings (and the
same fixes) with the tier as when every rule runs on every file (``full``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnxlint import tier
from nnxlint.engine import check_source
from nnxlint.registry import all_rules
from nnxlint.rule import Needs
from nnxlint.runner import check_file, check_files, job_for

ROOT = Path(__file__).resolve().parent.parent
RULES = list(all_rules().values())
SELECTED = [rule for rule in RULES if rule.code != "NNX000"]


def _examples():
    for rule in RULES:
        for index, example in enumerate((*rule.valid, *rule.invalid)):
            yield pytest.param(example.code, id=f"{rule.code}-{index}")
            if getattr(example, "fixed", None):
                yield pytest.param(example.fixed, id=f"{rule.code}-{index}-fixed")


def _fixture_files():
    for path in sorted(ROOT.glob("fixtures/*/*.py")):
        yield pytest.param(path.read_text(encoding="utf-8"), id=f"{path.parent.name}/{path.name}")


def _outcome(text: str, full: bool, fix_level=None):
    result = check_source(text, "example.py", RULES, fix_level, full=full)
    return [(f.code, f.line, f.column, f.end_line, f.end_column, f.message, f.fix) for f in result.findings], \
        result.fixed_text, [crash.code for crash in result.crashes]


@pytest.mark.parametrize("text", list(_examples()))
def test_tier_gives_the_findings_of_every_rule_on_every_file(text):
    assert _outcome(text, full=False) == _outcome(text, full=True)


@pytest.mark.parametrize("text", list(_fixture_files()))
def test_tier_keeps_every_rule_that_reports_on_the_fixtures(text):
    # The tier path runs exactly the rules it selects, and a rule's findings do not
    # depend on which other rules run: the two paths agree when every rule that
    # reports with all rules running is selected (one LibCST run per fixture, not two).
    reported = {finding.code for finding in check_source(text, "example.py", RULES, full=True).findings}
    selected = tier.rules_for(text, RULES)
    if selected is not None:  # None: not Python for ast, and the engine runs every rule
        assert reported <= {rule.code for rule in selected} | ({"NNX000"} if selected else set())


def _fixed_examples():  # where fixes apply; elsewhere a fix run is a check run
    for rule in RULES:
        for index, example in enumerate(rule.invalid):
            if example.fixed:
                yield pytest.param(example.code, id=f"{rule.code}-{index}")


@pytest.mark.parametrize("text", list(_fixed_examples()))
def test_tier_gives_the_fixes_of_every_rule_on_every_file(text):
    assert _outcome(text, full=False, fix_level="unsafe") == _outcome(text, full=True, fix_level="unsafe")


def test_tier_skips_files_without_what_the_rules_need():
    plain = "import numpy as np\n\ndef mean(x):\n    return np.mean(x)\n"
    assert tier.rules_for(plain, SELECTED) == []
    nnx_only = "from flax import nnx\nlayer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"
    codes = [rule.code for rule in tier.rules_for(nnx_only, SELECTED)]
    assert "NNX001" not in codes and "NNX109" not in codes  # no `.value`
    assert "NNX101" not in codes  # the layer gets its rngs
    without = [rule.code for rule in tier.rules_for(nnx_only.replace(", rngs=nnx.Rngs(0)", ""), SELECTED)]
    assert "NNX101" in without
    # a word in a comment or string is not an import of flax.linen
    assert "NNX001" not in [rule.code for rule in tier.rules_for("# flax.linen is legacy\nx = 'linen'\n", SELECTED)]


@pytest.mark.parametrize("text, reached", [
    ("import flax\nm = flax.linen.Dense(3)\n", True),  # through an attribute chain
    ("import flax\nm = flax.nnx.Linear\n", False),
    ("from flax.linen import linear\n", True),
    ("import flax.nnx.nn as n\nlayer = n.linear.Linear\n", False),
    ("from . import models\n", True),  # a relative import can be anything
    ("def f():\n    if x:\n        from flax import linen\n", True),  # imports at any depth
    ("from mylib import linen\n", False),
])
def test_uses_follows_the_imports(text, reached):
    assert tier._needs_met(Needs(uses=("flax.linen",)), tier._File(text, None, False)) is reached


def test_implementation_modules_reach_their_public_names():
    met = tier._needs_met(Needs(uses=("flax.nnx.Linear",)), tier._File(
        "import flax.nnx.nn as n\nlayer = n.linear.Linear(2, 3)\n", None, False))
    assert met is True


def test_untriggered_file_that_does_not_parse_is_reported(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n    return 1\n")  # no trigger of any rule
    outcome = check_file(str(broken), job_for_codes(tmp_path))
    assert [f.code for f in outcome.findings] == ["NNX000"]


def test_untriggered_notebook_cell_that_does_not_parse_is_reported(tmp_path):
    cells = [{"cell_type": "code", "source": ["x = 1\n"], "metadata": {}, "outputs": [], "execution_count": None},
             {"cell_type": "code", "source": ["def f(:\n", "    pass\n"], "metadata": {}, "outputs": [],
              "execution_count": None}]
    notebook = tmp_path / "broken.ipynb"
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    outcome = check_file(str(notebook), job_for_codes(tmp_path))
    assert [(f.code, f.cell) for f in outcome.findings] == [("NNX000", 2)]


def test_notebook_findings_go_through_the_tier(tmp_path):
    cells = [{"cell_type": "code", "source": ["import flax.linen as nn\n"], "metadata": {}, "outputs": [],
              "execution_count": None},
             {"cell_type": "code", "source": ["!pip install flax\n", "y = 2\n"], "metadata": {}, "outputs": [],
              "execution_count": None}]
    notebook = tmp_path / "linen.ipynb"
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    outcome = check_file(str(notebook), job_for_codes(tmp_path))
    assert [(f.code, f.cell) for f in outcome.findings] == [("NNX001", 1)]


def job_for_codes(root: Path):
    from nnxlint.config import load_settings

    settings = load_settings(None, root)
    return job_for(settings, settings.enabled_codes(), use_cache=False)


@pytest.mark.parametrize("project", sorted(path.name for path in (ROOT / "tests" / "projects").iterdir()
                                           if path.is_dir()) if (ROOT / "tests" / "projects").is_dir() else [])
def test_tier_gives_the_findings_on_multi_file_projects(project, monkeypatch):
    from nnxlint.runner import find_files
    from nnxlint.config import load_settings

    root = ROOT / "tests" / "projects" / project
    settings = load_settings(None, root)
    job = job_for(settings, settings.enabled_codes(), use_cache=False)
    paths = find_files(settings, [str(root)])

    def run():
        return [(f.path, f.code, f.line, f.column, f.message) for outcome in check_files(paths, job, jobs=1)
                for f in outcome.findings]

    with_tier = run()
    monkeypatch.setenv(tier.FULL_ENVIRONMENT, "1")
    assert with_tier == run()


def test_a_plain_string_trigger_asks_for_the_text():
    class Words(SELECTED[0]):  # a rule that still declares its trigger as text
        triggers = ("magic_word",)

    assert tier.rules_for("x = magic_word\n", [Words]) == [Words]
    assert tier.rules_for("x = 1\n", [Words]) == []


def test_linked_files_open_only_what_the_files_they_are_connected_to_import(tmp_path, monkeypatch):
    from nnxlint import project
    from nnxlint.config import load_settings
    from nnxlint.runner import find_files

    (tmp_path / "compat.py").write_text("from flax import linen as nn\n")
    (tmp_path / "models.py").write_text("from compat import nn\n\n\nclass M(nn.Module):\n    pass\n")
    (tmp_path / "util.py").write_text("import numpy as np\n\n\ndef mean(x):\n    return np.mean(x)\n")
    (tmp_path / "main.py").write_text("import util\n\n\nclass Holder:\n    value = util.mean([1])\n")
    paths = find_files(load_settings(None, tmp_path), [str(tmp_path)])
    index = project.build(paths, jobs=1)

    def selected(name):
        path = str(tmp_path / name)
        text = (tmp_path / name).read_text()
        summary = tier.ImportSummary.from_data(index.by_path[path]["imports"])
        return {rule.code for rule in tier.rules_for(text, SELECTED, summary, tier.is_linked(path, summary, index))}

    assert "NNX002" in selected("models.py")  # through the re-export in compat.py
    assert selected("main.py") == set()  # linked only to a file that imports numpy
    job = job_for_codes(tmp_path)

    def run():
        return [(f.path, f.code, f.line, f.message) for outcome in check_files(paths, job, jobs=1)
                for f in outcome.findings]

    with_tier = run()
    assert [(Path(path).name, code) for path, code, _, _ in with_tier] == [("compat.py", "NNX001"),
                                                                           ("models.py", "NNX002")]
    monkeypatch.setenv(tier.FULL_ENVIRONMENT, "1")
    assert with_tier == run()


def test_nnx002_opens_on_the_files_a_file_imports_not_on_the_files_that_import_it(tmp_path, monkeypatch):
    from nnxlint import project
    from nnxlint.config import load_settings
    from nnxlint.runner import find_files

    (tmp_path / "compat.py").write_text("from flax import linen as nn\n")
    (tmp_path / "models.py").write_text("import compat\n\n\nclass M(compat.nn.Module):\n    pass\n")
    (tmp_path / "pipeline.py").write_text("import numpy as np\n\n\nclass Batches:\n    size = np.int32(8)\n")
    (tmp_path / "train.py").write_text("import models\nimport pipeline\n\n\nclass Head(models.compat.nn.Module):\n"
                                       "    pass\n")
    paths = find_files(load_settings(None, tmp_path), [str(tmp_path)])
    index = project.build(paths, jobs=1)
    nnx002 = [rule for rule in SELECTED if rule.code == "NNX002"]

    def opened(name):
        path = str(tmp_path / name)
        summary = tier.ImportSummary.from_data(index.by_path[path]["imports"])
        return tier.rules_for((tmp_path / name).read_text(), nnx002, summary, tier.is_linked(path, summary, index))

    assert opened("models.py") == nnx002 and opened("train.py") == nnx002  # through compat.py, at any depth
    assert opened("pipeline.py") == []  # train.py imports it and Linen, but nothing reaches it that way
    job = job_for(load_settings(None, tmp_path), {"NNX002"}, use_cache=False)

    def run():
        return [(Path(f.path).name, f.line, f.message) for outcome in check_files(paths, job, jobs=1)
                for f in outcome.findings]

    with_tier = run()
    assert [(name, line) for name, line, _ in with_tier] == [("models.py", 4), ("train.py", 5)]
    monkeypatch.setenv(tier.FULL_ENVIRONMENT, "1")
    assert with_tier == run()


def test_names_ask_for_the_name_or_an_import_that_can_alias_it():
    needs = Needs(uses=("flax.nnx",), names=("jit",))
    plain = "from flax import nnx\n\ndef step(model):\n    return model(1)\n"
    assert tier._needs_met(needs, tier._File(plain, None, False)) is False
    assert tier._needs_met(needs, tier._File(plain.replace("def", "@nnx.jit\ndef"), None, False)) is True
    # a file it imports can re-export the name under an alias: then only what those files import tells
    assert tier._needs_met(needs, tier._File(plain, None, frozenset({"flax.nnx.jit"}))) is True
    assert tier._needs_met(needs, tier._File(plain, None, frozenset({"flax.nnx"}), frozenset({"numpy"}))) is False
    assert tier._needs_met(needs, tier._File(plain, None, True)) is True


def test_a_compiling_transform_re_exported_under_an_alias_keeps_the_rule(tmp_path, monkeypatch):
    from nnxlint import project
    from nnxlint.config import load_settings
    from nnxlint.runner import find_files

    (tmp_path / "compat.py").write_text("from flax.nnx import jit as compiled\n")
    (tmp_path / "train.py").write_text(
        "import optax\nfrom flax import nnx\nfrom compat import compiled\n\n"
        "model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))\noptimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)\n"
        "\n\n@compiled\ndef train_step(x):\n    optimizer.update(model, nnx.grad(loss_fn)(model, x))\n")
    (tmp_path / "predict.py").write_text("from flax import nnx\n\nmodel = nnx.Linear(2, 1, rngs=nnx.Rngs(0))\n\n\n"
                                         "def predict(x):\n    return model(x)\n")
    paths = find_files(load_settings(None, tmp_path), [str(tmp_path)])
    index = project.build(paths, jobs=1)
    nnx114 = [rule for rule in SELECTED if rule.code == "NNX114"]

    def opened(name):
        path = str(tmp_path / name)
        summary = tier.ImportSummary.from_data(index.by_path[path]["imports"])
        return tier.rules_for((tmp_path / name).read_text(), nnx114, summary, tier.is_linked(path, summary, index))

    assert opened("train.py") == nnx114 and opened("predict.py") == []
    job = job_for(load_settings(None, tmp_path), {"NNX114"}, use_cache=False)

    def run():
        return [(Path(f.path).name, f.code) for outcome in check_files(paths, job, jobs=1) for f in outcome.findings]

    with_tier = run()
    assert ("train.py", "NNX114") in with_tier
    monkeypatch.setenv(tier.FULL_ENVIRONMENT, "1")
    assert with_tier == run()


@pytest.mark.parametrize("text, met", [
    ("from flax import nnx\nopt = nnx.Optimizer(model, tx, wrt=nnx.Param)\n", True),
    ("from flax import nnx\nlayer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n", False),  # imports it, never refers to it
    ("from flax.nnx import Optimizer\n", False),  # an import alone is no use
    ("from flax.nnx import Optimizer as O\nopt = O(model, tx, wrt=p)\n", True),
    ("import flax\nopt = flax.nnx.Optimizer(model, tx)\n", True),
    ("import flax.nnx.training.optimizer as o\nopt = o.Optimizer(model, tx)\n", True),  # the public name
    ("def make(model, tx):\n    from flax import nnx\n    return nnx.Optimizer(model, tx)\n", True),
    ("from flax import nnx\n\ndef step(optimizer: 'nnx.Optimizer'):\n    pass\n", True),  # a string annotation
    ("from flax import nnx\nx = nnx.Optimizer.update\n", True),  # a name under it
    ("from flax import nnx\n# nnx.Optimizer(model, tx)\ns = 'see nnx.Optimizer: the docs'\n", False),  # comment, prose
    ("from . import nnx\nopt = nnx.Optimizer(model, tx)\n", True),  # relative, package unknown: anything
])
def test_refers_asks_for_an_expression_that_resolves_to_the_name(text, met):
    assert tier._needs_met(Needs(refers=("flax.nnx.Optimizer",)), tier._File(text, None, False)) is met


def test_refers_follows_a_re_export_only_through_the_files_a_file_imports():
    needs = Needs(refers=("flax.nnx.Optimizer",), imports_only=True)
    text = "from shop import make\nopt = make(model)\n"
    assert tier._needs_met(needs, tier._File(text, None, False)) is False
    assert tier._needs_met(needs, tier._File(text, None, frozenset({"flax.nnx"}))) is True  # shop may re-export it
    assert tier._needs_met(needs, tier._File(text, None, frozenset({"flax.nnx"}), frozenset({"numpy"}))) is False
    assert tier._needs_met(Needs(refers=("flax.nnx.Optimizer",)), tier._File(
        text, None, frozenset({"flax.nnx"}), frozenset({"numpy"}))) is True  # connected files count without it


@pytest.mark.parametrize("text, met", [
    ("from flax import nnx\nw = layer.kernel.value\n", True),
    ("from flax import nnx\nlayer.kernel.value = 1\n", True),
    ("from flax import nnx\nw = f(x).value\n", True),  # on a call, not a name chain
    ("from flax import nnx\nw = layer.kernel[...]\nf(value=1)\ns = 'the value'\n", False),
])
def test_attributes_ask_for_an_attribute_read_or_written(text, met):
    assert tier._needs_met(Needs(attributes=("value",)), tier._File(text, None, False)) is met


def test_the_summary_travels_as_data_and_a_body_edit_keeps_the_digest_of_the_facts(tmp_path):
    from nnxlint import project

    module = tmp_path / "shop.py"
    module.write_text("from flax import nnx\n\ndef make(model, tx):\n    print(nnx.Optimizer)\n")
    facts = project.facts_of_file(str(module))
    summary = tier.ImportSummary.from_data(facts["imports"])
    assert "flax.nnx.Optimizer" in summary.refs and summary == tier.parse_summary(module.read_text())
    before = project.ProjectIndex({str(module): facts}).facts_digest(str(module))
    module.write_text("from flax import nnx\n\ndef make(model, tx):\n    print(nnx.ModelAndOptimizer)\n")
    edited = project.facts_of_file(str(module))
    assert edited["imports"]["refs"] != facts["imports"]["refs"]
    assert project.ProjectIndex({str(module): edited}).facts_digest(str(module)) == before


@pytest.mark.parametrize("text, met", [
    ("from flax import nnx\nlayer = nnx.Linear(2, 3)\n", True),
    ("from flax import nnx\nlayer = nnx.Linear(2, 3, rngs=rngs)\n", False),
    ("from flax import nnx\nlayer = nnx.Linear(*shape, **options)\n", False),  # starred: anything can be in them
    ("from flax.nnx import Linear as L\nlayer = L(2, 3)\n", True),
    ("from flax import nnx\nlayer = nnx.Linear\n", False),  # not called here
    ("from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, d, *, rngs):\n        pass\n\n"
     "block = Block(2)\n", True),  # a class of the file whose __init__ takes rngs
    ("from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, d, *, rngs):\n        pass\n\n"
     "block = Block(2, rngs=nnx.Rngs(0))\n", False),
    ("from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, d):\n        pass\n\n"
     "block = Block(2)\n", False),  # its __init__ takes no rngs
    ("from flax import nnx\n\nclass Block(nnx.Module):\n    if True:\n        def __init__(self, rngs):\n"
     "            pass\n\nblock = Block(2)\n", True),
])
def test_calls_ask_for_a_call_without_the_keywords(text, met):
    needs = Needs(calls=("flax.nnx.Linear",), constructs=("rngs",), missing_keywords=("rngs",))
    assert tier._needs_met(needs, tier._File(text, None, False)) is met


def test_constructs_open_every_call_in_a_file_linked_to_others():
    needs = Needs(constructs=("rngs",), missing_keywords=("rngs",))
    text = "from shop import Block\nblock = Block(2)\n"  # Block's __init__ is in another file
    assert tier._needs_met(needs, tier._File(text, None, False)) is False
    assert tier._needs_met(needs, tier._File(text, None, frozenset({"flax.nnx"}))) is True


@pytest.mark.parametrize("text, met", [
    ("self.layers = [nnx.Linear(2, 2, rngs=rngs) for _ in range(3)]\n", True),
    ("self.layers = []\n", True),
    ("self.heads = {'a': head}\n", True),
    ("self.layers = list(block for block in blocks)\n", True),
    ("layers = []\nself.layers = layers\n", True),  # a name the file gives a list
    ("first, rest = [a], b\nself.layers = first\n", True),
    ("def __init__(self, blocks: list[Block]):\n    self.blocks = blocks\n", True),  # annotated as a container
    ("def __init__(self, block: Block):\n    self.block = block\n    layers = [block]\n", False),
    ("self.linear = nnx.Linear(2, 2, rngs=rngs)\nself.size = n\n", False),
])
def test_stores_containers_asks_for_a_container_assigned_to_an_attribute(text, met):
    assert tier._needs_met(Needs(stores_containers=True), tier._File(text, None, False)) is met


@pytest.mark.parametrize("text, met", [
    ("import flax\n", True),
    ("from flax import nnx\n", True),
    ("from flax.nnx import jit\n", True),
    ("def f():\n    from flax.nnx.nn.linear import Linear\n", True),  # at any depth
    ("import flax.linen as nn\n", True),  # ``import a.b`` names ``a``: the tier cannot tell the binding
    ("from flax import traverse_util\nimport jax\n", False),
    ("from flax.nnxlike import x\nimport flaxen\n", False),
    ("from . import nnx\n", True),  # relative, the package unknown: cannot be told
])
def test_imports_ask_for_an_import_statement_naming_the_module(text, met):
    needs = Needs(imports=("flax", "flax.nnx", "flax.nnx."))
    assert tier._needs_met(needs, tier._File(text, None, False)) is met


def test_constructs_in_a_linked_file_ask_the_project_which_classes_take_the_parameter(tmp_path, monkeypatch):
    """A linked file keeps NNX101 only when it calls (without ``rngs``) a class of another
    file whose ``__init__`` takes ``rngs``; what the answer read goes into the file's
    cached result, so adding ``rngs`` to that class later brings the finding back."""
    from nnxlint import project
    from nnxlint.config import load_settings
    from nnxlint.project import ProjectView
    from nnxlint.runner import find_files

    shop = ("from flax import nnx\n\n\nclass Block(nnx.Module):\n    def __init__(self, n, *, rngs):\n"
            "        self.linear = nnx.Linear(n, n, rngs=rngs)\n\n\nclass Plain(nnx.Module):\n    def __init__(self, n):\n"
            "        self.n = n\n")
    (tmp_path / "shop.py").write_text(shop)
    (tmp_path / "pipeline.py").write_text("import shop\n\n\ndef make():\n    return shop.Plain(2)\n")
    (tmp_path / "train.py").write_text("from shop import Block\n\n\ndef make():\n    return Block(2)\n")
    paths = find_files(load_settings(None, tmp_path), [str(tmp_path)])
    index = project.build(paths, jobs=1)
    nnx101 = [all_rules()["NNX101"]]

    def selected(name):
        path = str(tmp_path / name)
        summary = tier.ImportSummary.from_data(index.by_path[path]["imports"])
        links = tier.is_linked(path, summary, index, ProjectView(index, path))
        return tier.rules_for((tmp_path / name).read_text(), nnx101, summary, links)

    assert selected("pipeline.py") == []  # Plain takes no rngs
    assert selected("train.py") == nnx101

    settings = load_settings(None, tmp_path)
    job = job_for(settings, {"NNX101"})  # with the result cache

    def run():
        return sorted((Path(f.path).name, f.code) for outcome in check_files(paths, job, jobs=1)
                      for f in outcome.findings)

    assert run() == [("train.py", "NNX101")]
    assert run() == [("train.py", "NNX101")]  # served from the cache
    (tmp_path / "shop.py").write_text(shop.replace("def __init__(self, n):", "def __init__(self, n, *, rngs):"))
    assert run() == [("pipeline.py", "NNX101"), ("train.py", "NNX101")]
    monkeypatch.setenv(tier.FULL_ENVIRONMENT, "1")
    assert run() == [("pipeline.py", "NNX101"), ("train.py", "NNX101")]


def test_a_layer_re_exported_by_another_file_keeps_nnx101_only_where_it_is_called(tmp_path):
    from nnxlint import project
    from nnxlint.config import load_settings
    from nnxlint.project import ProjectView
    from nnxlint.runner import find_files

    (tmp_path / "compat.py").write_text("from flax.nnx import Linear as Dense\n\n\ndef helper():\n    return 1\n")
    (tmp_path / "use.py").write_text("from compat import Dense\n\nlayer = Dense(2, 3)\n")
    (tmp_path / "other.py").write_text("import compat\n\nvalue = compat.helper()\n")
    paths = find_files(load_settings(None, tmp_path), [str(tmp_path)])
    index = project.build(paths, jobs=1)
    nnx101 = [all_rules()["NNX101"]]

    def selected(name, view=True):
        path = str(tmp_path / name)
        summary = tier.ImportSummary.from_data(index.by_path[path]["imports"])
        links = tier.is_linked(path, summary, index, ProjectView(index, path) if view else None)
        return tier.rules_for((tmp_path / name).read_text(), nnx101, summary, links)

    assert selected("use.py") == nnx101
    assert selected("other.py") == []
    assert selected("other.py", view=False) == nnx101  # without the index's answers: any link may re-export
    found = [(Path(finding.path).name, finding.code) for outcome in check_files(paths, job_for_codes(tmp_path), jobs=1)
             for finding in outcome.findings if finding.code == "NNX101"]
    assert found == [("use.py", "NNX101")]
