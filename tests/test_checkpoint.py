"""`nnxlint transplant`: a trained Linen checkpoint becomes the converted NNX model's orbax checkpoint.

The Linen model is trained for a few SGD steps here, saved with orbax (and as a
flax.serialization msgpack file), transplanted by the command into the model
that `nnxlint check --fix --unsafe-fixes` converted, restored the way NNX
restores a checkpoint, and compared in eval mode.  Each command starts one
worker process (JAX import included).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from click.testing import CliRunner
from flax import nnx, serialization

from nnxlint.cli import main
from nnxlint.verify.compare import max_relative_difference

LINEN_MODEL = (Path(__file__).parent / "user_projects" / "classifier_linen.py").read_text(encoding="utf-8")
EXAMPLE = "Classifier(hidden=16, classes=3)"
pytestmark = pytest.mark.usefixtures("jax_compilation_cache")


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(project with the converted models.py, trained Linen variables, the Linen model, test inputs)."""
    project = tmp_path_factory.mktemp("project")
    (project / "models.py").write_text(LINEN_MODEL, encoding="utf-8")
    linen = _import(project / "models.py", "nnxlint_test_linen_classifier")
    model = linen.Classifier(hidden=16, classes=3)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8)))
    x = jax.random.normal(jax.random.key(1), (16, 8))
    y = (x[:, 0] > 0).astype(jnp.int32)

    def loss(params, batch_stats, key):
        logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                      rngs={"dropout": key}, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates["batch_stats"]

    @jax.jit
    def step(params, batch_stats, key):
        (_, batch_stats), grads = jax.value_and_grad(loss, has_aux=True)(params, batch_stats, key)
        return jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), batch_stats

    params, batch_stats = variables["params"], variables["batch_stats"]
    for index in range(3):  # a few steps of SGD: weights and statistics away from their initial values
        params, batch_stats = step(params, batch_stats, jax.random.key(index))
    trained_variables = {"params": params, "batch_stats": batch_stats}
    fixed = CliRunner().invoke(main, ["check", "--fix", "--unsafe-fixes", "--no-cache", str(project / "models.py")])
    assert fixed.exit_code == 0, fixed.output
    return project, trained_variables, model, jax.random.normal(jax.random.key(2), (8, 8))


def transplant(checkpoint: Path, output: Path, example: str = EXAMPLE, *extra: str):
    result = CliRunner().invoke(main, ["transplant", str(checkpoint), "--example", example, "--input-shape", "1,8",
                                       "--output", str(output), "--output-format", "json", *extra])
    report = json.loads(result.stdout) if result.stdout.lstrip().startswith("{") else result.output
    return result.exit_code, report


