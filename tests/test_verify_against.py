"""`nnxlint verify --against REV`: the user's own converted model against its Linen original.

Each test works in a temporary git repository holding a Linen model file with
an init site, committed and then converted by `nnxlint check --fix
--unsafe-fixes`.  Each verification starts one worker process (JAX import
included), a few seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnxlint.cli import main
from nnxlint.verify.sites import SiteError, parse_dtypes, parse_example, parse_shapes

# a user's Linen model file: two blocks (Dense, BatchNorm, Dropout) and an optax training loop
LINEN_MODEL = (Path(__file__).parent / "user_projects" / "classifier_linen.py").read_text(encoding="utf-8")
# attention-weight dropout: no off switch but eval mode, so its masks must be aligned even "with dropout off"
ATTENTION_MODEL = (Path(__file__).parent / "user_projects" / "attention_linen.py").read_text(encoding="utf-8")


def git(repository: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repository), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


pytestmark = pytest.mark.usefixtures("jax_compilation_cache")


MUTATIONS = {  # file -> (edit to the converted file, the check that must fail, text in its detail)
    # a layer width: the weights cannot even be loaded; a mismatch (exit 1) that names the path
    "width.py": (("self.dense_0 = nnx.Linear(hidden, classes, rngs=rngs)",
                  "self.dense_0 = nnx.Linear(hidden, classes + 1, rngs=rngs)"), "weights transplant",
                 "shape mismatch for params Dense_0/bias: Linen has (3,), the NNX variable dense_0/bias has (4,)"),
    "activation.py": (("x = nnx.relu(x)", "x = nnx.gelu(x)"), "eval outputs", "shapes (8, 3)"),
    # a normalisation no longer called: its running statistics start at (0, 1), so only train
    # mode, which normalises with the batch's statistics, shows it clearly
    "norm_not_called.py": (("        x = self.batch_norm_0(x)\n", ""), "train outputs (dropout off)", "shapes (8, 3)"),
    # removed altogether: its weights have nowhere to go
    "norm_removed.py": (("        self.batch_norm_0 = nnx.BatchNorm(features, momentum=0.9, rngs=rngs)\n", ""),
                        "weights transplant", "Block_0/BatchNorm_0 has no counterpart"),
    "dropout_rate.py": (("rate=0.2, rngs=rngs", "rate=0.5, rngs=rngs"), "train outputs (dropout on, same masks)",
                        "dropout rates in call order: Linen [0.1, 0.2], NNX [0.1, 0.5]"),
}


@pytest.fixture(scope="module")
def converted_repository(tmp_path_factory) -> Path:
    """A repository whose HEAD holds Linen model files and whose working tree holds their conversion."""
    repository = tmp_path_factory.mktemp("project")
    names = ["models.py", *MUTATIONS, "attention.py"]
    for name in names:
        (repository / name).write_text(ATTENTION_MODEL if name == "attention.py" else LINEN_MODEL, encoding="utf-8")
    git(repository, "init", "-q", ".")
    git(repository, "add", *names)
    git(repository, "commit", "-q", "-m", "Linen models")
    # -j 1: no fork() in a test process that may already run JAX's threads
    fixed = CliRunner().invoke(main, ["check", "--fix", "--unsafe-fixes", "--no-cache", "-j", "1", str(repository)])
    assert fixed.exit_code == 0, fixed.output
    assert "class Classifier(nnx.Module)" in (repository / "models.py").read_text(encoding="utf-8")
    return repository


@pytest.fixture
def project(converted_repository: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(converted_repository, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def verify(*arguments, output_format: str = "json"):
    """Runs `nnxlint verify --against HEAD ...`; returns (exit code, parsed JSON or the output)."""
    result = CliRunner().invoke(main, ["verify", "--against", "HEAD", "--output-format", output_format,
                                       "--timeout", "300", *map(str, arguments)])
    if output_format == "json" and result.stdout.lstrip().startswith("{"):
        return result.exit_code, json.loads(result.stdout)
    return result.exit_code, result.output


def checks(model: dict) -> dict[str, dict]:
    return {check["name"]: check for check in model["checks"]}


def test_the_conversion_agrees_with_the_linen_model(project: Path, tmp_path: Path, monkeypatch):
    # the user's code runs isolated: modules of the current directory or PYTHONPATH are not seen
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    for name in ("models", "optax"):
        (shadow / f"{name}.py").write_text(f"raise RuntimeError('the wrong {name} was imported')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    monkeypatch.chdir(shadow)
    code, report = verify(project / "models.py", "--steps", "2")
    assert code == 0, report
    (model,) = report["classes"]
    assert (model["file"], model["class_name"], model["status"]) == ("models.py", "Classifier", "pass")
    assert model["covers"] == ["Block"] and model["origin"].startswith("the init site at models.py:")
    found = checks(model)
    for name in ("weights transplant", "eval outputs", "train outputs (dropout off)",
                 "batch_stats after a train step", "train outputs (dropout on, same masks)",
                 "SGD losses (2 steps)", "eval outputs after 2 steps"):
        assert found[name]["passed"], found[name]
    import jax  # the limit is the stated CPU tolerance, looser on an accelerator

    from nnxlint.verify.compare import tolerance_for

    assert found["eval outputs"]["value"] <= found["eval outputs"]["limit"] == tolerance_for(jax.default_backend(), 1e-5)
    assert not list(project.rglob("__pycache__")), "the user's tree got bytecode caches"


@pytest.fixture(scope="module")
def mutated_report(converted_repository: Path, tmp_path_factory) -> tuple[int, dict, str]:
    """One verification of every mutated file, and of the unchanged attention model (one worker process)."""
    project = tmp_path_factory.mktemp("mutated") / "project"
    shutil.copytree(converted_repository, project)
    for name, ((old, new), _, _) in MUTATIONS.items():
        edit(project / name, old, new)
    code, report = verify(*(project / name for name in [*MUTATIONS, "attention.py"]), "--steps", "1")
    from nnxlint.verify.against import render_text

    return code, report, render_text(report["classes"], "HEAD")


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_changed_conversion_fails_and_says_where(mutated_report, name: str):
    code, report, _ = mutated_report
    assert code == 1, report
    (model,) = [model for model in report["classes"] if model["file"] == name]
    assert (model["class_name"], model["status"]) == ("Classifier", "fail")
    _, failing, detail = MUTATIONS[name]
    failed = {check_name: check for check_name, check in checks(model).items() if not check["passed"]}
    assert failing in failed and detail in failed[failing]["detail"], failed
    if name == "dropout_rate.py":  # only the dropout rate differs
        assert list(failed) == [failing] and failed[failing]["value"] > failed[failing]["limit"]


def test_attention_dropout_draws_the_same_masks_in_both(mutated_report):
    _, report, _ = mutated_report
    (model,) = [model for model in report["classes"] if model["file"] == "attention.py"]
    assert model["status"] == "pass", model
    found = checks(model)
    assert "2 dropout mask(s)" in found["train outputs (dropout on, same masks)"]["detail"]
    assert found["SGD losses (1 step)"]["passed"] and found["train outputs (dropout off)"]["passed"]


def test_text_and_markdown_reports_name_the_class_and_the_difference(mutated_report, tmp_path: Path):
    from nnxlint.verify.against import write_markdown

    _, report, text = mutated_report
    write_markdown(report["classes"], "HEAD", tmp_path / "report.md")
    markdown = (tmp_path / "report.md").read_text()
    assert "## activation.py:Classifier" in markdown and "| eval outputs |" in markdown
    assert "- weights transplant: shape mismatch for params Dense_0/bias" in markdown
    assert "activation.py:Classifier" in text
    assert "eval outputs: shapes (8, 3)" in text and "FAIL" in text
    assert "weights transplant: shape mismatch for params Dense_0/bias" in text
    assert f"{len(MUTATIONS) + 1} class(es) against HEAD: 1 pass, {len(MUTATIONS)} fail" in text


def test_examples_replace_the_init_site_and_unbuildable_ones_exit_2(project: Path):
    good = f"{project / 'models.py'}:Classifier(hidden=16, classes=3)"
    bad = f"{project / 'models.py'}:Classifier(depth=3)"
    code, report = verify("--example", good, "--input-shape", "4,8", "--example", bad, "--input-shape", "4,8")
    assert code == 2, report
    built, unbuilt = report["classes"]
    assert (built["origin"], built["status"]) == ("--example", "pass")
    assert unbuilt["status"] == "error" and "depth" in unbuilt["error"] and "Linen `Classifier`" in unbuilt["error"]


def test_timeout_is_an_error(project: Path):
    code, report = verify(project / "models.py", "--timeout", "0.2")
    assert code == 2 and "timed out after 0.2 s" in report["classes"][0]["error"]


# -- set-up problems are found before any user code runs ----------------------------

def test_a_model_file_without_init_site_is_verified_with_an_example(tmp_path: Path):
    source = LINEN_MODEL.split("def train")[0]  # the classes alone: nothing builds them
    (tmp_path / "models.py").write_text(source, encoding="utf-8")
    git(tmp_path, "init", "-q", ".")
    git(tmp_path, "add", "models.py")
    git(tmp_path, "commit", "-q", "-m", "Linen model")
    fixed = CliRunner().invoke(main, ["check", "--fix", "--unsafe-fixes", "--no-cache", str(tmp_path / "models.py")])
    assert fixed.exit_code == 0 and "class Classifier(nnx.Module)" in (tmp_path / "models.py").read_text()
    code, report = verify(tmp_path / "models.py")  # found before any user code runs
    assert code == 2
    assert "no init site" in report["classes"][0]["error"] and "--example" in report["classes"][0]["error"]
    code, report = verify("--example", f"{tmp_path / 'models.py'}:Classifier(hidden=16, classes=3)",
                          "--input-shape", "2,8")
    assert code == 0, report
    (model,) = report["classes"]
    assert (model["class_name"], model["origin"], model["covers"]) == ("Classifier", "--example", ["Block"])
    assert checks(model)["train outputs (dropout on, same masks)"]["passed"]


def test_only_verify_against_imports_the_users_code(tmp_path: Path):
    marker = tmp_path / "imported"
    model = tmp_path / "models.py"
    model.write_text(f"open({str(marker)!r}, 'w').close()\n" + LINEN_MODEL, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "--fix", "--unsafe-fixes", "--no-cache", str(model)])
    assert result.exit_code == 0, result.output
    assert "class Classifier(nnx.Module)" in model.read_text() and not marker.exists()


def test_converted_classes_the_init_site_does_not_build_need_an_example():
    from nnxlint.verify.against import _init_site_plan

    (model,) = _init_site_plan(LINEN_MODEL, "models.py", ["Block", "Classifier"])
    assert (model.class_name, model.covers, model.mode) == ("Classifier", ["Block"],
                                                           {"name": "train", "eval_value": False})
    (error,) = _init_site_plan(LINEN_MODEL, "models.py", ["Block"])  # per-class: Classifier stays Linen
    assert error["status"] == "error" and "which stays Linen" in error["error"]
    assert "--example 'models.py:Block(arguments)'" in error["error"]


def test_unknown_revision_and_nothing_converted_exit_2(project: Path):
    result = CliRunner().invoke(main, ["verify", "--against", "no-such-rev", str(project / "models.py")])
    assert result.exit_code == 2 and "unknown git revision 'no-such-rev'" in result.output
    git(project, "add", "models.py")
    git(project, "commit", "-q", "-m", "converted")
    result = CliRunner().invoke(main, ["verify", "--against", "HEAD", str(project / "models.py")])
    assert result.exit_code == 2 and "no Linen module class of HEAD is converted" in result.output


def test_example_and_shape_parsing():
    example = parse_example("src/models.py:ResNet(stage_sizes=[1, 1], head={'a': 1})")
    assert (example.path, example.class_name) == ("src/models.py", "ResNet")
    assert example.constructor == "ResNet(stage_sizes=[1, 1], head={'a': 1})"
    assert parse_example("models.py").constructor is None
    assert parse_shapes("1,16,16,3") == [[1, 16, 16, 3]]
    assert parse_shapes("2,10;2,5") == [[2, 10], [2, 5]]
    for bad in ("models.py:1 + 2", "models:ResNet()", "models.py:ResNet("):
        with pytest.raises(SiteError):
            parse_example(bad)
    with pytest.raises(SiteError):
        parse_shapes("1,x")
    assert parse_dtypes("int32", 2) == ["int32", "int32"] and parse_dtypes("int32;float32", 2) == ["int32", "float32"]
    for bad, count in (("int33", 1), ("int32;int32", 3)):
        with pytest.raises(SiteError):
            parse_dtypes(bad, count)
    result = CliRunner().invoke(main, ["verify", "--example", "models.py:A()"])
    assert result.exit_code == 2 and "--example needs --against REV" in result.output
    result = CliRunner().invoke(main, ["verify", "--against", "HEAD", "-k", "mlp"])
    assert result.exit_code == 2 and "apply to the fixture corpus" in result.output
