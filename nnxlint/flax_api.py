"""Facts about the Flax API that rules and fixes read.

Every table here is checked against the installed Flax by
``tests/test_flax_api.py``: when a Flax release renames or moves something, the
test suite fails instead of the linter silently producing wrong findings.
Measured against flax 0.12.8.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

FLAX_NNX = "flax.nnx"
# Packages these tables describe: the project index never looks their names up among
# the files of a run (not even when the run checks Flax's own sources).
EXTERNAL_PACKAGES = frozenset({"flax", "jax", "jaxlib", "optax", "numpy", "orbax"})
FLAX_LINEN = "flax.linen"
LINEN_MODULE = "flax.linen.Module"
# Linen base classes a user module may subclass: ``nn.Module`` and the recurrent cells' base
# (``nn.RNNCellBase``, a Module subclass that ``nn.RNN`` steps), whose NNX twin is ``nnx.RNNCellBase``.
LINEN_CELL_BASE = "flax.linen.RNNCellBase"
LINEN_MODULE_BASES = frozenset({LINEN_MODULE, LINEN_CELL_BASE})

# Implementation modules whose public names flax.nnx / flax.linen re-export at
# the top level: ``flax.nnx.nn.linear.Linear`` is ``flax.nnx.Linear``.
NNX_IMPLEMENTATION_MODULES = (
    "flax.nnx.nn.linear",
    "flax.nnx.nn.normalization",
    "flax.nnx.nn.attention",
    "flax.nnx.nn.recurrent",
    "flax.nnx.nn.stochastic",
    "flax.nnx.nn.lora",
    "flax.nnx.nn.activations",
    "flax.nnx.module",
    "flax.nnx.rnglib",
    "flax.nnx.variablelib",
    "flax.nnx.graphlib",
    "flax.nnx.helpers",
    "flax.nnx.pytreelib",
    "flax.nnx.training.optimizer",
    "flax.nnx.transforms.compilation",
    "flax.nnx.transforms.autodiff",
    "flax.nnx.transforms.iteration",
    "flax.nnx.transforms.transforms",
)
LINEN_IMPLEMENTATION_MODULES = (
    "flax.linen.linear",
    "flax.linen.normalization",
    "flax.linen.attention",
    "flax.linen.recurrent",
    "flax.linen.stochastic",
    "flax.linen.activation",
    "flax.linen.pooling",
    "flax.linen.combinators",
    "flax.linen.module",
    "flax.linen.transforms",
)
# Submodules that flax.nnx exposes under a shorter name than their module path
# (``nnx.optimizer`` is ``flax.nnx.training.optimizer``): the spelling in code -> the public one.
NNX_SUBMODULE_SPELLINGS = {
    "flax.nnx.optimizer.": "flax.nnx.training.optimizer.",
    "flax.nnx.training.metrics.": "flax.nnx.metrics.",
}
# Names in those modules that the package re-exports as a different object.
NOT_REEXPORTED = frozenset({"flax.nnx.graphlib.Static"})
_IMPLEMENTATION_PREFIXES = tuple(
    (module + ".", package + ".")
    for package, modules in ((FLAX_NNX, NNX_IMPLEMENTATION_MODULES), (FLAX_LINEN, LINEN_IMPLEMENTATION_MODULES))
    for module in modules
)

# NNX layers whose ``rngs`` is a required keyword-only argument.  Omitting it raises
# ``TypeError: Linear.__init__() missing 1 required keyword-only argument: 'rngs'``.
RNGS_REQUIRED_LAYERS = frozenset({
    "Linear", "LinearGeneral", "Einsum", "Conv", "ConvTranspose", "Embed",
    "LayerNorm", "RMSNorm", "BatchNorm", "GroupNorm", "InstanceNorm",
    "MultiHeadAttention", "LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell",
    "LoRA", "LoRALinear", "WeightNorm", "SpectralNorm",
})
# NNX layers that take ``rngs`` but do not require it (not a finding when absent).
RNGS_OPTIONAL_LAYERS = frozenset({"Dropout", "RNN", "Bidirectional"})

# NNX layers with state that a plain ``jax.jit`` silently drops (BatchNorm
# statistics, Dropout RNG counters) when called inside the jitted function.
STATEFUL_LAYERS = frozenset({"BatchNorm", "Dropout", "MultiHeadAttention"})

# NNX transforms that carry module state in and out (the replacements for jax.*).
NNX_TRANSFORM_FOR_JAX = {
    "jax.jit": "jit",
    "jax.pmap": "pmap",
    "jax.grad": "grad",
    "jax.value_and_grad": "value_and_grad",
}

# Variable types: ``.value`` on these is deprecated since 0.12.1 (names relative to
# flax.nnx; ``metrics.MetricState`` is not re-exported at the top).
VARIABLE_TYPES = frozenset({
    "Variable", "Param", "BatchStat", "Cache", "Intermediate", "Perturbation",
    "RngKey", "RngCount", "RngState", "OptState", "OptArray", "OptVariable", "LoRAParam",
    "metrics.MetricState",
})


@lru_cache(maxsize=4096)
def canonical_name(qualified: str) -> str:
    """Map a name imported from an implementation module to its public name."""
    if qualified in NOT_REEXPORTED:
        return qualified
    for spelling, module in NNX_SUBMODULE_SPELLINGS.items():
        if qualified.startswith(spelling):
            qualified = module + qualified[len(spelling):]
    for prefix, public in _IMPLEMENTATION_PREFIXES:
        if qualified.startswith(prefix):
            rest = qualified[len(prefix):]
            return public + rest
    return qualified


def nnx_member(qualified: Optional[str]) -> Optional[str]:
    """``'Linear'`` for ``'flax.nnx.Linear'``; None for anything outside flax.nnx."""
    if qualified and qualified.startswith(FLAX_NNX + "."):
        return qualified[len(FLAX_NNX) + 1:]
    return None


def linen_member(qualified: Optional[str]) -> Optional[str]:
    """``'Conv'`` for ``'flax.linen.Conv'``; None for anything outside flax.linen."""
    if qualified and qualified.startswith(FLAX_LINEN + "."):
        return qualified[len(FLAX_LINEN) + 1:]
    return None


def is_linen(qualified: Optional[str]) -> bool:
    return bool(qualified) and (qualified == FLAX_LINEN or qualified.startswith(FLAX_LINEN + "."))


# -- tables for the NNX pitfall rules (NNX104 and up) --------------------------

# Variables that the built-in layers create in ``__init__``, by attribute name.
LAYER_VARIABLES = {
    "Linear": {"kernel": "Param", "bias": "Param"},
    "LinearGeneral": {"kernel": "Param", "bias": "Param"},
    "Conv": {"kernel": "Param", "bias": "Param"},
    "ConvTranspose": {"kernel": "Param", "bias": "Param"},
    "Embed": {"embedding": "Param"},
    "LayerNorm": {"scale": "Param", "bias": "Param"},
    "RMSNorm": {"scale": "Param"},
    "GroupNorm": {"scale": "Param", "bias": "Param"},
    "BatchNorm": {"scale": "Param", "bias": "Param", "mean": "BatchStat", "var": "BatchStat"},
}
# Variables that other Flax objects hold, by class (relative to flax.nnx) and attribute.
OBJECT_VARIABLES = {
    "Optimizer": {"step": "OptState"},
    "ModelAndOptimizer": {"step": "OptState"},
    "metrics.Average": {"total": "metrics.MetricState", "count": "metrics.MetricState"},
    "metrics.Accuracy": {"total": "metrics.MetricState", "count": "metrics.MetricState"},
    "metrics.Welford": {"count": "metrics.MetricState", "mean": "metrics.MetricState", "m2": "metrics.MetricState"},
}
# Attributes of Flax objects that hold a tree whose leaves are all Variables (the optax
# state of an Optimizer: ``optimizer.opt_state.hyperparams["learning_rate"]`` is an OptArray).
OBJECT_VARIABLE_TREES = {
    "Optimizer": frozenset({"opt_state"}),
    "ModelAndOptimizer": frozenset({"opt_state"}),
}
# NNX modules that wrap a Linen module, by class, and their attributes that are not the
# wrapped module's variables: every other attribute is one of them (a Variable, or a dict of
# Variables for a submodule), e.g. ``bridge.ToNNX(LinenDot(4)).lazy_init(x).w``.
LINEN_VARIABLE_HOLDERS = {
    "bridge.ToNNX": frozenset({"to_nnx__module", "to_nnx__rngs", "module", "rngs", "lazy_init"}),
}
# flax.nnx classes that are Linen modules (``bridge.ToLinen`` wraps an NNX module for Linen).
LINEN_MODULES_IN_NNX = frozenset({"bridge.ToLinen"})
# flax.nnx classes that are Modules (instances hold state, are pytrees since 0.11).
MODULE_CLASSES = RNGS_REQUIRED_LAYERS | RNGS_OPTIONAL_LAYERS | frozenset({"Module", "Sequential", "PReLU", "List", "Dict"})
OPTIMIZER_CLASSES = frozenset({"Optimizer", "ModelAndOptimizer"})
# flax.nnx wrappers that hold submodules given as their first argument: ``nnx.List([...])``,
# ``nnx.Dict({...})``, ``nnx.data([...])`` (the last a marker that becomes its value, as data, when assigned to an attribute).
SUBMODULE_CONTAINERS = frozenset({"List", "Dict", "data"})

# Keyword arguments the nnx transform accepts: a ``jax.<transform>(...)`` call can
# become ``nnx.<transform>(...)`` only if every keyword it passes is listed here.
# The nnx transforms take the function as their only positional argument
# (``jax.pmap(f, "batch")`` and ``jax.grad(f, 1)`` cannot move over as written).
NNX_TRANSFORM_KEYWORDS = {
    "jit": frozenset({"in_shardings", "out_shardings", "static_argnums", "static_argnames", "donate_argnums",
                      "donate_argnames", "keep_unused", "device", "backend", "inline"}),
    "pmap": frozenset({"axis_name", "in_axes", "out_axes", "static_broadcasted_argnums", "devices", "backend",
                       "axis_size", "donate_argnums"}),
    "grad": frozenset({"argnums", "has_aux", "holomorphic", "allow_int", "reduce_axes"}),
    "value_and_grad": frozenset({"argnums", "has_aux", "holomorphic", "allow_int", "reduce_axes"}),
}
