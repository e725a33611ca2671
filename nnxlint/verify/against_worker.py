"""Compare one Linen class (from revision REV) with its NNX conversion (the working tree).

Runs inside the isolated worker (``nnxlint.verify.user_worker``): REV's model is
imported from an export of REV, initialised, and forgotten; then the working
tree's NNX model is imported, built with the same constructor arguments, and
given the Linen initial variables through ``nnxlint.transplant``.  Both then run
the same inputs in eval mode, in train mode with dropout off, in train mode with
dropout on and the same masks, and, with ``steps``, through the same plain SGD
steps.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx
from flax.linen import attention as linen_attention
from flax.linen import stochastic as linen_stochastic
from flax.nnx.nn import attention as nnx_attention
from flax.nnx.nn import stochastic as nnx_stochastic

from nnxlint.transplant import TransplantError, linen_collection_to_nnx_paths, load_linen_variables
from nnxlint.verify.compare import max_relative_difference, tolerance_for
from nnxlint.verify.programs import _identity_dropout, _patched
from nnxlint.verify.user_code import (
    BuildError, build_nnx_model, comparison_inputs, constructor_arguments, evaluate, example_inputs,
    flat_leaves, forget_user_modules, import_user_module, integer_limit, user_class, variable_type,
)
from nnxlint.verify.sites import ModelSpec
from nnxlint.verify.worker import Check, FixtureResult, describe_device


@dataclass
class ClassResult:
    file: str
    class_name: str
    origin: str
    covers: list[str]
    device: str
    tolerance: float
    status: str = "pass"  # pass | fail
    checks: list[Check] = field(default_factory=list)

    check = FixtureResult.check  # the fixtures' bookkeeping: a failed check fails the class

    def compare(self, name: str, linen_value: Any, nnx_value: Any, detail: str = "") -> bool:
        """One check: the largest relative difference over every output array."""
        linen_leaves, nnx_leaves = flat_leaves(linen_value), flat_leaves(nnx_value)
        if len(linen_leaves) != len(nnx_leaves):
            self.check(name, False, f"Linen returns {len(linen_leaves)} array(s), NNX {len(nnx_leaves)}")
            return False
        difference = max([max_relative_difference(a, b) for a, b in zip(nnx_leaves, linen_leaves)], default=0.0)
        if not detail:
            detail = "shapes " + ", ".join(str(leaf.shape) for leaf in linen_leaves)
        passed = difference <= self.tolerance
        self.check(name, passed, detail, difference, self.tolerance)
        return passed


class NNXRaised(Exception):
    """The converted model raised where the Linen one ran: a mismatch, not a set-up problem."""


class _Models:
    """The Linen model with its initial variables, and the NNX model, reloaded with them
    before each comparison."""

    def __init__(self, job: dict, spec: ModelSpec) -> None:
        linen_root, nnx_root = Path(job["linen_root"]), Path(job["nnx_root"])
        module = import_user_module(linen_root, spec.relative)
        namespace = vars(module)
        linen_class = user_class(module, spec, linen.Module, "Linen Module")
        self.args, self.kwargs = constructor_arguments(spec, namespace)
        self.examples = example_inputs(spec, namespace)
        self.call_keywords = {name: evaluate(source, namespace, "an init argument", spec.relative)
                              for name, source in spec.call_keywords.items()}
        self.mode = spec.mode
        try:
            self.linen = linen_class(*self.args, **self.kwargs)
            keys = jax.random.split(jax.random.key(job.get("seed", 0)))
            # compiled whole: one XLA program instead of one per operation
            variables = jax.jit(lambda keys, examples: self.linen.init(
                {"params": keys[0], "dropout": keys[1]}, *examples, **self.call_keywords,
                **self.mode_argument(train=False)))(keys, self.examples)
        except Exception as error:
            raise BuildError(f"building and initialising the Linen `{spec.class_name}` (revision "
                             f"{job['revision']}) raised {type(error).__name__}: {error}") from error
        self.variables = {name: jax.tree.map(jnp.asarray, dict(value)) for name, value in variables.items()}
        forget_user_modules(linen_root)
        self.nnx_class = user_class(import_user_module(nnx_root, spec.relative), spec, nnx.Module, "NNX Module")
        self.spec = spec
        self._nnx_model: Optional[nnx.Module] = None

    def mode_argument(self, train: bool) -> dict:
        if self.mode is None:
            return {}
        return {self.mode["name"]: (not self.mode["eval_value"]) if train else self.mode["eval_value"]}

    def nnx_model(self) -> nnx.Module:
        """The NNX model holding the Linen initial variables (built once, reloaded after)."""
        if self._nnx_model is None:
            self._nnx_model = build_nnx_model(self.nnx_class, self.args, dict(self.kwargs), self.examples, self.spec)
        load_linen_variables(self._nnx_model, self.variables)
        return self._nnx_model

    def nnx_call(self, model: nnx.Module, inputs: list, train: bool) -> Any:
        if train:
            model.train()
        else:
            model.eval()
        with nnx_raised(f"in {'train' if train else 'eval'} mode"):
            return nnx.jit(lambda model, inputs: model(*inputs, **self.call_keywords))(model, inputs)

    def linen_apply(self, variables: dict, inputs: list, train: bool, jit: bool = True) -> tuple[Any, dict]:
        """Outputs and updated collections (every collection but params is mutable, as in training)."""
        mutable = [name for name in variables if name != "params"]

        def run(variables, inputs):
            return self.linen.apply(variables, *inputs, **self.call_keywords, **self.mode_argument(train),
                                    rngs={"dropout": jax.random.key(1)}, mutable=mutable or False)

        output = (jax.jit(run) if jit else run)(variables, inputs)
        return output if mutable else (output, {})


class _AlignedRandom:
    """``jax.random`` for Flax's dropout and attention modules, except that the n-th
    ``bernoulli`` mask (in either framework) is drawn from the same key: Linen and NNX
    derive their dropout keys differently, but a conversion applies the same rates to
    the same shapes in the same order.  Records the keep probabilities drawn."""

    def __init__(self) -> None:
        self.keep_probabilities: list[float] = []
        self._count = itertools.count()

    def bernoulli(self, key, p=0.5, shape=None, **kwargs):
        self.keep_probabilities.append(float(p))
        return jax.random.bernoulli(jax.random.fold_in(jax.random.key(7), next(self._count)), p, shape)

    def __getattr__(self, name: str):
        return getattr(jax.random, name)


@contextlib.contextmanager
def nnx_raised(where: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        raise NNXRaised(f"the NNX model raised {type(error).__name__} {where}: {error}") from error


@contextlib.contextmanager
def _dropout(off: bool) -> Iterator[list[float]]:
    """Dropout layers off (the identity) or on, and every mask (attention dropout's too)
    aligned between the frameworks; yields the keep probabilities drawn."""
    random = _AlignedRandom()
    with contextlib.ExitStack() as stack:
        for module in (nnx_stochastic, linen_stochastic, nnx_attention, linen_attention):
            stack.enter_context(_patched(module, "random", random))
        if off:
            for dropout in (nnx.Dropout, linen.Dropout):
                stack.enter_context(_patched(dropout, "__call__", _identity_dropout))
        yield random.keep_probabilities


def _squared_error(outputs: Any, targets: list) -> jax.Array:
    leaves = [leaf for leaf in jax.tree.leaves(outputs)]
    return sum(jnp.mean((leaf - target) ** 2) for leaf, target in zip(leaves, targets))


def compare_class(job: dict) -> dict:
    spec = ModelSpec(**job["spec"])
    platform = jax.devices()[0].platform
    result = ClassResult(spec.relative, spec.class_name, spec.origin, spec.covers, describe_device(),
                         tolerance_for(platform, job["tolerance"]))
    models = _Models(job, spec)
    try:
        model = models.nnx_model()
    except TransplantError as error:  # the converted model's structure differs: a mismatch
        result.check("weights transplant", False, str(error))
        return asdict(result)
    counts = {name: len(jax.tree.leaves(value)) for name, value in models.variables.items()}
    result.check("weights transplant", True, "Linen init variables loaded into the NNX model: " +
                 ", ".join(f"{count} {name}" for name, count in counts.items()))

    try:
        _compare_runs(result, models, model, job)
    except NNXRaised as error:
        result.check("NNX model runs", False, str(error))
    return asdict(result)


def _compare_runs(result: ClassResult, models: _Models, model: nnx.Module, job: dict) -> None:
    random = np.random.default_rng(job.get("seed", 0))
    limit = integer_limit(models.examples, models.variables.get("params", {}))
    inputs = comparison_inputs(models.examples, random, limit)
    linen_eval, _ = models.linen_apply(models.variables, inputs, train=False)
    result.compare("eval outputs", linen_eval, models.nnx_call(model, inputs, train=False))

    with _dropout(off=True):  # each framework under its own context: its n-th mask is the other's n-th
        linen_train, updates = models.linen_apply(models.variables, inputs, train=True)
    with _dropout(off=True):
        trained = models.nnx_model()
        nnx_train = models.nnx_call(trained, inputs, train=True)
    result.compare("train outputs (dropout off)", linen_train, nnx_train)
    _compare_updates(result, trained, updates)

    with _dropout(off=False) as linen_rates:
        linen_masked, _ = models.linen_apply(models.variables, inputs, train=True)
    with _dropout(off=False) as nnx_rates:
        nnx_masked = models.nnx_call(models.nnx_model(), inputs, train=True)
    if linen_rates or nnx_rates:
        detail = f"{len(linen_rates)} dropout mask(s), the n-th from the same key in both"
        if linen_rates != nnx_rates:
            detail = (f"dropout rates in call order: Linen {[round(1 - p, 6) for p in linen_rates]}, "
                      f"NNX {[round(1 - p, 6) for p in nnx_rates]}")
        result.compare("train outputs (dropout on, same masks)", linen_masked, nnx_masked, detail)

    if job["steps"]:
        _compare_training(result, models, inputs, linen_eval, job["steps"], job["learning_rate"], random, limit)


def _compare_updates(result: ClassResult, model: nnx.Module, updates: dict) -> None:
    """The collections a train-mode call updates (BatchNorm statistics, counters) must end equal."""
    for collection, values in updates.items():
        found_type = variable_type(model, collection)
        if found_type is None:
            result.check(f"{collection} after a train step", False,
                         f"the NNX model has no Variable type for the Linen collection {collection!r}")
            continue
        targets = dict(nnx.to_flat_state(nnx.state(model, found_type)))
        try:
            mapped = linen_collection_to_nnx_paths(values, targets, collection)
        except TransplantError as error:
            result.check(f"{collection} after a train step", False, str(error))
            continue
        paths = sorted(mapped, key=str)
        result.compare(f"{collection} after a train step", [mapped[path] for path in paths],
                       [targets[path][...] for path in paths], f"{len(paths)} array(s)")


def _compare_training(result: ClassResult, models: _Models, inputs: list, outputs: Any, steps: int,
                      learning_rate: float, random: np.random.Generator, limit: int) -> None:
    """``steps`` of plain SGD on the same random batches and targets (squared error), dropout off."""
    batches = [comparison_inputs(models.examples, random, limit) for _ in range(steps)]
    targets = [[random.standard_normal(np.shape(leaf)).astype(np.float32) for leaf in jax.tree.leaves(outputs)]
               for _ in range(steps)]
    with _dropout(off=True):
        linen_losses, linen_after = _train_linen(models, batches, targets, learning_rate, inputs)
    with _dropout(off=True):
        nnx_losses, nnx_after = _train_nnx(models, batches, targets, learning_rate, inputs)
    counted = f"{steps} step{'s' * (steps != 1)}"
    result.compare(f"SGD losses ({counted})", np.asarray(linen_losses), np.asarray(nnx_losses),
                   f"learning rate {learning_rate:g}, squared error to random targets")
    result.compare(f"eval outputs after {counted}", linen_after, nnx_after)


def _train_linen(models: _Models, batches: list, targets: list, learning_rate: float, inputs: list):
    state = {name: value for name, value in models.variables.items() if name != "params"}

    def loss(params, state, batch, target):
        output, updates = models.linen_apply({"params": params, **state}, batch, train=True, jit=False)
        return _squared_error(output, target), updates

    @jax.jit
    def step(params, state, batch, target):
        (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(params, state, batch, target)
        return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), {**state, **updates}, value

    params, losses = models.variables["params"], []
    for batch, target in zip(batches, targets):
        params, state, value = step(params, state, batch, target)
        losses.append(float(value))
    output, _ = models.linen_apply({"params": params, **state}, inputs, train=False)
    return losses, output


def _train_nnx(models: _Models, batches: list, targets: list, learning_rate: float, inputs: list):
    model = models.nnx_model()
    model.train()
    keywords = models.call_keywords

    @nnx.jit
    def step(model, batch, target):
        value, grads = nnx.value_and_grad(lambda m: _squared_error(m(*batch, **keywords), target))(model)
        params = nnx.state(model, nnx.Param)
        nnx.update(model, jax.tree.map(lambda p, g: p - learning_rate * g, params, grads))
        return value

    with nnx_raised("in a training step"):
        losses = [float(step(model, batch, target)) for batch, target in zip(batches, targets)]
    return losses, models.nnx_call(model, inputs, train=False)
