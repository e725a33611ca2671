"""Running one fixture program inside the verifying process, under the harness's patches.

A program is a module exposing ``train(steps) -> (losses, eval_outputs)``.  The
harness never edits it; what it changes, it changes by patching Flax for the
duration of one run:

- legacy semantics: ``nnx.Optimizer`` is ``nnx.ModelAndOptimizer`` (``wrt``
  defaults to ``nnx.Param``, ``update(grads)``, ``.model``), as in Flax < 0.11;
- dropout: counted, switched off (every Dropout call returns its input), or
  given a different seed (the seed is folded into every mask key);
- the other random streams a model draws (``self.make_rng('noise')`` in Linen,
  ``self.noise_rngs()`` from an ``nnx.Rngs`` stream in NNX; not 'params' nor
  'dropout'), in the same two cases: one fixed key for every draw on both sides
  while dropout is off (so the noise is identical and compared exactly), the
  seed folded into every key while it is reseeded (compared statistically);
- Linen weights: the variables the first concrete ``Module.init`` returns are
  recorded, and loaded into the NNX model handed to the first ``nnx.Optimizer``
  (``nnxlint.transplant``), so a Linen program and its NNX conversion start from
  identical parameters; a conversion that keeps Linen training code on the NNX
  model (``nnx.bridge.to_linen``, or the fix's ``to_linen_sized``) gets them from
  its first ``init`` instead, laid out as the bridge lays out the NNX model's variables.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import jax
import numpy as np
from flax import linen, nnx
from flax.linen import stochastic as linen_stochastic
from flax.nnx.nn import stochastic as nnx_stochastic

from nnxlint.conversion.constructs import to_linen_sized
from nnxlint.transplant import COLLECTION_TYPES, load_linen_variables
from nnxlint.verify.manifest import AFTER_DIRECTORY, BEFORE_DIRECTORY, REFERENCE_DIRECTORY

_module_numbers = itertools.count()


@dataclass
class RunOptions:
    legacy: bool = False
    dropout_off: bool = False
    dropout_seed: Optional[int] = None  # folded into every dropout key
    record_linen_init: Optional[list] = None  # receives the first Linen init's variables
    linen_variables: Optional[dict] = None  # loaded into the model of the first nnx.Optimizer


@dataclass
class RunResult:
    losses: np.ndarray
    outputs: np.ndarray
    dropout_masks_drawn: int = 0


class ProgramError(Exception):
    """The program raised, or broke the entry point's contract."""

    def __init__(self, message: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.cause = cause


def load_program(path: Path) -> types.ModuleType:
    name = f"nnxlint_fixture_{next(_module_numbers)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def run_program(path: Path, steps: int, options: RunOptions) -> RunResult:
    """Import ``path`` afresh and call its ``train(steps)`` under ``options``."""
    with contextlib.ExitStack() as stack:
        drawn = stack.enter_context(_dropout_control(options.dropout_off, options.dropout_seed))
        if options.legacy:
            stack.enter_context(_patched(nnx, "Optimizer", nnx.ModelAndOptimizer))
        if options.record_linen_init is not None:
            stack.enter_context(_recording_linen_init(options.record_linen_init))
        loaded: list[bool] = []
        if options.linen_variables is not None:
            stack.enter_context(_loading_into_first_optimizer(options.linen_variables, loaded))
            stack.enter_context(_loading_into_first_bridged_init(options.linen_variables, loaded))
            stack.enter_context(_loading_into_first_split(options.linen_variables, loaded))
        module = None
        stack.enter_context(_sibling_modules(path))
        try:
            module = load_program(path)
            train = getattr(module, "train", None)
            if not callable(train):
                raise ProgramError(f"{path.name} defines no train(steps) function")
            returned = train(steps)
        except ProgramError:
            raise
        except Exception as error:
            raise ProgramError(f"{path.name} raised {type(error).__name__}: {error}", error) from error
        finally:
            if module is not None:
                del sys.modules[module.__name__]
    if options.linen_variables is not None and not loaded:
        raise ProgramError(f"{path.name} built no nnx.Optimizer, split no model and initialized no model "
                           "bridged to Linen, so the Linen weights could not be loaded")
    return RunResult(*_check_returned(path, steps, returned), dropout_masks_drawn=drawn[0])


def expect_failure(path: Path, steps: int, error_name: str, message: Optional[str]) -> str:
    """Run a program that must fail; returns a description of how it failed as expected.

    Raises ProgramError when it runs, or fails differently.
    """
    try:
        run_program(path, steps, RunOptions())
    except ProgramError as failure:
        error = failure.cause
        if error is None:
            raise
        names = {cls.__name__ for cls in type(error).__mro__}
        if error_name not in names:
            raise ProgramError(f"{path.name} failed with {type(error).__name__}, expected {error_name}: {error}")
        if message and message not in str(error):
            raise ProgramError(f"{path.name} raised {type(error).__name__} without the expected text "
                               f"{message!r}: {error}")
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    raise ProgramError(f"{path.name} ran to the end, but it must fail with {error_name}")


def _check_returned(path: Path, steps: int, returned: Any) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise ProgramError(f"{path.name}: train(steps) must return (losses, eval_outputs)")
    losses = np.asarray([float(loss) for loss in returned[0]], dtype=np.float64)
    if losses.shape != (steps,):
        raise ProgramError(f"{path.name}: train({steps}) returned {losses.size} losses")
    return losses, np.asarray(returned[1], dtype=np.float64)


@contextlib.contextmanager
def _sibling_modules(path: Path) -> Iterator[None]:
    """A program of several files (before/train.py beside before/models.py) imports the
    others by name: their directory goes first on ``sys.path``, and they are imported
    afresh for each run (before/ and after/ both hold a ``models``) and forgotten after."""
    siblings = {other.stem for other in path.parent.glob("*.py")} - {path.stem}
    if path.parent.name not in (BEFORE_DIRECTORY, AFTER_DIRECTORY, REFERENCE_DIRECTORY) or not siblings:
        yield
        return

    def forget() -> None:
        for name in siblings:
            sys.modules.pop(name, None)

    forget()
    sys.path.insert(0, str(path.parent))
    try:
        yield
    finally:
        sys.path.remove(str(path.parent))
        forget()


@contextlib.contextmanager
def _patched(owner: Any, attribute: str, value: Any) -> Iterator[None]:
    original = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


@contextlib.contextmanager
def _dropout_control(off: bool, seed: Optional[int]) -> Iterator[list[int]]:
    """Count the dropout masks drawn (at trace time), and optionally turn dropout off or reseed it."""
    drawn = [0]

    def bernoulli(key, *args, **kwargs):
        drawn[0] += 1
        if seed is not None:
            key = jax.random.fold_in(key, seed)
        return jax.random.bernoulli(key, *args, **kwargs)

    # both Dropout layers call ``random.bernoulli`` through their module's ``random``
    random_with_counter = types.SimpleNamespace(bernoulli=bernoulli)
    with contextlib.ExitStack() as stack:
        for stochastic in (nnx_stochastic, linen_stochastic):
            stack.enter_context(_patched(stochastic, "random", random_with_counter))
        if off:  # deterministic dropout is the identity, in both frameworks
            for dropout in (nnx.Dropout, linen.Dropout):
                stack.enter_context(_patched(dropout, "__call__", _identity_dropout))
        if off or seed is not None:
            stack.enter_context(_other_streams_controlled(seed))
        yield drawn


_UNCONTROLLED_STREAMS = ("params", "dropout", "default")  # initialisers, Dropout, NNX's fallback stream


@contextlib.contextmanager
def _other_streams_controlled(seed: Optional[int]) -> Iterator[None]:
    """Keys of the other streams: one fixed key (``seed`` None) or the drawn key with
    ``seed`` folded in, for Linen's ``make_rng`` and NNX's ``RngStream`` alike."""

    def controlled(key, stream: str):
        if stream in _UNCONTROLLED_STREAMS:
            return key
        return jax.random.key(0) if seed is None else jax.random.fold_in(key, seed)

    linen_make_rng = linen.Module.__dict__["make_rng"]
    nnx_draw = nnx.RngStream.__dict__["__call__"]

    def make_rng(self, name: str = "params"):
        return controlled(linen_make_rng(self, name), name)

    def draw(self):
        return controlled(nnx_draw(self), self.tag)

    with _patched(linen.Module, "make_rng", make_rng), _patched(nnx.RngStream, "__call__", draw):
        yield


def _identity_dropout(self, inputs, *args, **kwargs):
    return inputs


def _is_concrete(tree: Any) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


@contextlib.contextmanager
def _recording_linen_init(store: list) -> Iterator[None]:
    original = linen.Module.__dict__["init"]

    def init(self, *args, **kwargs):
        variables = original(self, *args, **kwargs)
        if not store and _is_concrete(variables):  # an init traced under jax.jit has no values to keep
            store.append({name: jax.tree.map(np.asarray, variables[name])
                          for name in COLLECTION_TYPES if name in variables})
        return variables

    original_jit = jax.jit

    def jit(fun, *args, **kwargs):
        """``jax.jit(model.init)``: run the init eagerly, so that its values can be kept
        (the same values: jit does not change what init computes)."""
        if getattr(fun, "__func__", None) is init and not store:
            return fun
        return original_jit(fun, *args, **kwargs)

    with _patched(linen.Module, "init", init), _patched(jax, "jit", jit):
        yield


@contextlib.contextmanager
def _loading_into_first_optimizer(variables: dict, loaded: list[bool]) -> Iterator[None]:
    original = nnx.Optimizer.__dict__["__init__"]

    def init(self, model, *args, **kwargs):
        if not loaded:
            load_linen_variables(model, jax.tree.map(jax.numpy.asarray, variables))
            loaded.append(True)
        original(self, model, *args, **kwargs)

    with _patched(nnx.Optimizer, "__init__", init):
        yield


@contextlib.contextmanager
def _loading_into_first_split(variables: dict, loaded: list[bool]) -> Iterator[None]:
    """Training code kept functional (``graphdef, params = nnx.split(model)``, then
    ``nnx.merge`` at each call): the weights go into the first model split."""
    original = nnx.split

    def split(node, *filters):
        if not loaded and isinstance(node, nnx.Module):
            load_linen_variables(node, jax.tree.map(jax.numpy.asarray, variables))
            loaded.append(True)
        return original(node, *filters)

    with _patched(nnx, "split", split):
        yield


_INIT_KEYWORDS = ("method", "mutable", "capture_intermediates")


def _bridged_model(module: linen.Module, inputs: tuple, keywords: dict) -> Optional[nnx.Module]:
    """A fresh NNX model as the bridge ``module`` builds it: an ``nnx.bridge.ToLinen``, or the
    ``ToLinenSized`` of nnxlint's fix, whose sizes it reads off the inputs given to ``init``
    (``conversion/constructs/to_linen_sized.py``); None for any other module."""
    options = {} if getattr(module, "skip_rng", True) else {"rngs": nnx.Rngs(0)}
    if isinstance(module, nnx.bridge.ToLinen):
        return module.nnx_class(*module.args, **dict(module.kwargs), **options)
    if type(module).__name__ == to_linen_sized.CLASS:
        sizes = module.sizes(*inputs, **{key: value for key, value in keywords.items() if key not in _INIT_KEYWORDS})
        return module.nnx_class(*sizes, *module.args, **dict(module.kwargs), **options)
    return None


@contextlib.contextmanager
def _loading_into_first_bridged_init(variables: dict, loaded: list[bool]) -> Iterator[None]:
    """The first ``init`` of an ``nnx.bridge.ToLinen`` returns the Linen weights: loaded into
    the NNX model it holds, then laid out by collection as the bridge lays out its variables."""
    original = linen.Module.__dict__["init"]

    def init(self, *args, **kwargs):
        initialized = original(self, *args, **kwargs)
        model = None if loaded else _bridged_model(self, args[1:], kwargs)
        if model is None:
            return initialized
        load_linen_variables(model, jax.tree.map(jax.numpy.asarray, variables))
        loaded.append(True)
        return {**initialized, **{collection: nnx.state(model, COLLECTION_TYPES[collection]).to_pure_dict()
                                  for collection in initialized if collection in COLLECTION_TYPES}}

    with _patched(linen.Module, "init", init):
        yield
