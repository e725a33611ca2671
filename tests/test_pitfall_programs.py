"""The NNX pitfall rules against real runs: each program is flagged, fixed with
``nnxlint check --fix`` on a copy, and both versions are executed on CPU (in one
process, to import JAX once), to show the failure the rule describes and that the
fixed program trains.  A last program measures the failures the other rules
describe, so that their documentation stays true on the installed Flax."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

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

    # NNX115: Linen's init on an NNX module
    outcome["init_on_nnx"] = error(lambda: model.init(jax.random.key(0), jnp.ones((1, 2))))

    # NNX109: .value warns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.linear.kernel.value
    outcome["value_warning"] = [str(w.message) for w in caught if w.category is DeprecationWarning]
    print(json.dumps(outcome))
""")


# Runs programs one after the other in one process, so that JAX and Flax are imported
# once: {path: {"stdout": ..., "error": "Type: message" or None}}.
RUNNER = textwrap.dedent("""\
    import contextlib, io, json, runpy, sys, warnings

    results = {}
    for path in sys.argv[1:]:
        output = io.StringIO()
        error = None
        with warnings.catch_warnings(), contextlib.redirect_stdout(output):
            try:
                runpy.run_path(path, run_name="__main__")
            except Exception as caught:
                error = f"{type(caught).__name__}: {caught}"
        results[path] = {"stdout": output.getvalue(), "error": error}
    print(json.dumps(results))
""")

# name -> (program, rules whose fixes are applied, extra options of ``nnxlint check --fix``)
FIXED_PROGRAMS = {
    "jax_jit": (JAX_JIT_TRAIN_STEP, "NNX104", ()),
    "jax_grad": (JAX_GRAD_WITH_DROPOUT, "NNX105", ("--unsafe-fixes",)),
    "legacy": (LEGACY_MODULE, "NNX107,NNX108,NNX109", ("--unsafe-fixes",)),
}


def _nnxlint(*arguments):
    return subprocess.run([sys.executable, "-m", "nnxlint", *map(str, arguments)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@dataclass
class Outcome:
    flagged: list  # codes `nnxlint check` reports on the original program
    fixed_text: str
    before: dict  # {"stdout", "error"} of the original program
    after: dict  # of the program after `nnxlint check --fix`

    def last_json(self, run):
        assert run["error"] is None, run["error"]
        return json.loads(run["stdout"].strip().splitlines()[-1])


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every program flagged, fixed by the CLI, and run before and after the fix."""
    folder = tmp_path_factory.mktemp("pitfalls")
    flagged, fixed = {}, {}
    for name, (program, codes, options) in FIXED_PROGRAMS.items():
        before, after = folder / f"{name}_before.py", folder / f"{name}_after.py"
        before.write_text(program)
        after.write_text(program)
        found = _nnxlint("check", "--select", codes, "--output-format", "json", before)
        flagged[name] = sorted(finding["code"] for finding in json.loads(found.stdout))
        result = _nnxlint("check", "--select", codes, "--fix", *options, after)
        assert result.returncode == 0, result.stdout + result.stderr
        fixed[name] = after.read_text()
    failures = folder / "failures.py"
    failures.write_text(FAILURES)
    runner = folder / "runner.py"
    runner.write_text(RUNNER)
    paths = [str(folder / f"{name}_{when}.py") for name in FIXED_PROGRAMS for when in ("before", "after")]
    result = subprocess.run([sys.executable, str(runner), *paths, str(failures)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    found = {name: Outcome(flagged[name], fixed[name], runs[str(folder / f"{name}_before.py")],
                           runs[str(folder / f"{name}_after.py")]) for name in FIXED_PROGRAMS}
    found["failures"] = runs[str(failures)]
    return found


def _decreasing(losses):
    return all(later < earlier for earlier, later in zip(losses, losses[1:]))


def test_jax_jit_train_step_is_stuck_until_fixed(outcomes):
    outcome = outcomes["jax_jit"]
    assert outcome.flagged == ["NNX104"]
    stuck = outcome.last_json(outcome.before)
    assert len(set(stuck)) == 1, f"jax.jit dropped the updates, the loss cannot move: {stuck}"
    assert "@nnx.jit\ndef train_step" in outcome.fixed_text
    trained = outcome.last_json(outcome.after)
    assert trained[0] == stuck[0]  # same model, same data: only the updates differ
    assert _decreasing(trained) and trained[-1] < 0.5 * trained[0], trained


def test_jax_grad_over_dropout_model_fails_until_fixed(outcomes):
    outcome = outcomes["jax_grad"]
    assert outcome.flagged == ["NNX105"]
    assert outcome.before["error"].startswith("TypeError: grad requires real- or complex-valued inputs")
    assert "nnx.value_and_grad(loss_fn)(model, x, y)" in outcome.fixed_text
    trained = outcome.last_json(outcome.after)
    assert _decreasing(trained), trained


def test_legacy_module_fails_to_build_until_fixed(outcomes):
    outcome = outcomes["legacy"]
    assert outcome.flagged == ["NNX107", "NNX108", "NNX109", "NNX109"]
    assert outcome.before["error"].startswith(
        "ValueError: Found data on value of type '<class 'list'>' assigned to static attribute 'layers'")
    assert "self.layers = nnx.List([nnx.Linear(4, 4, rngs=rngs) for _ in range(2)])" in outcome.fixed_text
    assert "self.scale = nnx.Param(jnp.ones((4,)))" in outcome.fixed_text
    assert "self.calls[...] += 1" in outcome.fixed_text and "int(model.calls[...])" in outcome.fixed_text
    # runs with '.value' DeprecationWarnings turned into errors: none is left
    result = outcome.last_json(outcome.after)
    assert _decreasing(result["losses"]), result["losses"]
    assert result["scale_trained"]  # a Param now: the optimizer updates it
    assert result["calls"] == 5


def test_the_failures_the_rules_describe(outcomes):
    run = outcomes["failures"]
    assert run["error"] is None, run["error"]
    outcome = json.loads(run["stdout"].strip().splitlines()[-1])
    assert outcome["constant_rngs_same"] and not outcome["own_stream_same"]  # NNX106
    assert outcome["raw_array_gradients"] == ["p"]  # NNX107
    assert outcome["params_only_rngs"] == "KeyError: \"No RngStream named 'dropout' found in Rngs.\""  # NNX111
    assert outcome["param_only_split"].startswith("ValueError: Non-exhaustive filters")  # NNX112
    assert outcome["int_rngs"] == "AttributeError: 'int' object has no attribute 'params'"  # NNX113
    assert outcome["captured_update"].startswith(  # NNX114
        "TraceContextError: Cannot mutate Param from a different trace level")
    assert outcome["init_on_nnx"].startswith("AttributeError: ") and "has no attribute 'init'" in outcome["init_on_nnx"]  # NNX115
    assert outcome["value_warning"] and outcome["value_warning"][0].startswith(
        "'.value' access is now deprecated")  # NNX109


def test_flax_tables_match_the_installed_flax():
    import inspect

    from flax import nnx

    from nnxlint.flax_api import LAYER_VARIABLES, MODULE_CLASSES, NNX_TRANSFORM_KEYWORDS, OPTIMIZER_CLASSES

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
