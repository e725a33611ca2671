"""The NNX rules across the files of a project (the project index, nnxlint/project.py)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

from nnxlint.runner import Job, check_files

PROJECT = Path(__file__).parent / "projects" / "recall"


def write(root: Path, files: dict[str, str]) -> list[str]:
    paths = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        paths.append(str(path))
    return paths


def findings(root: Path, files: dict[str, str], codes: set[str], cache: bool = False) -> set[tuple[str, int, str]]:
    """(file, line, code) of every finding when the files are checked together."""
    paths = write(root, files) if files else [str(path) for path in sorted(root.rglob("*.py"))]
    job = Job(frozenset(codes), (), str(root), cache_dir=str(root / ".cache") if cache else None)
    return {(os.path.relpath(finding.path, root), finding.line, finding.code)
            for outcome in check_files(paths, job, jobs=1) for finding in outcome.findings}


VARIABLES = """\
    import jax
    from flax import nnx

    class Count(nnx.Variable):
        pass

    class Ema(nnx.Variable[jax.Array]):
        pass
    """


# -- NNX109 ------------------------------------------------------------------------
def test_variable_types_of_other_files(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/variables.py": VARIABLES,
        "pkg/model.py": """\
            import jax.numpy as jnp
            from flax import nnx
            from .variables import Count
            from . import variables

            class Model(nnx.Module):
                def __init__(self):
                    self.count = Count(jnp.array(0))
                    self.ema = nnx.data(variables.Ema(jnp.zeros(3)))
                    self.seen: Count | None = nnx.data(None)
                    self.option = {"a": 1}

                def __call__(self):
                    self.count.value += 1
                    self.seen = Count(1)
                    print(self.seen.value, self.option.values())
                    return self.ema.value
            """,
    }
    assert findings(tmp_path, files, {"NNX109"}) == {
        ("pkg/model.py", 14, "NNX109"), ("pkg/model.py", 16, "NNX109"), ("pkg/model.py", 17, "NNX109")}


def test_models_built_in_one_file_used_in_another(tmp_path):
    files = {
        "lib/__init__.py": "from .model import Model as Model\n",
        "lib/variables.py": VARIABLES,
        "lib/model.py": """\
            from flax import nnx
            from lib.variables import Count

            class Model(nnx.Module):
                def __init__(self, rngs):
                    self.count = Count(0)
                    self.linear = nnx.Linear(2, 2, rngs=rngs)

            def create():
                model = Model(nnx.Rngs(0))
                return model, nnx.Optimizer(model, tx, wrt=nnx.Param)
            """,
        "lib/steps.py": """\
            from flax import nnx

            @nnx.jit
            def step(model, optimizer):
                return model.count.value + optimizer.step.value

            def other(model):
                return model.count.value
            """,
        "main.py": """\
            import lib
            import lib.steps as s
            from lib.model import create

            model, optimizer = create()
            s.step(model, optimizer)
            s.other(model)
            s.other(unknown)
            print(lib.Model(rngs).linear.kernel.value)
            """,
    }
    found = findings(tmp_path, files, {"NNX109"})
    # ``other`` is also called with something unknown: its parameter stays unknown
    assert found == {("lib/steps.py", 5, "NNX109"), ("main.py", 9, "NNX109")}
    assert sum(1 for item in found if item[0] == "lib/steps.py") == 1


def test_states_merge_and_split(tmp_path):
    files = {"m.py": """\
        from flax import nnx

        class Counter(nnx.Variable):
            pass

        class Block(nnx.Module):
            def __init__(self, rngs):
                self.linear = nnx.Linear(2, 2, rngs=rngs)
                self.calls = Counter(0)
                self.attn = nnx.MultiHeadAttention(2, 4, rngs=rngs, decode=False)

        block = Block(nnx.Rngs(0))
        state = nnx.state(block)
        state["linear"]["kernel"].value = 1
        print(state.calls.value, state["attn"].value.kernel)
        graphdef, params, rest = nnx.split(block, nnx.Param, ...)
        print(params["linear"]["bias"].value.shape)
        copy = nnx.merge(graphdef, params, rest)
        print(copy.calls.value)

        def show(some_state: nnx.State):
            print(some_state["a"]["b"].value, some_state["attn"].value.kernel, some_state["x"].value.shape)
        """}
    assert findings(tmp_path, files, {"NNX109"}) == {
        ("m.py", 14, "NNX109"), ("m.py", 15, "NNX109"), ("m.py", 17, "NNX109"), ("m.py", 19, "NNX109"),
        ("m.py", 22, "NNX109")}


def test_flax_variable_types_the_table_lacked(tmp_path):
    files = {"m.py": """\
        import jax.numpy as jnp
        from flax import nnx

        class Accuracy(nnx.metrics.Metric):
            def __init__(self):
                self.total = nnx.metrics.MetricState(jnp.array(0.0))

            def update(self, x):
                self.total.value += x

        metric = nnx.metrics.Average()
        print(metric.total.value, metric.count.value)
        lora = nnx.LoRAParam(jnp.zeros(2))
        print(lora.value)
        """}
    assert findings(tmp_path, files, {"NNX109"}) == {("m.py", 9, "NNX109"), ("m.py", 12, "NNX109"),
                                                       ("m.py", 14, "NNX109")}


def test_optimizer_states_and_popped_states(tmp_path):
    """The leaves of an Optimizer's ``opt_state`` and the items ``nnx.pop`` returns are Variables."""
    files = {
        "train.py": """\
            import optax
            from flax import nnx

            def make(model):
                return nnx.Optimizer(model, optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), wrt=nnx.Param)
            """,
        "loop.py": """\
            from flax import nnx
            from train import make

            class Trainer:
                def __init__(self, model):
                    self.optimizer = make(model)

                def learning_rate(self):
                    return self.optimizer.opt_state.hyperparams["learning_rate"].value

            def sown(model):
                model(1)
                return nnx.pop(model, nnx.Intermediate)["activations"].value[-1]

            def not_flax(config):
                return config.opt_state.hyperparams["learning_rate"].value
            """,
    }
    assert findings(tmp_path, files, {"NNX109"}) == {("loop.py", 9, "NNX109"), ("loop.py", 13, "NNX109")}


