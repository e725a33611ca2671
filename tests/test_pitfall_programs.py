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

LEGACY_MODULE = textwrap.dedent("""\
    import json
    import warnings

    warnings.filterwarnings("error", message=".*now deprecated", category=DeprecationWarning)

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx


    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.layers = [nnx.Linear(4, 4, rngs=rngs) for _ in range(2)]
            self.scale = jnp.ones((4,))
            self.calls = nnx.Variable(jnp.array(0))

        def __call__(self, x):
            self.calls.value += 1
            for layer in self.layers:
                x = jax.nn.relu(layer(x))
            return (x * self.scale).sum(axis=1, keepdims=True)


    def loss_fn(model, x, y):
        return jnp.mean((model(x) - y) ** 2)


    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss


    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = x.sum(axis=1, keepdims=True)
    model = Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    losses = [float(train_step(model, optimizer, x, y)) for _ in range(5)]
    print(json.dumps({"losses": losses, "scale_trained": bool(jnp.any(jnp.asarray(model.scale) != 1.0)),
                      "calls": int(model.calls.value)}))
""")

# The failures the other rules describe, measured in one process (one import of Flax).
FAILURES = textwrap.dedent("""\
    import json
    import warnings

    import jax
    import jax.numpy as jnp
    from flax import nnx

    outcome = {}

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(3, 3, rngs=rngs)
            self.bn = nnx.BatchNorm(3, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x, rngs=None):
            return self.drop(self.bn(self.linear(x)), rngs=rngs)

    def error(thunk):
        try:
            thunk()
        except Exception as caught:
            return f"{type(caught).__name__}: {caught}"
        return None

    x = jax.random.normal(jax.random.key(1), (4, 3))
    model = Net(nnx.Rngs(0))
    # NNX106: a constant-seed Rngs made in the step gives the same mask at every call
    step = nnx.jit(lambda model, x: model(x, rngs=nnx.Rngs(dropout=0)))
    outcome["constant_rngs_same"] = bool((step(model, x) == step(model, x)).all())
    own = nnx.jit(lambda model, x: model(x))
    outcome["own_stream_same"] = bool((own(model, x) == own(model, x)).all())

    # NNX107: a raw array attribute gets no gradient
    class Raw(nnx.Module):
        def __init__(self):
            self.w = jnp.ones((3,))
            self.p = nnx.Param(jnp.ones((3,)))

    grads = nnx.grad(lambda m: (m.w * m.p).sum())(Raw())
    outcome["raw_array_gradients"] = sorted(str(path[0]) for path, _ in nnx.to_flat_state(grads))

    # NNX111: Rngs with a params stream only cannot build a Dropout
    outcome["params_only_rngs"] = error(lambda: Net(nnx.Rngs(params=0)))

    # NNX112: Param-only filters on a model with BatchNorm/Dropout state
    outcome["param_only_split"] = error(lambda: nnx.split(model, nnx.Param))

    # NNX113: a seed where an Rngs belongs
    outcome["int_rngs"] = error(lambda: nnx.Linear(2, 2, rngs=0))

    # NNX114: a global module updated inside a jitted function
    def reset():
        model.linear.bias[...] = jnp.ones(3)
    outcome["captured_update"] = error(nnx.jit(reset))

    # NNX109: .value warns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.linear.kernel.value
    outcome["value_warning"] = [str(w.message) for w in caught if w.category is DeprecationWarning]
    print(json.dumps(outcome))
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


def test_legacy_module_fails_to_build_until_fixed(tmp_path, run_cli):
    program = tmp_path / "train.py"
    program.write_text(LEGACY_MODULE)
    failed = _run(program)
    assert "ValueError: Found data on value of type '<class 'list'>' assigned to static attribute" in failed.stderr

    fixed = run_cli("check", "--select", "NNX107,NNX108,NNX109", "--fix", "--unsafe-fixes", program)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    fixed_text = program.read_text()
    assert "self.layers = nnx.List([nnx.Linear(4, 4, rngs=rngs) for _ in range(2)])" in fixed_text
    assert "self.scale = nnx.Param(jnp.ones((4,)))" in fixed_text
    assert "self.calls[...] += 1" in fixed_text and "int(model.calls[...])" in fixed_text
    result = _run(program)  # also proves no '.value' DeprecationWarning is left: the program makes it an error
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    losses = outcome["losses"]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert outcome["scale_trained"]  # a Param now: the optimizer updates it
    assert outcome["calls"] == 5


def test_the_failures_the_rules_describe(tmp_path):
    program = tmp_path / "failures.py"
    program.write_text(FAILURES)
    result = _run(program)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["constant_rngs_same"] and not outcome["own_stream_same"]  # NNX106
    assert outcome["raw_array_gradients"] == ["p"]  # NNX107
    assert outcome["params_only_rngs"] == "KeyError: \"No RngStream named 'dropout' found in Rngs.\""  # NNX111
    assert outcome["param_only_split"].startswith("ValueError: Non-exhaustive filters")  # NNX112
    assert outcome["int_rngs"] == "AttributeError: 'int' object has no attribute 'params'"  # NNX113
    assert outcome["captured_update"].startswith(  # NNX114
        "TraceContextError: Cannot mutate Param from a different trace level")
    assert outcome["value_warning"] and outcome["value_warning"][0].startswith(
        "'.value' access is now deprecated")  # NNX109


def test_flax_tables_match_the_installed_flax():
    from flax import nnx

    from nnxlint.flax_api import LAYER_VARIABLES, MODULE_CLASSES, NNX_TRANSFORM_KEYWORDS, OPTIMIZER_CLASSES

    import inspect

    for name in MODULE_CLASSES:
        assert issubclass(getattr(nnx, name), nnx.Module), name
    for name in OPTIMIZER_CLASSES:
        assert issubclass(getattr(nnx, name), nnx.Optimizer), name
    for transform, keywords in NNX_TRANSFORM_KEYWORDS.items():
        parameters = inspect.signature(getattr(nnx, transform)).parameters
        assert keywords <= set(parameters), (transform, keywords - set(parameters))
    rngs = nnx.Rngs(0)
    layers = {
        "Linear": nnx.Linear(2, 2, rngs=rngs), "LinearGeneral": nnx.LinearGeneral(2, 2, rngs=rngs),
        "Conv": nnx.Conv(2, 2, 3, rngs=rngs), "ConvTranspose": nnx.ConvTranspose(2, 2, 3, rngs=rngs),
        "Embed": nnx.Embed(2, 2, rngs=rngs), "LayerNorm": nnx.LayerNorm(2, rngs=rngs),
        "RMSNorm": nnx.RMSNorm(2, rngs=rngs), "GroupNorm": nnx.GroupNorm(4, num_groups=2, rngs=rngs),
        "BatchNorm": nnx.BatchNorm(2, rngs=rngs),
    }
    assert set(layers) == set(LAYER_VARIABLES)
    for name, layer in layers.items():
        found = {attribute: type(value).__name__ for attribute, value in vars(layer).items()
                 if isinstance(value, nnx.Variable)}
        assert found == LAYER_VARIABLES[name], name
