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


def _nnx_attribute(dotted: str):
    value = nnx
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def test_stateful_layers_and_variable_types_exist():
    for layer in flax_api.STATEFUL_LAYERS:
        assert issubclass(getattr(nnx, layer), nnx.Module)
    for variable in flax_api.VARIABLE_TYPES:
        assert issubclass(_nnx_attribute(variable), nnx.Variable)


def test_submodule_containers_hold_the_modules_they_are_given():
    """Assigned to a module's attribute, each holds the layers it is given (``nnx.data``
    returns a marker that becomes the value itself on assignment)."""
    layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    for name in flax_api.SUBMODULE_CONTAINERS:
        holder = nnx.Module()
        holder.layers = getattr(nnx, name)({"first": layer} if name == "Dict" else [layer])
        assert (holder.layers["first"] if name == "Dict" else holder.layers[0]) is layer
        assert [path for path, _ in nnx.iter_graph(holder) if path and path[-1] == "kernel"]


def test_every_public_variable_type_is_listed():
    """A Variable subclass Flax makes public (``nnx.X`` or ``nnx.metrics.X``) must be in the table."""
    public = {name for name, value in vars(nnx).items() if inspect.isclass(value) and issubclass(value, nnx.Variable)}
    public |= {f"metrics.{name}" for name, value in vars(nnx.metrics).items()
               if inspect.isclass(value) and issubclass(value, nnx.Variable) and value.__module__ == nnx.metrics.__name__}
    assert public - flax_api.VARIABLE_TYPES == set()


def test_variables_of_flax_objects():
    """OBJECT_VARIABLES: the Variable type of each attribute, on real instances."""
    import optax

    for owner, attributes in flax_api.OBJECT_VARIABLES.items():
        cls = _nnx_attribute(owner)
        if owner in flax_api.OPTIMIZER_CLASSES:
            instance = cls(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1), wrt=nnx.Param)
        else:
            instance = cls()
        for attribute, variable in attributes.items():
            assert type(getattr(instance, attribute)) is _nnx_attribute(variable), (owner, attribute)


def test_variable_trees_of_flax_objects():
    """OBJECT_VARIABLE_TREES: every leaf of the attribute is a Variable, hyperparameters included."""
    import jax
    import optax

    for owner, attributes in flax_api.OBJECT_VARIABLE_TREES.items():
        instance = _nnx_attribute(owner)(nnx.Linear(1, 1, rngs=nnx.Rngs(0)),
                                         optax.inject_hyperparams(optax.adam)(learning_rate=0.1), wrt=nnx.Param)
        for attribute in attributes:
            leaves = jax.tree.leaves(getattr(instance, attribute), is_leaf=lambda leaf: isinstance(leaf, nnx.Variable))
            assert leaves and all(isinstance(leaf, nnx.Variable) for leaf in leaves), (owner, attribute)


def test_linen_variable_holders():
    """LINEN_VARIABLE_HOLDERS: the listed attributes are not Variables, every other one holds the
    wrapped Linen module's variables."""
    import jax.numpy as jnp
    from flax import linen

    class Outer(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(2)(x) + self.param("w", linen.initializers.zeros, (2,))

    for owner, not_variables in flax_api.LINEN_VARIABLE_HOLDERS.items():
        instance = _nnx_attribute(owner)(Outer(), rngs=nnx.Rngs(0)).lazy_init(jnp.ones((1, 3)))
        assert isinstance(instance.w, nnx.Param) and isinstance(instance.Dense_0["kernel"], nnx.Param)
        assert not any(isinstance(getattr(instance, name), nnx.Variable) for name in not_variables
                       if name != "rngs")  # (``rngs`` is a deprecated alias of ``to_nnx__rngs``)
        held = {name for name in vars(instance) if not name.startswith("_pytree__")}
        assert held - not_variables == {"w", "Dense_0"}, owner


def test_submodule_spellings():
    """``nnx.optimizer`` and ``nnx.metrics`` are the modules the table says."""
    assert nnx.optimizer is importlib.import_module("flax.nnx.training.optimizer")
    assert nnx.metrics is importlib.import_module("flax.nnx.training.metrics")
    assert flax_api.canonical_name("flax.nnx.optimizer.Optimizer") == "flax.nnx.Optimizer"
    assert flax_api.canonical_name("flax.nnx.training.metrics.MetricState") == "flax.nnx.metrics.MetricState"


def test_linen_modules_in_nnx():
    import flax.linen

    for name in flax_api.LINEN_MODULES_IN_NNX:
        assert issubclass(_nnx_attribute(name), flax.linen.Module)
    assert not issubclass(nnx.bridge.Module, flax.linen.Module)  # its apply is NNX's


def test_linen_module_bases_are_linen_modules_with_nnx_twins():
    import flax.linen

    for qualified in flax_api.LINEN_MODULE_BASES:
        name = qualified.rpartition(".")[2]
        assert issubclass(getattr(flax.linen, name), flax.linen.Module)
        assert issubclass(getattr(nnx, name), nnx.Module)  # the conversion's new base