def test_variables_of_wrapped_linen_modules(tmp_path):
    """``bridge.ToNNX`` holds the Linen module's variables as attributes (a dict for a submodule)."""
    files = {
        "layers.py": """\
            from flax import linen as nn

            class Scale(nn.Module):
                @nn.compact
                def __call__(self, x):
                    return nn.Dense(2)(x) * self.param("w", nn.initializers.ones, (2,))
            """,
        "model.py": """\
            from flax import nnx
            from flax.nnx import bridge
            from layers import Scale

            class Outer(nnx.Module):
                def __init__(self, rngs):
                    self.scale = bridge.ToNNX(Scale(), rngs=rngs)

            wrapped = bridge.ToNNX(Scale(), rngs=nnx.Rngs(0)).lazy_init(x)
            wrapped.w.value = wrapped.Dense_0["kernel"].value
            outer = bridge.lazy_init(Outer(nnx.Rngs(0)), x)
            print(outer.scale.w.value, outer.scale.to_nnx__module.value, outer.scale.rngs.value)
            """,
    }
    assert findings(tmp_path, files, {"NNX109"}) == {("model.py", 10, "NNX109"), ("model.py", 12, "NNX109")}


def test_models_returned_through_pass_through_calls(tmp_path):
    """``jax.lax.with_sharding_constraint``/``bridge.lazy_init``/``nnx.clone`` return their
    argument; the elements of a container attribute of a class of the same file are known."""
    files = {
        "build.py": """\
            from functools import partial
            import jax
            from flax import nnx
            from flax.nnx import bridge
            from flax import linen as nn

            class Stack(nnx.Module):
                def __init__(self, rngs):
                    self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs) for _ in range(3)])

            @partial(jax.jit, static_argnums=(0,))
            def sharded(shardings):
                stack = Stack(nnx.Rngs(0))
                return jax.lax.with_sharding_constraint(stack, shardings)

            @nnx.jit
            def wrapped(x):
                return bridge.lazy_init(bridge.ToNNX(nn.Dense(2), rngs=nnx.Rngs(0)), x)

            def copied():
                return nnx.clone(Stack(nnx.Rngs(0)))

            print(sharded(None).layers[0].kernel.value)
            print(wrapped(1).kernel.value, copied().layers[1].bias.value)
            """,
    }
    assert findings(tmp_path, files, {"NNX109"}) == {("build.py", 23, "NNX109"), ("build.py", 24, "NNX109")}


