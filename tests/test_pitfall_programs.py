"""The NNX pitfall rules against real runs: each program is executed on CPU before
and after ``nnxlint check --fix``, to show the failure the rule describes and that
the fixed program trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("flax.nnx")

JAX_JIT_TRAIN_STEP = textwrap.dedent("""\
    import json

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx


    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.hidden = nnx.Linear(4, 8, rngs=rngs)
            self.out = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.relu(self.hidden(x)))


    def loss_fn(model, x, y):
        return jnp.mean((model(x) - y) ** 2)


    @jax.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss


    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = x.sum(axis=1, keepdims=True)
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(5e-2), wrt=nnx.Param)
    print(json.dumps([float(train_step(model, optimizer, x, y)) for _ in range(5)]))
""")

JAX_GRAD_WITH_DROPOUT = textwrap.dedent("""\
    import json

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx


    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.linear = nnx.Linear(4, 1, rngs=rngs)
            self.dropout = nnx.Dropout(0.1, rngs=rngs)

        def __call__(self, x):
            return self.linear(self.dropout(x))


    def loss_fn(model, x, y):
        return jnp.mean((model(x) - y) ** 2)


    def train_step(model, optimizer, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss


    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = x.sum(axis=1, keepdims=True)
    model = Net(nnx.Rngs(0))
    model.eval()  # dropout off: the losses are comparable from step to step
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    print(json.dumps([float(train_step(model, optimizer, x, y)) for _ in range(5)]))
""")


def _run(path):
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore"})


def _losses(path):
    result = _run(path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _fix(run_cli, path, code, *extra):
    found = run_cli("check", "--select", code, "--output-format", "json", path)
    assert [finding["code"] for finding in json.loads(found.stdout)] == [code], found.stdout + found.stderr
    fixed = run_cli("check", "--select", code, "--fix", *extra, path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    return path.read_text()


def test_jax_jit_train_step_is_stuck_until_fixed(tmp_path, run_cli):
    program = tmp_path / "train.py"
    program.write_text(JAX_JIT_TRAIN_STEP)
    stuck = _losses(program)
    assert len(set(stuck)) == 1, f"jax.jit dropped the updates, the loss cannot move: {stuck}"

    fixed_text = _fix(run_cli, program, "NNX104")
    assert "@nnx.jit\ndef train_step" in fixed_text
    trained = _losses(program)
    assert trained[0] == stuck[0]  # same model, same data: only the updates differ
    assert all(later < earlier for earlier, later in zip(trained, trained[1:])), trained
    assert trained[-1] < 0.5 * trained[0]


def test_jax_grad_over_dropout_model_fails_until_fixed(tmp_path, run_cli):
    program = tmp_path / "train.py"
    program.write_text(JAX_GRAD_WITH_DROPOUT)
    failed = _run(program)
    assert failed.returncode != 0
    assert "TypeError: grad requires real- or complex-valued inputs" in failed.stderr

    fixed_text = _fix(run_cli, program, "NNX105", "--unsafe-fixes")
    assert "nnx.value_and_grad(loss_fn)(model, x, y)" in fixed_text
    trained = _losses(program)
    assert all(later < earlier for earlier, later in zip(trained, trained[1:])), trained
