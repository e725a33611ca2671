"""Issue 3's promise, executed: a program written for Flax 0.10 NNX is flagged, fails
on the installed Flax, and after ``nnxlint check --fix`` runs and trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("flax.nnx")

LEGACY_PROGRAM = '''\
import json

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, din: int, dhidden: int, dout: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(din, dhidden, rngs=rngs)
        self.out = nnx.Linear(dhidden, dout)  # Flax 0.10 users forgot this one too

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(grads)
    return loss


if __name__ == "__main__":
    x = jax.random.normal(jax.random.key(0), (32, 4))
    y = jnp.sum(x, axis=1, keepdims=True)
    model = MLP(4, 16, 1, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2))
    print(json.dumps([float(train_step(model, optimizer, x, y)) for _ in range(30)]))
'''


def _run(path):
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_flax_010_program_is_fixed_and_trains(tmp_path, run_cli):
    program = tmp_path / "legacy.py"
    program.write_text(LEGACY_PROGRAM)

    findings = json.loads(run_cli("check", program, "--output-format", "json").stdout)
    assert sorted(f["code"] for f in findings) == ["NNX101", "NNX102", "NNX103"]
    assert all(f["fix"] and f["fix"]["applicability"] == "safe" for f in findings)

    before = _run(program)
    assert before.returncode != 0 and "TypeError" in before.stderr

    fixed = run_cli("check", program, "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    source = program.read_text()
    assert "nnx.Linear(dhidden, dout, rngs=rngs)  # Flax 0.10 users forgot this one too" in source
    assert "nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)" in source
    assert "optimizer.update(model, grads)" in source

    after = _run(program)
    assert after.returncode == 0, after.stderr
    losses = json.loads(after.stdout)
    assert len(losses) == 30 and losses[-1] < 0.2 * losses[0]
    assert all(later <= earlier * 1.05 for earlier, later in zip(losses, losses[1:]))
