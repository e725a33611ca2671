"""The conversion's reach on real project layouts: per class, input sizes as
constructor parameters, model files without init, and never a broken fix."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from nnxlint.engine import check_source
from nnxlint.registry import all_rules

NNX002 = all_rules()["NNX002"]


def convert(source: str):
    """(fixed text or None, {class: message})."""
    source = textwrap.dedent(source)
    fixed = check_source(source, "models.py", [NNX002], "unsafe").fixed_text
    findings = check_source(source, "models.py", [NNX002]).findings
    return fixed, {f.message.split("`")[1]: f for f in findings}


MODELS = '''\
import flax.linen as nn
from typing import Any


class MlpBlock(nn.Module):
    config: Any

    @nn.compact
    def __call__(self, inputs, deterministic=True):
        config = self.config
        x = nn.Dense(config.mlp_dim, dtype=config.dtype)(inputs)
        x = nn.Dropout(rate=config.dropout_rate)(x, deterministic=deterministic)
        return nn.Dense(inputs.shape[-1])(x)


class Odd(nn.Module):
    @nn.compact
    def __call__(self, x):
        y = nn.Dense(3)(x)
        self.sow("stats", "y", y)
        return y


class UsesOdd(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Odd()(nn.Dense(4)(x))
'''


def test_a_models_file_converts_class_by_class_with_input_sizes_as_parameters():
    fixed, findings = convert(MODELS)
    assert fixed is not None
    # the alias `config = self.config` and `inputs.shape[-1]` become __init__ terms
    assert "def __init__(self, in_features: int, config: Any, *, rngs: nnx.Rngs):" in fixed
    assert "self.dense_0 = nnx.Linear(in_features, config.mlp_dim, dtype=config.dtype, rngs=rngs)" in fixed
    assert "self.dense_1 = nnx.Linear(config.mlp_dim, in_features, rngs=rngs)" in fixed
    assert "from typing import Any" in fixed  # the annotation still needs it
    # the classes that cannot convert stay Linen, each with its own reason
    assert "class Odd(nn.Module):" in fixed and "class UsesOdd(nn.Module):" in fixed
    assert "import flax.linen as nn\nfrom flax import nnx\n" in fixed
    assert findings["MlpBlock"].fix is not None and "`MlpBlock` takes `in_features`" in findings["MlpBlock"].fix.description
    assert "self.sow" in findings["Odd"].message
    assert "uses `Odd`, which cannot be converted" in findings["UsesOdd"].message
    compile(fixed, "models.py", "exec")


def test_a_factory_function_passes_the_new_parameters_on():
    fixed, findings = convert('''\
        import flax.linen as nn

        class Net(nn.Module):
            width: int

            @nn.compact
            def __call__(self, x):
                return nn.Dense(self.width)(x)

        def model(width):
            return Net(width=width)
        ''')
    assert "def model(width, *, in_features: int, rngs: nnx.Rngs):" in fixed
    assert "return Net(in_features, width=width, rngs=rngs)" in fixed
    assert "`model()` takes `in_features` and `rngs` keyword-only" in findings["Net"].fix.description


def test_a_factory_that_decodes_a_variant_before_building_passes_the_new_parameters_on():
    # big_vision's style: statements before the one ``return``, ``**kw`` taken and passed on
    source = '''\
        import flax.linen as nn

        class Net(nn.Module):
            classes: int
            width: int = 4

            @nn.compact
            def __call__(self, x):
                return nn.Dense(self.classes)(nn.Dense(self.width)(x))

        def Model(classes=None, *, variant=None, **kw):
            """Builds a named size."""
            if variant is not None:
                kw.setdefault("width", {"S": 4, "B": 8}[variant])
            return Net(classes, **kw)
        '''
    fixed, findings = convert(source)
    assert fixed is not None, findings
    assert "def Model(classes=None, *, variant=None, in_features: int, rngs: nnx.Rngs, **kw):" in fixed
    assert "return Net(in_features, classes, **kw, rngs=rngs)" in fixed
    namespace = {}
    exec(fixed, namespace)
    from flax import nnx
    model = namespace["Model"](3, variant="B", in_features=5, rngs=nnx.Rngs(0))
    assert model.dense_0.kernel.shape == (8, 3) and model.dense_1.kernel.shape == (5, 8)  # Linen's naming order


def test_other_code_that_uses_a_class_keeps_it_linen_and_says_where():
    _, findings = convert('''\
        import flax.linen as nn

        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)

        net = Net()
        ''')
    assert "the code at line 8 uses it" in findings["Net"].message


def test_an_init_site_passes_the_example_inputs_size_at_run_time():
    fixed, _ = convert('''\
        import jax
        import flax.linen as nn

        class M(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(3)(x)

        def predict(x):
            model = M()
            variables = model.init(jax.random.key(0), x)
            return model.apply(variables, x)
        ''')
    assert "model = M(x.shape[-1], rngs=nnx.Rngs(0))" in fixed


@pytest.mark.parametrize("body, reason", [
    ("y = self.conv(4, (3, 3))(x)\n                return y", "`conv` is a module-valued field; what it builds "
     "is known only where a class of this file that builds this one passes a Flax layer"),
    ("conv = partial(Imported, use_bias=False)\n                return conv(4, (3, 3))(x)", "a `partial` of one"),
    ("return Imported(4)(x)", "`Imported` is not a Linen class of this file"),
])
def test_submodules_built_from_fields_factories_or_unknown_classes_get_no_fix(body, reason):
    _, findings = convert(f'''\
        from functools import partial
        from typing import Any
        import flax.linen as nn
        from elsewhere import Imported

        class Block(nn.Module):
            conv: Any

            @nn.compact
            def __call__(self, x):
                {body}
        ''')
    assert reason in findings["Block"].message


def test_a_fix_whose_output_nnxlint_flags_is_no_fix():
    _, findings = convert('''\
        import jax
        import jax.numpy as jnp
        import optax
        import flax.linen as nn
        from flax.training.train_state import TrainState

        class MLP(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)

        model = MLP()
        params = model.init(jax.random.key(0), jnp.ones((1, 3)))["params"]
        state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))

        @jax.jit
        def train_step(state: TrainState, x, y):
            def loss_fn(params):
                return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)
            grads = jax.grad(loss_fn)(state.params)
            return state.apply_gradients(grads=grads)
        ''')
    assert "the converted code would get NNX114" in findings["MLP"].message
    assert findings["MLP"].fix is None


def test_convert_repo_counts_converted_classes_per_directory(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        import convert_repo
    finally:
        sys.path.pop(0)
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "models.py").write_text(textwrap.dedent('''\
        import flax.linen as nn

        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)
        '''))
    # converts, but the file stops at import as its Linen original does: counted apart
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "models.py").write_text((tmp_path / "good" / "models.py").read_text()
                                                  + "\nWIDTH = int('not a number')\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "models.py").write_text(MODELS.replace("class MlpBlock", "class Unused"))
    groups, work = convert_repo.measure(tmp_path)
    counts = {group.name: (len(group.classes), group.converted, group.unrunnable) for group in groups}
    assert counts == {"bad": (3, 1, 0), "good": (1, 1, 0), "stale": (1, 0, 1)}
    assert "| **total** | **5** | **2** (40%) | **1** | |" in convert_repo.table(groups)
    reasons = convert_repo.reasons(groups)
    assert "`Odd`" in reasons and "sow" in reasons


def test_names_imported_from_flax_linen_convert_and_a_param_under_a_field_branch_is_made_under_it():
    fixed, _ = convert('''\
        from jax import lax
        from flax.linen import initializers
        from flax.linen import Module, compact

        class Dense(Module):
            features: int
            kernel_init: object = initializers.lecun_normal()
            use_bias: bool = True

            @compact
            def __call__(self, inputs):
                kernel = self.param("kernel", self.kernel_init, (inputs.shape[-1], self.features))
                y = lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())))
                if self.use_bias:
                    bias = self.param("bias", initializers.zeros_init(), (self.features,))
                    y = y + bias
                return y
        ''')
    assert "from flax.linen" not in fixed and "from flax import nnx" in fixed
    assert "kernel_init: object = nnx.initializers.lecun_normal()" in fixed
    assert "self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, features)))" in fixed
    assert "        if use_bias:\n            self.bias = nnx.Param(nnx.initializers.zeros_init()(rngs.params(), (features,)))" in fixed


POLICY = '''\
    import flax.linen as nn

    class Policy(nn.Module):
        actions: int

        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2))(x))
            x = x.reshape((x.shape[0], -1))
            x = nn.relu(nn.Dense(64, name="hidden")(x))
            return nn.Dense(self.actions, name="logits")(x)
    '''


def test_a_flatten_after_convolutions_is_sized_by_the_input_axes_they_read():
    fixed, findings = convert(POLICY)
    assert "def __init__(self, in_features: int, x_shape_1: int, x_shape_2: int, actions: int, *, rngs: nnx.Rngs):" \
        in fixed
    assert "self.hidden = nnx.Linear(16 * ((x_shape_1 + 1) // 2) * ((x_shape_2 + 1) // 2), 64, rngs=rngs)" in fixed
    assert "`Policy` takes a first input of 4 axes (a batch, the spatial axes, the features), as its convolutions " \
           "read it" in findings["Policy"].fix.description
    jnp = pytest.importorskip("jax.numpy")
    from conversion_helpers import max_relative_difference

    x = jnp.cos(jnp.arange(2 * 9 * 6 * 3, dtype=jnp.float32).reshape(2, 9, 6, 3))  # 9 x 6 -> 5 x 3
    difference = max_relative_difference(POLICY, fixed, lambda linen: linen["Policy"](4),
                                         lambda ns, nnx: ns["Policy"](3, 9, 6, 4, rngs=nnx.Rngs(0)), x, [({}, "eval")])
    assert difference <= 1e-6


def test_a_layer_size_nothing_in_the_file_gives_becomes_a_named_constructor_parameter():
    fixed, findings = convert(POLICY.replace("nn.Conv(16, (3, 3), strides=(2, 2))", "nn.Dense(16)"))
    assert "def __init__(self, in_features: int, hidden_in_features: int, actions: int, *, rngs: nnx.Rngs):" in fixed
    assert "self.hidden = nnx.Linear(hidden_in_features, 64, rngs=rngs)" in fixed
    assert "self.logits = nnx.Linear(64, actions, rngs=rngs)" in fixed  # a Dense's output is its features
    assert "`Policy` takes `in_features`, `hidden_in_features`" in findings["Policy"].fix.description
    # a parent cannot give that size: it stays Linen, and so does the class it uses
    _, findings = convert(POLICY_AND_AGENT)
    assert "whose input size `hidden_in_features` cannot be worked out here" in findings["Agent"].message
    assert "`Agent` uses it and stays Linen" in findings["Policy"].message


POLICY_AND_AGENT = '''\
import flax.linen as nn


class Policy(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(16, (3, 3))(x).reshape((x.shape[0], -1))
        return nn.Dense(4, name="hidden")(x)


class Agent(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Policy()(x)
'''


def test_a_function_whose_other_statements_use_a_class_is_no_factory():
    _, findings = convert('''\
        import flax.linen as nn

        class Block(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)

        class Net(nn.Module):
            block: nn.Module

            @nn.compact
            def __call__(self, x):
                return self.block(x)

        def model():
            block = Block()
            return Net(block)
        ''')
    assert "the code at line 15 uses it" in findings["Block"].message