def restored_outputs(project: Path, output: Path, x) -> np.ndarray:
    """The NNX way back: an abstract model, its state restored from the orbax checkpoint."""
    converted = _import(project / "models.py", f"nnxlint_test_nnx_classifier_{output.name}")
    abstract = nnx.eval_shape(lambda: converted.Classifier(8, hidden=16, classes=3, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    with ocp.StandardCheckpointer() as checkpointer:
        model = nnx.merge(graphdef, checkpointer.restore(output, state))
    model.eval()
    return np.asarray(model(x))


def test_orbax_checkpoint_of_a_trained_linen_model(trained, tmp_path: Path):
    project, variables, model, x = trained
    checkpoint = tmp_path / "linen_checkpoint"
    with ocp.PyTreeCheckpointer() as checkpointer:  # a TrainState-like tree, as training scripts save it
        checkpointer.save(checkpoint, {"step": 3, "opt_state": {"momentum": jnp.zeros(3)}, **variables})
    code, report = transplant(checkpoint, tmp_path / "nnx_checkpoint", f"{project / 'models.py'}:{EXAMPLE}")
    assert code == 0, report
    assert report["status"] == "pass" and not report["problems"] and report["ignored"] == ["opt_state", "step"]
    assert report["arrays"] == {"params": 10, "batch_stats": 4}
    assert {"collection": "batch_stats", "nnx": "block_1/batch_norm_0/mean", "from": "Block_1"} in report["mapped"]
    expected = model.apply(variables, x, train=False)
    assert max_relative_difference(restored_outputs(project, tmp_path / "nnx_checkpoint", x), expected) <= 1e-6


def test_msgpack_checkpoint(trained, tmp_path: Path):
    project, variables, model, x = trained
    checkpoint = tmp_path / "linen.msgpack"
    checkpoint.write_bytes(serialization.to_bytes(variables))
    code, report = transplant(checkpoint, tmp_path / "nnx_checkpoint", f"{project / 'models.py'}:{EXAMPLE}")
    assert code == 0, report
    assert report["checkpoint"].startswith("msgpack file")
    expected = model.apply(variables, x, train=False)
    assert max_relative_difference(restored_outputs(project, tmp_path / "nnx_checkpoint", x), expected) <= 1e-6


def test_every_path_that_does_not_map_is_reported_and_nothing_is_written(trained, tmp_path: Path):
    project, variables, _, _ = trained
    params = jax.tree.map(np.asarray, variables["params"])
    params["Block_1"]["Dense_0"]["kernel"] = np.zeros((16, 17), np.float32)  # mis-shaped
    del params["Dense_0"]["bias"]  # missing
    params["Head_9"] = {"kernel": np.zeros((2, 2), np.float32)}  # extra
    checkpoint = tmp_path / "broken.msgpack"
    checkpoint.write_bytes(serialization.to_bytes({"params": params, "batch_stats": variables["batch_stats"]}))
    output = tmp_path / "nnx_checkpoint"
    code, report = transplant(checkpoint, output, f"{project / 'models.py'}:{EXAMPLE}")
    assert code == 1, report
    problems = "\n".join(report["problems"])
    assert "shape mismatch for params Block_1/Dense_0/kernel: Linen has (16, 17)" in problems
    assert "Head_9 has no counterpart in the NNX model" in problems
    assert "left without a value from the checkpoint's 'params': block_1/dense_0/kernel, dense_0/bias" in problems
    assert len(report["problems"]) == 3 and not output.exists()


def test_unusable_arguments_exit_2(trained, tmp_path: Path):
    project, _, _, _ = trained
    result = CliRunner().invoke(main, ["transplant", str(project / "models.py"), "--example", "models.py",
                                       "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and "name the NNX model class" in result.output
    result = CliRunner().invoke(main, ["transplant", str(project), "--example", f"{project / 'models.py'}:{EXAMPLE}",
                                       "--output", str(project)])
    assert result.exit_code == 2 and "already exists" in result.output


def test_git_project_root_is_found(trained):
    from nnxlint.checkpoint import model_spec

    project, _, _, _ = trained
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    root, spec = model_spec(f"{project / 'models.py'}:{EXAMPLE}", "1,8", "float32")
    assert root.resolve() == project.resolve() and spec.relative == "models.py"
    assert (spec.class_name, spec.input_shapes, spec.input_dtypes) == ("Classifier", [[1, 8]], ["float32"])


def test_orbax_is_in_the_verify_extra_only():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert any(requirement.startswith("orbax-checkpoint") for requirement in project["optional-dependencies"]["verify"])
    assert not any("orbax" in requirement for requirement in project["dependencies"])


def test_without_the_verify_extra_both_commands_say_what_to_install(monkeypatch, tmp_path: Path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in ("jax", "flax", "optax", "orbax") else real(name, *args))
    for arguments in (["verify", "--against", "HEAD"],
                      ["transplant", str(tmp_path), "--example", "m.py:M()", "--output", str(tmp_path / "out")]):
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 2, result.output
        assert "pip install 'nnxlint[verify]'" in result.output and "Traceback" not in result.output
