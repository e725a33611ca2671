"""The Flax API tables in nnxlint/flax_api.py, checked against the installed Flax."""

from __future__ import annotations

import importlib
import inspect

import pytest

from nnxlint import flax_api

nnx = pytest.importorskip("flax.nnx")


@pytest.mark.parametrize("layer", sorted(flax_api.RNGS_REQUIRED_LAYERS))
def test_rngs_is_required_keyword_only(layer):
    parameter = inspect.signature(getattr(nnx, layer).__init__).parameters["rngs"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is inspect.Parameter.empty


@pytest.mark.parametrize("layer", sorted(flax_api.RNGS_OPTIONAL_LAYERS))
def test_rngs_is_optional(layer):
    parameter = inspect.signature(getattr(nnx, layer).__init__).parameters["rngs"]
    assert parameter.default is not inspect.Parameter.empty


def test_no_other_nnx_layer_requires_rngs():
    """A new Flax layer with a required ``rngs`` must be added to the table."""
    missing = []
    for name, value in vars(nnx).items():
        if inspect.isclass(value) and issubclass(value, nnx.Module):
            parameter = inspect.signature(value.__init__).parameters.get("rngs")
            if (parameter is not None and parameter.default is inspect.Parameter.empty
                    and name not in flax_api.RNGS_REQUIRED_LAYERS):
                missing.append(name)
    assert missing == []


@pytest.mark.parametrize("module_name", flax_api.NNX_IMPLEMENTATION_MODULES + flax_api.LINEN_IMPLEMENTATION_MODULES)
def test_implementation_modules_are_reexported(module_name):
    module = importlib.import_module(module_name)
    package = importlib.import_module(flax_api.FLAX_NNX if module_name.startswith("flax.nnx") else flax_api.FLAX_LINEN)
    shared = [name for name, value in vars(module).items()
              if not name.startswith("_") and hasattr(package, name)
              and (inspect.isclass(value) or inspect.isfunction(value))  # not the TypeVars
              and value.__module__ == module_name
              and f"{module_name}.{name}" not in flax_api.NOT_REEXPORTED]
    assert shared, f"{module_name} re-exports nothing: drop it from the table"
    for qualified in flax_api.NOT_REEXPORTED:
        if qualified.startswith(module_name + "."):
            name = qualified.rsplit(".", 1)[1]
            assert getattr(package, name) is not getattr(module, name)
            assert flax_api.canonical_name(qualified) == qualified
    for name in shared:
        assert getattr(package, name) is getattr(module, name), f"{module_name}.{name}"
        assert flax_api.canonical_name(f"{module_name}.{name}") == f"{package.__name__}.{name}"


def test_stateful_layers_and_variable_types_exist():
    for layer in flax_api.STATEFUL_LAYERS:
        assert issubclass(getattr(nnx, layer), nnx.Module)
    for variable in flax_api.VARIABLE_TYPES:
        assert issubclass(getattr(nnx, variable), nnx.Variable)


def test_nnx_replacements_for_jax_transforms_exist():
    import jax

    for jax_name, nnx_name in flax_api.NNX_TRANSFORM_FOR_JAX.items():
        assert callable(getattr(jax, jax_name.split(".")[1]))
        assert callable(getattr(nnx, nnx_name))


def test_optimizer_signature_facts():
    """NNX102/NNX103 encode these: wrt required keyword-only, update(model, grads)."""
    init = inspect.signature(nnx.Optimizer.__init__).parameters
    assert init["wrt"].kind is inspect.Parameter.KEYWORD_ONLY and init["wrt"].default is inspect.Parameter.empty
    assert list(inspect.signature(nnx.Optimizer.update).parameters)[:3] == ["self", "model", "grads"]
    wrt = inspect.signature(nnx.ModelAndOptimizer.__init__).parameters["wrt"]
    assert wrt.default is nnx.Param