def test_elements_of_containers_of_other_files(tmp_path):
    files = {
        "blocks.py": """\
            from flax import nnx

            class Block(nnx.Module):
                def __init__(self, rngs):
                    self.proj = nnx.Linear(2, 2, rngs=rngs)

            class Tower(nnx.Module):
                def __init__(self, rngs):
                    self.blocks = nnx.List([Block(rngs) for _ in range(3)])
                    self.heads = [nnx.Linear(2, 1, rngs=rngs), nnx.Linear(2, 1, rngs=rngs)]
                    self.mixed = nnx.List([Block(rngs), nnx.Linear(2, 2, rngs=rngs)])

            class Taller(Tower):
                pass

            def build():
                return Taller(nnx.Rngs(0))
            """,
        "use.py": """\
            from blocks import build

            tower = build()
            print(tower.blocks[0].proj.kernel.value)
            print(tower.heads[1].bias.value)
            print(tower.mixed[0].value)
            """,
    }
    assert findings(tmp_path, files, {"NNX109"}, cache=True) == {("use.py", 4, "NNX109"), ("use.py", 5, "NNX109")}
    # the heads become plain objects: use.py is checked again
    blocks = tmp_path / "blocks.py"
    blocks.write_text(blocks.read_text().replace("[nnx.Linear(2, 1, rngs=rngs), nnx.Linear(2, 1, rngs=rngs)]",
                                                 "[object(), object()]"))
    assert findings(tmp_path, {}, {"NNX109"}, cache=True) == {("use.py", 4, "NNX109")}


def test_runtime_oracle_on_the_test_project():
    """Every `.value` DeprecationWarning of a run of the project is flagged, and nothing else."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        import nnx109_recall
    finally:
        sys.path.pop(0)
    result = nnx109_recall.measure(PROJECT, ["main.py"], [sys.executable, "-m", "nnxlint"])
    assert result["failed_programs"] == [] and result["warning_sites"] == 9
    assert result["missed"] == [] and result["false_alarms"] == [] and result["flagged_not_run"] == []
    assert result["recall"] == 1.0 and result["precision"] == 1.0


# -- the result cache ----------------------------------------------------------------
def test_cached_findings_follow_the_other_files(tmp_path):
    files = {
        "variables.py": "from flax import nnx\n\nclass Count(nnx.Variable):\n    pass\n",
        "model.py": "from flax import nnx\nfrom variables import Count\n\nc = Count(0)\nprint(c.value)\n",
    }
    assert findings(tmp_path, files, {"NNX109"}, cache=True) == {("model.py", 5, "NNX109")}
    # a body edit in variables.py keeps its facts: the entry of model.py still holds
    (tmp_path / "variables.py").write_text(files["variables.py"] + "\n# a comment\n")
    assert findings(tmp_path, {}, {"NNX109"}, cache=True) == {("model.py", 5, "NNX109")}
    # Count stops being a Variable: model.py is checked again
    (tmp_path / "variables.py").write_text("class Count:\n    pass\n")
    assert findings(tmp_path, {}, {"NNX109"}, cache=True) == set()
    (tmp_path / "variables.py").write_text(files["variables.py"])
    assert findings(tmp_path, {}, {"NNX109"}, cache=True) == {("model.py", 5, "NNX109")}


def test_cached_findings_follow_new_call_sites(tmp_path):
    files = {
        "steps.py": "def show(model):\n    return model.count.value\n",
        "main.py": ("from flax import nnx\nfrom steps import show\n\nclass Count(nnx.Variable):\n    pass\n\n"
                    "class M(nnx.Module):\n    def __init__(self):\n        self.count = Count(0)\n\nshow(M())\n"),
    }
    assert findings(tmp_path, files, {"NNX109"}, cache=True) == {("steps.py", 2, "NNX109")}
    write(tmp_path, {"other.py": "from steps import show\nshow(object())\n"})
    assert findings(tmp_path, {}, {"NNX109"}, cache=True) == set()


# -- NNX103 / NNX110 -----------------------------------------------------------------
def test_optimizers_passed_between_files(tmp_path):
    files = {
        "opt.py": """\
            from flax import nnx

            class MyOptimizer(nnx.Optimizer):
                pass

            def make(model, tx):
                return nnx.Optimizer(model, tx, wrt=nnx.Param)
            """,
        "steps.py": """\
            from flax import nnx
            from opt import MyOptimizer

            def step(model, optimizer, grads):
                optimizer.update(grads)
                return optimizer.model

            def annotated(optimizer: MyOptimizer, grads):
                optimizer.update(grads)

            def spelled(optimizer: nnx.optimizer.Optimizer, grads):
                optimizer.update(grads)

            def legacy(state, grads):
                state.update(grads)
                return state.model
            """,
        "main.py": """\
            from flax import nnx
            import opt
            from steps import step, legacy

            optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
            step(model, optimizer, grads)
            made = opt.make(model, tx)
            made.update(grads)
            legacy(nnx.ModelAndOptimizer(model, tx), grads)
            """,
    }
    assert findings(tmp_path, files, {"NNX103", "NNX110"}) == {
        ("steps.py", 5, "NNX103"), ("steps.py", 6, "NNX110"), ("steps.py", 9, "NNX103"), ("steps.py", 12, "NNX103"),
        ("main.py", 8, "NNX103")}


# -- NNX108 --------------------------------------------------------------------------
def test_containers_on_classes_deriving_from_other_files(tmp_path):
    files = {
        "base.py": """\
            from flax import nnx

            class Base(nnx.Module):
                pass

            class Tree(nnx.Pytree):
                pass

            class Static(nnx.Module, pytree=False):
                pass
            """,
        "model.py": """\
            from flax import nnx
            from base import Base, Static, Tree

            class Net(Base):
                def __init__(self, rngs):
                    self.layers = [nnx.Linear(2, 2, rngs=rngs)]

            class Holder(Tree):
                def __init__(self, rngs):
                    self.layers = [nnx.Linear(2, 2, rngs=rngs)]

            class Plain(Static):  # pytree=False is not inherited
                def __init__(self, rngs):
                    self.layers = [nnx.Linear(2, 2, rngs=rngs)]
            """,
    }
    assert findings(tmp_path, files, {"NNX108"}) == {
        ("model.py", 6, "NNX108"), ("model.py", 10, "NNX108"), ("model.py", 14, "NNX108")}


# -- NNX003 / NNX004 / NNX005 ------------------------------------------------------------
def test_linen_models_of_other_files(tmp_path):
    files = {
        "models.py": """\
            import flax.linen as nn
            from flax import nnx
            from flax.training import train_state

            TrainState = train_state.TrainState

            class MLP(nn.Module):
                @nn.compact
                def __call__(self, x):
                    return nn.Dense(2)(x)

            class Bridged(nnx.bridge.Module):
                def __call__(self, x):
                    return x

            def build():
                return MLP()
            """,
        "train.py": """\
            import jax
            from models import MLP, Bridged, TrainState, build

            def init(model, key, x):
                return model.init(key, x)

            def forward(model, variables, x):
                return model.apply(variables, x, mutable=["batch_stats"])

            model = build()
            variables = init(model, jax.random.key(0), x)
            forward(model, variables, x)
            y, updates = Bridged().apply(v, x, mutable=True)
            state = TrainState.create(apply_fn=model.apply, params=variables, tx=tx)
            """,
    }
    assert findings(tmp_path, files, {"NNX003", "NNX004", "NNX005"}) == {
        ("train.py", 5, "NNX003"), ("train.py", 8, "NNX003"), ("train.py", 8, "NNX005"),
        ("train.py", 14, "NNX004"), ("models.py", 5, "NNX004")}


# -- NNX101 --------------------------------------------------------------------------
def test_modules_of_other_files_that_require_rngs(tmp_path):
    files = {
        "blocks/__init__.py": "from .mlp import MLP\n",
        "blocks/mlp.py": """\
            from flax import nnx

            class MLP(nnx.Module):
                def __init__(self, din, rngs: nnx.Rngs):
                    self.linear = nnx.Linear(din, din, rngs=rngs)

            class Optional_(nnx.Module):
                def __init__(self, din, rngs=None):
                    self.din = din
            """,
        "main.py": """\
            from flax import nnx
            import blocks
            from blocks.mlp import MLP, Optional_

            def build(rngs: nnx.Rngs):
                return blocks.MLP(3)

            a = MLP(3)
            b = MLP(3, nnx.Rngs(0))
            c = Optional_(3)
            d = MLP(3, rngs=nnx.Rngs(0))
            """,
    }
    assert findings(tmp_path, files, {"NNX101"}) == {("main.py", 6, "NNX101"), ("main.py", 8, "NNX101")}
    paths = [str(tmp_path / name) for name in files]
    job = Job(frozenset({"NNX101"}), (), str(tmp_path), fix_level="safe", write=True)
    check_files(paths, job, jobs=1)  # the safe fix passes the Rngs in scope; the other call has none
    assert "return blocks.MLP(3, rngs=rngs)" in (tmp_path / "main.py").read_text()
    assert "a = MLP(3)\n" in (tmp_path / "main.py").read_text()


def test_declared_attribute_types_win(tmp_path):
    files = {"opt.py": """\
        import jax
        from flax import nnx

        class SGD(nnx.Pytree):
            def __init__(self, params):
                self.momentum: nnx.State = nnx.data(jax.tree.map(lambda p: p, params))

        def create(params):
            return params, SGD(params)

        params, optimizer = create(params)
        print(optimizer.momentum["w1"].value)
        """}
    assert findings(tmp_path, files, {"NNX109"}) == {("opt.py", 12, "NNX109")}
