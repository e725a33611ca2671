"""The whole-file Linen -> NNX conversion (NNX002's unsafe fix): what it
produces, where it refuses and why, and that it keeps the user's bytes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import libcst as cst
import pytest

from nnxlint.engine import check_source
from nnxlint.conversion.base import substitute
from nnxlint.conversion.shapes import Size, product, window_output
from nnxlint.registry import all_rules

NNX002 = all_rules()["NNX002"]


def convert(source: str):
    """(fixed text or None, the NNX002 messages)."""
    source = textwrap.dedent(source)
    result = check_source(source, "program.py", [NNX002], "unsafe")
    assert not result.crashes, result.crashes
    messages = [finding.message for finding in check_source(source, "program.py", [NNX002]).findings]
    return result.fixed_text, messages


TRAIN_AND_EVALUATE = '''\
import jax
import jax.numpy as jnp
import optax
import flax.linen as nn


class Net(nn.Module):
    def setup(self):
        self.hidden = nn.Dense(8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Dense(2)

    def __call__(self, x, training: bool):
        return self.out(self.drop(nn.relu(self.hidden(x)), deterministic=not training))


def train(steps):
    model = Net()
    params = model.init(jax.random.key(0), jnp.ones((1, 3)), training=False)["params"]
    tx = optax.sgd(0.1)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x):
        def loss_fn(params):
            return model.apply({"params": params}, x, training=True, rngs={"dropout": jax.random.key(1)}).sum()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    outputs = []
    for _ in range(steps):
        params, opt_state = step(params, opt_state, jnp.ones((4, 3)))
        outputs.append(model.apply({"params": params}, jnp.ones((4, 3)), training=False))
    return outputs
'''


def test_train_and_eval_in_one_loop_switch_modes_at_each_iteration():
    fixed, _ = convert(TRAIN_AND_EVALUATE)
    assert fixed is not None
    assert "class Net(nnx.Module):\n    def __init__(self, in_features: int, *, rngs: nnx.Rngs):\n" in fixed
    assert "        self.hidden = nnx.Linear(in_features, 8, rngs=rngs)\n" in fixed
    assert "        self.drop = nnx.Dropout(0.5, rngs=rngs)\n" in fixed
    assert "    def __call__(self, x):\n        return self.out(self.drop(nnx.relu(self.hidden(x))))\n" in fixed
    assert fixed.count("def __init__") == 1
    assert fixed.endswith(
        "    for _ in range(steps):\n"
        "        model.train()\n"
        "        step(model, optimizer, jnp.ones((4, 3)))\n"
        "        model.eval()\n"
        "        outputs.append(model(jnp.ones((4, 3))))\n"
        "    return outputs\n")
    assert "def step(model, optimizer, x):" in fixed and "grads = nnx.grad(loss_fn)(model)" in fixed
    assert "rngs=" not in fixed.split("class Net")[0] and "jax.random.key(1)" not in fixed


@pytest.mark.parametrize("source, reason", [
    ('''
     import jax.numpy as jnp
     import jax
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             for width in x.shape:  # values known only when called
                 x = nn.Dense(width)(x)
             return x
     params = M().init(jax.random.key(0), jnp.ones((1, 2)))
     ''', "inside a loop or branch"),
    ('''
     import jax
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             return nn.Dense(3)(x)
     def f(x):
         model = M()
         variables = model.init(jax.random.key(0), make_batch())
         return model.apply(variables, x)
     ''', "the input size `in_features` of `M` cannot be found from the example input"),
    ('''
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             return nn.scan(nn.Dense, variable_broadcast="params", length=2)(3)(x)
     v = M().init(jax.random.key(0), jnp.ones((1, 2)))
     ''', "`nn.scan` with `variable_broadcast=` is not converted"),
    ('''
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             return x + self.variable("counter", "n", jnp.zeros, ()).value
     v = M().init(jax.random.key(0), jnp.ones((1, 2)))
     ''', "`self.variable` inside an expression"),
    ('''
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             return nn.Dense(3)(x)
     model = M()
     ''', "the code at line 7 uses it and is not converted (the conversion needs exactly one `model.init"),
    ('''
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class Unused(nn.Module):
         pass
     Unused()
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             return nn.Dense(3)(x)
     v = M().init(jax.random.key(0), jnp.ones((1, 2)))
     ''', "`Unused` is not part of the model"),
    ("""
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x, train: bool):
             x = nn.Dropout(0.5, deterministic=False)(x)  # always on, even in eval
             return nn.BatchNorm(use_running_average=not train)(x)
     def f(x):
         model = M()
         variables = model.init(jax.random.key(0), jnp.ones((1, 2)), train=False)
         return model.apply(variables, x, train=False, rngs={"dropout": jax.random.key(1)})
     """, "constant `deterministic`/`use_running_average`"),
    ("""
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         def param(self, name, init, *shape):
             return super().param(name, init, *shape)

         @nn.compact
         def __call__(self, x):
             return nn.Dense(3)(x)
     v = M().init(jax.random.key(0), jnp.ones((1, 2)))
     """, "overrides Linen's `param`"),
    ("""
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             if self.is_initializing():
                 x = x * 0
             return nn.Dense(3)(x)
     v = M().init(jax.random.key(0), jnp.ones((1, 2)))
     """, "`self.is_initializing` is Linen Module API"),
    ("""
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         def setup(self):
             self.layers = [nn.Dense(3), nn.Dense(3)]

         def __call__(self, x):
             return self.layers[1](self.layers[0](x))
     v = M().init(jax.random.key(0), jnp.ones((1, 2)))
     """, "a submodule inside a list, dict or expression"),
    ("""
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             return nn.BatchNorm(use_running_average=False)(x)
     model = M()
     variables = model.init(jax.random.key(0), jnp.ones((4, 2)))
     y, _ = model.apply(variables, jnp.ones((4, 2)), mutable=["batch_stats"])  # statistics thrown away
     """, "discards the updated collections"),
    ("""
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             return nn.BatchNorm(use_running_average=False)(x)
     model = M()
     variables = model.init(jax.random.key(0), jnp.ones((4, 2)))
     y = model.apply(variables, jnp.ones((4, 2)), mutable=["batch_stats"])[0]
     """, "not unpacked as `output, updates`"),
    ("""
     import jax
     import jax.numpy as jnp
     import flax.linen as nn
     class M(nn.Module):
         @nn.compact
         def __call__(self, x):
             return nn.BatchNorm(use_running_average=True, axis=1)(x)  # channels first
     v = M().init(jax.random.key(0), jnp.ones((4, 3, 5)))
     """, "on an axis other than the last"),
])
def test_no_fix_and_the_finding_says_why(source, reason):
    fixed, messages = convert(source)
    assert fixed is None
    assert messages and all("(no fix: " in message and reason in message for message in messages), messages


def test_untouched_lines_keep_their_bytes_crlf_and_comments():
    source = ("import jax  # keys\r\nimport jax.numpy as jnp\r\nimport flax.linen as nn\r\n\r\n\r\n"
              "SCALE = 2  # untouched\r\n\r\n\r\nclass M(nn.Module):\r\n    @nn.compact\r\n"
              "    def __call__(self, x):\r\n        return nn.Dense(3)(x) * SCALE  # head\r\n\r\n\r\n"
              "def f():\r\n    model = M()\r\n    variables = model.init(jax.random.key(0), jnp.ones((1, 5)))\r\n"
              "    return model.apply(variables, jnp.ones((2, 5)))  # run\r\n")
    fixed, _ = convert(source)
    assert fixed is not None
    assert "\n" not in fixed.replace("\r\n", "")
    assert "SCALE = 2  # untouched\r\n" in fixed
    assert "        return self.dense_0(x) * SCALE  # head\r\n" in fixed
    assert "    model = M(5, rngs=nnx.Rngs(0))\r\n    return model(jnp.ones((2, 5)))  # run\r\n" in fixed
    assert "import jax" not in fixed.replace("import jax.numpy", "")  # its only use was the init key
    cst.parse_module(fixed)


def test_partial_jit_with_static_arguments_becomes_partial_nnx_jit():
    fixed, _ = convert('''
        import functools
        import jax
        import jax.numpy as jnp
        import optax
        import flax.linen as nn
        class M(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(1)(x)
        def train(steps):
            model = M()
            params = model.init(jax.random.key(0), jnp.ones((1, 2)))["params"]
            tx = optax.sgd(0.1)
            opt_state = tx.init(params)

            @functools.partial(jax.jit, static_argnames="scale")
            def step(params, opt_state, scale):
                def loss_fn(params):
                    return scale * model.apply({"params": params}, jnp.ones((1, 2))).sum()

                grads = jax.grad(loss_fn)(params)
                updates, opt_state = tx.update(grads, opt_state)
                return optax.apply_updates(params, updates), opt_state

            for _ in range(steps):
                params, opt_state = step(params, opt_state, 2.0)
        ''')
    assert "    @functools.partial(nnx.jit, static_argnames=\"scale\")\n    def step(model, optimizer, scale):\n" in fixed
    assert "step(model, optimizer, 2.0)" in fixed


def test_a_file_that_already_imports_nnx_keeps_its_alias():
    fixed, _ = convert('''
        import jax
        import jax.numpy as jnp
        import flax.linen as nn
        from flax import nnx as fx
        class M(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.LayerNorm(1e-5)(x)
        model = M()
        variables = model.init(jax.random.key(3), jnp.ones((1, 6)))
        ''')
    assert "flax.linen" not in fixed and "class M(fx.Module):" in fixed
    assert "self.layer_norm_0 = fx.LayerNorm(in_features, epsilon=1e-5, rngs=rngs)" in fixed
    assert "model = M(6, rngs=fx.Rngs(3))" in fixed


def test_shape_arithmetic():
    assert product([Size.number(7), Size.number(7), Size.number(64)]) == Size.number(3136)
    assert product([Size.number(4), Size("features")]).code == "4 * features"
    assert product([Size.number(2), None]) is None
    assert window_output(Size.number(28), 3, 1, "SAME") == Size.number(28)
    assert window_output(Size.number(28), 2, 2, "VALID") == Size.number(14)
    assert window_output(Size.number(14), 3, 2, "VALID") == Size.number(6)
    assert window_output(Size("h"), 2, 2, "VALID") == Size("h // 2")  # a named size: the expression
    assert substitute("features * 2", {"features": "16"}) == Size.number(32)
    assert substitute("in_features", {"in_features": "width"}) == Size("width")


def test_the_check_path_does_not_import_jax():
    code = ("import sys\nfrom nnxlint.engine import check_source\nfrom nnxlint.registry import all_rules\n"
            "rules = [all_rules()[c] for c in ('NNX002', 'NNX003', 'NNX004', 'NNX005', 'NNX006')]\n"
            "src = open(sys.argv[1]).read()\ncheck_source(src, 'x.py', rules, 'unsafe')\n"
            "assert not {'jax', 'flax', 'optax'} & set(sys.modules), sorted(sys.modules)\n")
    program = "fixtures/linen_cnn_batchnorm/before.py"
    completed = subprocess.run([sys.executable, "-c", code, program], capture_output=True, text=True,
                               cwd=__file__.rsplit("/tests/", 1)[0])
    assert completed.returncode == 0, completed.stderr


def test_modes_switch_where_the_model_is_used_even_when_built_in_a_helper():
    fixed, messages = convert('''
        import jax
        import jax.numpy as jnp
        import optax
        import flax.linen as nn
        from flax.training import train_state


        class Net(nn.Module):
            @nn.compact
            def __call__(self, x, train: bool):
                x = nn.Dense(4)(x)
                return nn.BatchNorm(use_running_average=not train)(x)


        def create_state(key):
            net = Net()
            variables = net.init(key, jnp.ones((1, 3)), train=False)
            return State.create(apply_fn=net.apply, params=variables["params"], tx=optax.sgd(0.1),
                                batch_stats=variables["batch_stats"])


        class State(train_state.TrainState):
            batch_stats: dict


        @jax.jit
        def step(state, x):
            def loss_fn(params):
                logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, x,
                                                 train=True, mutable=["batch_stats"])
                return logits.sum(), updates

            (_, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            state = state.apply_gradients(grads=grads)
            return state.replace(batch_stats=updates["batch_stats"])


        def run(steps):
            state = create_state(jax.random.key(0))
            for _ in range(steps):
                state = step(state, jnp.ones((2, 3)))
            return state.apply_fn({"params": state.params}, jnp.ones((2, 3)), train=False)


        if __name__ == "__main__":
            print(run(3))
        ''')
    assert fixed is not None, messages
    assert fixed.endswith(
        "def run(steps):\n"
        "    net, optimizer = create_state(jax.random.key(0))\n"
        "    net.train()\n"  # entered from the `__main__` block: the mode is not known there
        "    for _ in range(steps):\n"
        "        step(net, optimizer, jnp.ones((2, 3)))\n"
        "    net.eval()\n"
        "    return net(jnp.ones((2, 3)))\n"
        "\n\n"
        "if __name__ == \"__main__\":\n"
        "    print(run(3))\n"), fixed


def test_an_entry_point_that_returned_the_train_state_returns_model_and_optimizer():
    fixed, messages = convert('''
        import jax
        import jax.numpy as jnp
        import optax
        import flax.linen as nn
        from flax.training import train_state


        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)


        def fit(data) -> train_state.TrainState:
            net = Net()
            params = net.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
            state = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=optax.sgd(0.1))
            for batch in data:
                grads = jax.grad(lambda p: 0.0)(state.params)
                state = state.apply_gradients(grads=grads)
            return state
        ''')
    # a lambda over params is not followed into an optimizer: the TrainState stays, around split and merge
    # (tests/test_conversion_split_merge.py)
    assert fixed is not None and "net_graphdef, params = nnx.split(net)" in fixed, messages
    fixed, messages = convert('''
        import jax
        import jax.numpy as jnp
        import optax
        import flax.linen as nn
        from flax.training import train_state


        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(2)(x)


        def fit(data) -> train_state.TrainState:
            net = Net()
            params = net.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
            state = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=optax.sgd(0.1))

            def loss_fn(params, batch):
                return jnp.mean(state.apply_fn({"params": params}, batch) ** 2)

            for batch in data:
                grads = jax.grad(loss_fn)(state.params, batch)
                state = state.apply_gradients(grads=grads)
            return state
        ''')
    assert fixed is not None, messages
    assert "from flax.training" not in fixed and "TrainState" not in fixed
    assert "def fit(data):\n" in fixed
    assert fixed.endswith("        optimizer.update(net, grads)\n    return net, optimizer\n"), fixed


CONV_SHAPES = '''
import jax
import jax.numpy as jnp
import flax.linen as nn


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, 3, padding="VALID")(x)  # an int kernel size: a 1-D kernel over the last spatial axis
        x = nn.Conv(5, (2, 3), strides=2, padding="VALID")(x)
        x = nn.max_pool(x, (2, 2), strides=(1, 2), padding="SAME")
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(2)(x)


variables = Net().init(jax.random.key(0), jnp.ones((1, 11, 13, 3)))
'''


def test_static_sizes_match_what_linen_infers():
    pytest.importorskip("flax.linen")
    fixed, messages = convert(CONV_SHAPES)
    assert fixed is not None, messages
    namespace: dict = {}
    exec(CONV_SHAPES, namespace)
    kernel_rows = namespace["variables"]["params"]["Dense_0"]["kernel"].shape[0]
    assert f"self.dense_0 = nnx.Linear({kernel_rows}, 2, rngs=rngs)" in fixed


SCRIPT = """\
import jax
import jax.numpy as jnp
import optax
import flax.linen as nn


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(16)(x)
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return nn.Dense(2)(nn.relu(x))


def loss_fn(params, x, y, key):
    logits = model.apply({"params": params}, x, rngs={"dropout": key})
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@jax.jit
def train_step(params, opt_state, x, y, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y, key)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss


rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
x = jnp.ones((8, 3))
y = jnp.zeros((8,), jnp.int32)
model = MLP()
params = model.init(rngs, x)["params"]
tx = optax.adam(1e-3)
opt_state = tx.init(params)
key = jax.random.key(2)
for step in range(10):
    key, subkey = jax.random.split(key)
    params, opt_state, loss = train_step(params, opt_state, x, y, subkey)
print(model.apply({"params": params}, x, train=False))
"""


def test_a_script_with_a_key_dict_and_a_dropout_key_chain():
    fixed, messages = convert(SCRIPT)
    assert fixed is not None, messages
    assert "model = MLP(3, rngs=nnx.Rngs(**rngs))\n" in fixed  # rngs is a dict of keys by stream
    assert "def loss_fn(model, x, y):\n" in fixed and "nnx.value_and_grad(loss_fn)(model, x, y)\n" in fixed
    assert "def train_step(model, optimizer, x, y):\n" in fixed
    # the keys only fed Linen's rngs={'dropout': ...}: the whole chain goes
    assert "key" not in fixed.split("optimizer = nnx.Optimizer")[1]
    assert fixed.endswith("for step in range(10):\n    loss = train_step(model, optimizer, x, y)\n"
                          "model.eval()\nprint(model(x))\n")


def test_train_state_step_becomes_the_optimizer_step():
    fixed, messages = convert("""
        import jax
        import jax.numpy as jnp
        import optax
        import flax.linen as nn
        from flax.training import train_state


        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(1)(x)


        @jax.jit
        def train_step(state, x):
            def loss_fn(params):
                return jnp.mean(state.apply_fn({"params": params}, x) ** 2)

            grads = jax.grad(loss_fn)(state.params)
            return state.apply_gradients(grads=grads)


        def run(x):
            net = Net()
            params = net.init(jax.random.key(0), jnp.ones((1, 2)))["params"]
            state = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=optax.sgd(0.1))
            while state.step < 10:
                state = train_step(state, x)
            return state.step
        """)
    assert fixed is not None, messages
    assert "    while optimizer.step[...] < 10:\n        train_step(net, optimizer, x)\n" in fixed
    assert "    return optimizer.step[...]\n" in fixed


RUNNING_MEAN = """
    import jax
    import jax.numpy as jnp
    import flax.linen as nn


    class Center(nn.Module):
        @nn.compact
        def __call__(self, x):
            mean = self.variable("batch_stats", "mean", jnp.zeros, (x.shape[-1],))
            # statistics of real batches only
            if not self.is_initializing():  # not init's dummy input
                mean.value = 0.9 * mean.value + 0.1 * x.mean(axis=0)
            return x - mean.value


    def run(x):
        model = Center()
        variables = model.init(jax.random.key(0), jnp.ones((1, 3)))
        batch_stats = variables["batch_stats"]  # no params: the model has none
        y, updates = model.apply({"batch_stats": batch_stats}, x, mutable=["batch_stats"])
        batch_stats = updates["batch_stats"]
        return y
    """


def test_a_batch_stats_variable_becomes_a_batch_stat_read_and_written_through_ellipsis():
    fixed, messages = convert(RUNNING_MEAN)
    assert fixed is not None, messages
    assert fixed == textwrap.dedent("""
        import jax.numpy as jnp
        from flax import nnx


        class Center(nnx.Module):
            def __init__(self, in_features: int):
                self.mean = nnx.BatchStat(jnp.zeros((in_features,)))

            def __call__(self, x):
                mean = self.mean
                # statistics of real batches only
                # not init's dummy input
                mean[...] = 0.9 * mean[...] + 0.1 * x.mean(axis=0)
                return x - mean[...]


        def run(x):
            model = Center(3)
            y = model(x)
            return y
        """)


def test_a_collection_of_the_users_own_gets_a_variable_type_defined_once():
    fixed, messages = convert(RUNNING_MEAN.replace("batch_stats", "ema_stats"))
    assert fixed is not None, messages
    assert fixed == textwrap.dedent('''
        import jax.numpy as jnp
        from flax import nnx


        class EmaStats(nnx.Variable):
            """The Linen collection 'ema_stats'."""


        class Center(nnx.Module):
            def __init__(self, in_features: int):
                self.mean = EmaStats(jnp.zeros((in_features,)))

            def __call__(self, x):
                mean = self.mean
                # statistics of real batches only
                # not init's dummy input
                mean[...] = 0.9 * mean[...] + 0.1 * x.mean(axis=0)
                return x - mean[...]


        def run(x):
            model = Center(3)
            y = model(x)
            return y
        ''')


def test_a_variable_type_name_the_file_already_uses_gets_no_fix():
    source = textwrap.dedent(RUNNING_MEAN.replace("batch_stats", "ema_stats"))
    fixed, messages = convert(source.replace("\n\n\nclass Center", "\n\nEmaStats = dict\n\n\nclass Center"))
    assert fixed is None
    assert messages and all("already uses the name `EmaStats`" in message for message in messages), messages


@pytest.mark.parametrize("change, reason", [
    (("        if not self.is_initializing():  # not init's dummy input\n            mean.value", "        mean.value"),
     "outside `if not self.is_initializing():`"),
    (("        if not self.is_initializing():  # not init's dummy input\n            mean.value =",
      "        mean.value, _ ="),
     "outside `if not self.is_initializing():`"),
    (("return x - mean.value", "return x - jnp.asarray(mean)"), "`mean` (a Linen Variable) is used other than"),
    (("(x.shape[-1],))", "(x.shape[-1],), unbox=True)"), "without keyword"),
])
def test_batch_stats_variables_that_get_no_fix(change, reason):
    source = textwrap.dedent(RUNNING_MEAN)
    assert change[0] in source
    fixed, messages = convert(source.replace(*change))
    assert fixed is None
    assert messages and all(reason in message for message in messages), messages


HEADS = """
    import jax
    import jax.numpy as jnp
    import flax.linen as nn


    class Heads(nn.Module):
        heads: int

        @nn.compact
        def __call__(self, x):
            x = nn.DenseGeneral((self.heads, 3))(x)
            return nn.DenseGeneral(features=1, axis=(-2, -1))(x)


    def run(x):
        model = Heads(2)
        variables = model.init(jax.random.key(0), jnp.ones((1, 5)))
        return model.apply(variables, x)
    """


def test_dense_general_becomes_linear_general_sized_by_its_contracted_axes():
    fixed, messages = convert(HEADS)
    assert fixed is not None, messages
    assert "    def __init__(self, in_features: int, heads: int, *, rngs: nnx.Rngs):\n" \
           "        self.dense_general_0 = nnx.LinearGeneral(in_features, (heads, 3), rngs=rngs)\n" \
           "        self.dense_general_1 = nnx.LinearGeneral((heads, 3), 1, axis=(-2, -1), rngs=rngs)\n" in fixed
    assert "        x = self.dense_general_0(x)\n        return self.dense_general_1(x)\n" in fixed
    assert "    model = Heads(5, 2, rngs=nnx.Rngs(0))\n    return model(x)\n" in fixed


@pytest.mark.parametrize("old, new, reason", [
    ("axis=(-2, -1)", "axis=(-3, -1)", "other than the last axes"),
    ("axis=(-2, -1)", "axis=1", "other than the last axes"),
    ("axis=(-2, -1)", "axis=(-3, -2, -1)", "contracts the batch axis"),
    ("heads: int", "heads: tuple", "not an int or a tuple of ints"),
    ("axis=(-2, -1)", "batch_dims=(0,)", "has no NNX equivalent"),
])
def test_dense_general_that_gets_no_fix(old, new, reason):
    fixed, messages = convert(HEADS.replace(old, new))
    assert fixed is None
    assert messages and all(reason in message for message in messages), messages


SEQUENCES = """
    import jax
    import jax.numpy as jnp
    import flax.linen as nn


    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, xs):
            hs = nn.RNN(nn.LSTMCell(features=6))(xs)
            return nn.Dense(1)(hs.mean(axis=1))


    def run(xs):
        model = Encoder()
        variables = model.init(jax.random.key(0), jnp.ones((1, 5, 3)))
        return model.apply(variables, xs)
    """


def test_an_rnn_cell_becomes_the_parents_attribute_scanned_by_nnx_rnn_where_called():
    fixed, messages = convert(SEQUENCES)
    assert fixed is not None, messages
    assert "    def __init__(self, in_features: int, *, rngs: nnx.Rngs):\n" \
           "        self.lstm_cell_0 = nnx.LSTMCell(in_features, 6, rngs=rngs)\n" \
           "        self.dense_0 = nnx.Linear(6, 1, rngs=rngs)\n" in fixed
    assert "        hs = nnx.RNN(self.lstm_cell_0)(xs)\n" in fixed
    assert "    model = Encoder(3, rngs=nnx.Rngs(0))\n" in fixed


def test_an_rnn_built_in_setup_keeps_its_cell_inside_as_linen_does():
    fixed, messages = convert(SEQUENCES.replace(
        "        @nn.compact\n        def __call__(self, xs):\n            hs = nn.RNN(nn.LSTMCell(features=6))(xs)\n"
        "            return nn.Dense(1)(hs.mean(axis=1))\n",
        "        def setup(self):\n            self.rnn = nn.RNN(nn.LSTMCell(6))\n            self.head = nn.Dense(1)\n\n"
        "        def __call__(self, xs):\n            return self.head(self.rnn(xs).mean(axis=1))\n"))
    assert fixed is not None, messages
    assert "        self.rnn = nnx.RNN(nnx.LSTMCell(in_features, 6, rngs=rngs))\n" \
           "        self.head = nnx.Linear(6, 1, rngs=rngs)\n" in fixed
    assert "        return self.head(self.rnn(xs).mean(axis=1))\n" in fixed


@pytest.mark.parametrize("old, new, reason", [
    ("nn.RNN(nn.LSTMCell(features=6))", "nn.RNN(nn.LSTMCell(features=6), reverse=True)", "`nn.RNN` with options"),
    ("nn.RNN(nn.LSTMCell(features=6))(xs)", "nn.RNN(nn.LSTMCell(features=6))(xs, seq_lengths=None)",
     "called with more than its input"),
    ("hs = nn.RNN(nn.LSTMCell(features=6))(xs)",
     "cell = nn.LSTMCell(6)\n            _, hs = cell(cell.initialize_carry(jax.random.key(1), xs.shape), xs)",
     "`cell.initialize_carry` of an `nn.LSTMCell` is not converted"),
])
def test_recurrent_layers_that_get_no_fix(old, new, reason):
    assert old in SEQUENCES
    fixed, messages = convert(SEQUENCES.replace(old, new))
    assert fixed is None
    assert messages and all(reason in message for message in messages), messages


SETUP_COUNTER = """
    import jax
    import jax.numpy as jnp
    import flax.linen as nn


    class Counted(nn.Module):
        def setup(self):
            self.count = self.variable("counter", "count", jnp.zeros, (), jnp.int32)

        def __call__(self, x):
            if not self.is_initializing():
                self.count.value += 1
            return x * self.count.value


    def run(x):
        model = Counted()
        variables = model.init(jax.random.key(0), jnp.ones((1, 2)))
        counter = variables["counter"]  # no params: the model has none
        y, updates = model.apply({"counter": counter}, x, mutable=["counter"])
        counter = updates["counter"]
        return y
    """


def test_a_variable_made_in_setup_is_read_and_written_through_its_attribute():
    fixed, messages = convert(SETUP_COUNTER)
    assert fixed is not None, messages
    assert "    def __init__(self):\n        self.count = Counter(jnp.zeros((), jnp.int32))\n\n" \
           "    def __call__(self, x):\n        self.count[...] += 1\n        return x * self.count[...]\n" in fixed
    assert "    model = Counted()\n    y = model(x)\n    return y\n" in fixed


@pytest.mark.parametrize("old, new, reason", [
    ('self.count = self.variable("counter", "count"', 'self.count = self.variable("counter", "n"', "under another name"),
    ("return x * self.count.value", "return x * jnp.asarray(self.count)", "`self.count` (a Linen Variable) is used"),
    ('            self.count = self.variable("counter", "count", jnp.zeros, (), jnp.int32)\n',
     '            self.count = self.variable("counter", "count", jnp.zeros, (), jnp.int32)\n'
     '            self.total = self.variable("Counter", "total", jnp.zeros, ())\n',
     "two collections would share the NNX Variable type `Counter`"),
])
def test_setup_variables_that_get_no_fix(old, new, reason):
    assert old in SETUP_COUNTER
    fixed, messages = convert(SETUP_COUNTER.replace(old, new))
    assert fixed is None
    assert messages and all(reason in message for message in messages), messages


# --- a layer stack built by a Python loop (constructs/loop_stack.py)

LOOP_STACK = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class Block(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.width)(nn.LayerNorm()(x))


class Stack(nn.Module):
    depth: int = 3

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8)(x)
        for _ in range(self.depth):
            x = Block(8)(x)
        return nn.Dense(1)(x)


def train(steps):
    model = Stack()
    params = model.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
    return model.apply({"params": params}, jnp.ones((2, 4)))
'''


def test_a_loop_built_stack_becomes_an_nnx_list_built_and_indexed_by_the_same_loop():
    fixed, messages = convert(LOOP_STACK)
    assert fixed is not None, messages
    assert "        self.blocks = nnx.List([Block(8, 8, rngs=rngs) for index in range(depth)])\n" in fixed
    assert "        for index in range(self.depth):\n            x = self.blocks[index](x)\n" in fixed
    assert "        self.dense_1 = nnx.Linear(8, 1, rngs=rngs)\n" in fixed  # the Dense after the loop keeps its number


def test_a_named_loop_index_is_kept_and_may_size_the_elements():
    fixed, messages = convert(LOOP_STACK.replace("for _ in range(self.depth):\n            x = Block(8)(x)",
                                                 "for i in range(3):\n            x = nn.relu(Block(8)(x)) * i"))
    assert fixed is not None, messages
    assert "        self.blocks = nnx.List([Block(8, 8, rngs=rngs) for i in range(3)])\n" in fixed
    assert "            x = nnx.relu(self.blocks[i](x)) * i\n" in fixed


def test_a_loop_naming_its_modules_block_i_fills_the_list_named_block():
    fixed, messages = convert(LOOP_STACK.replace("for _ in range(self.depth):\n            x = Block(8)(x)",
                                                 "for layer in range(self.depth):\n"
                                                 "            x = Block(8, name=f'block_{layer}')(x)"))
    assert fixed is not None, messages
    assert "        self.block = nnx.List([Block(8, 8, rngs=rngs) for layer in range(depth)])\n" in fixed
    assert "            x = self.block[layer](x)\n" in fixed


@pytest.mark.parametrize("old, new, reason", [
    ("x = Block(8)(x)", "x = Block(8)(x)[..., None]", "inputs of other sizes in later iterations"),
    ("x = Block(8)(x)", "x = Block(8)(Block(8)(x))", "more than once per loop iteration"),
    ("x = nn.Dense(8)(x)\n", "x = Block(8)(x)\n", "also outside the loop"),
    ("return nn.Dense(1)(x)", "return nn.Dense(1)(Block(8)(Block(8)(x)))", "created again a second time"),
    ("x = Block(8)(x)", "x = Block(8, name='b')(x)", "named other than `name=f'<name>_{index}'`"),
    ("for _ in range(self.depth):\n            x = Block(8)(x)", "for i in range(2):\n            x = Block(8, name='b' + str(i))(x)",
     "named other than `name=f'<name>_{i}'` or an f-string of the loop's variables"),
    ("x = Block(8)(x)", "if x is not None:\n                x = Block(8)(x)", "inside a loop or branch"),
    ("for _ in range(self.depth):", "for _ in [1, 2]:", "inside a loop or branch"),
])
def test_loops_whose_modules_cannot_be_an_nnx_list_get_no_fix(old, new, reason):
    assert old in LOOP_STACK
    fixed, messages = convert(LOOP_STACK.replace(old, new))
    assert fixed is None
    assert messages and any(reason in message for message in messages), messages


# --- a layer stack scanned by nn.scan, with or without nn.remat (constructs/scan_stack.py)

SCAN_STACK = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class Block(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, _):
        return x + nn.Dense(self.width)(nn.LayerNorm()(x)), None


class Stack(nn.Module):
    depth: int = 3

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8)(x)
        Blocks = nn.scan(nn.remat(Block), variable_axes={"params": 0}, split_rngs={"params": True},
                         length=self.depth)
        x, _ = Blocks(8)(x, None)
        return nn.Dense(1)(x)


def train(steps):
    model = Stack()
    params = model.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
    return model.apply({"params": params}, jnp.ones((2, 4)))
'''


def test_a_scanned_remat_stack_is_built_by_vmap_under_split_rngs_and_applied_by_scan():
    fixed, messages = convert(SCAN_STACK)
    assert fixed is not None, messages
    assert "        @nnx.split_rngs(splits=depth)\n" \
           "        @nnx.vmap(in_axes=(0,), out_axes=0)\n" \
           "        def scan_checkpoint_block_0(rngs: nnx.Rngs):\n" \
           "            return Block(8, 8, rngs=rngs)\n" \
           "        self.scan_checkpoint_block_0 = scan_checkpoint_block_0(rngs)\n" in fixed
    assert "        x, _ = nnx.scan(nnx.remat(Block.__call__), in_axes=(0, nnx.Carry, 0), " \
           "out_axes=(nnx.Carry, 0))(self.scan_checkpoint_block_0, x, None)\n" in fixed
    assert "Blocks" not in fixed and "nn.scan" not in fixed
    assert "        self.dense_1 = nnx.Linear(8, 1, rngs=rngs)\n" in fixed  # after the stack: the carry's size


def test_an_inline_named_scan_without_remat_and_a_broadcast_input():
    fixed, messages = convert(SCAN_STACK.replace(
        '        Blocks = nn.scan(nn.remat(Block), variable_axes={"params": 0}, split_rngs={"params": True},\n'
        '                         length=self.depth)\n        x, _ = Blocks(8)(x, None)\n',
        '        x, _ = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=2,\n'
        '                       in_axes=nn.broadcast)(8, name="layers")(x, None)\n'))
    assert fixed is not None, messages
    assert "        @nnx.split_rngs(splits=2)\n" in fixed and "        self.layers = layers(rngs)\n" in fixed
    assert "nnx.scan(Block.__call__, in_axes=(0, nnx.Carry, None), out_axes=(nnx.Carry, 0))(self.layers, x, None)" \
        in fixed


def test_a_scanned_blocks_defaulted_parameter_the_call_leaves_out_is_broadcast():
    """``nnx.scan`` passes a left-out default positionally (``resolve_kwargs``): it needs an axis."""
    source = '''
import flax.linen as nn


class Block(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, _, scale: float = 0.5):
        return x + scale * nn.Dense(self.width)(x), None


class Stack(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        x, _ = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)(self.width)(x, None)
        return x
'''
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "nnx.scan(Block.__call__, in_axes=(0, nnx.Carry, 0, None), out_axes=(nnx.Carry, 0))" in fixed
    jax = pytest.importorskip("jax")
    from conversion_helpers import max_relative_difference

    difference = max_relative_difference(
        source, fixed, lambda linen: linen["Stack"](4), lambda converted, nnx: converted["Stack"](4, 4, rngs=nnx.Rngs(0)),
        jax.random.normal(jax.random.key(1), (2, 4)), [({}, "eval")])
    assert difference == 0.0


@pytest.mark.parametrize("old, new, reason", [
    ('split_rngs={"params": True},', 'split_rngs={"params": True}, metadata_params={},', "`metadata_params=`"),
    ('variable_axes={"params": 0}', 'variable_axes={"params": 1}', "`variable_axes` is not {'params': 0}"),
    ('variable_axes={"params": 0}', 'variable_axes={"params": 0, "cache": 0}', "`variable_axes` is not"),
    ('split_rngs={"params": True}', 'split_rngs={"params": False}', "`split_rngs` is not"),
    ("                         length=self.depth)", "                         )", "without `length=`"),
    ("nn.remat(Block)", "nn.remat(Block, static_argnums=(2,))", "`nn.remat` with options"),
    ("nn.remat(Block)", "nn.remat(nn.Dense)", "other than a Linen class of this file"),
    ("x, _ = Blocks(8)(x, None)", "x, _ = Blocks(8)(x, None)\n        print(Blocks)", "used other than as"),
    ("x, _ = Blocks(8)(x, None)", "x, _ = Blocks(8)(x, xs=None)", "keyword or starred arguments"),
])
def test_scans_without_an_exact_nnx_form_get_no_fix(old, new, reason):
    assert old in SCAN_STACK
    fixed, messages = convert(SCAN_STACK.replace(old, new))
    assert fixed is None or "class Stack(nn.Module):" in fixed  # Stack stays Linen
    assert messages and any(reason in message for message in messages), messages


# --- sharding metadata on initializers (constructs/partitioning.py)

PARTITIONED = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(6, kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp")),
                     bias_init=nn.with_partitioning(nn.initializers.zeros_init(), ("model",)))(x)
        return nn.Dense(2, kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("mlp", None)))(x)


variables = Net().init(jax.random.key(0), jnp.ones((1, 4)))
'''


def test_partitioned_initializers_keep_their_axis_names_on_a_one_device_mesh():
    jax = pytest.importorskip("jax")
    linen = pytest.importorskip("flax.linen")
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, messages = convert(PARTITIONED)
    assert fixed is not None, messages
    assert 'kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "mlp"), ' \
           'eager_sharding=False)' in fixed
    assert 'bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("model",), eager_sharding=False)' in fixed
    linen_namespace: dict = {}
    exec(PARTITIONED, linen_namespace)
    nnx_namespace: dict = {}
    exec(fixed, nnx_namespace)
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    with jax.set_mesh(mesh), linen.logical_axis_rules((("embed", None), ("mlp", "data"))):
        model = nnx_namespace["Net"](4, rngs=nnx.Rngs(0))
        load_linen_variables(model, linen_namespace["variables"])  # checks every axis name
        nnx_specs = nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(model, nnx.Param)))
        linen_specs = linen.get_partition_spec(linen_namespace["variables"])["params"]
        logical = linen.logical_to_mesh(linen_specs)
    # logical names resolve through the same rules to the same mesh axes; mesh axes (nn.with_partitioning) stay
    assert [nnx_specs["dense_0"]["kernel"], nnx_specs["dense_1"]["kernel"]] == [
        logical["Dense_0"]["kernel"], logical["Dense_1"]["kernel"]] == [
        jax.sharding.PartitionSpec(None, "data"), jax.sharding.PartitionSpec("data", None)]
    assert nnx_specs["dense_0"]["bias"] == linen_specs["Dense_0"]["bias"] == jax.sharding.PartitionSpec("model")


def test_partitioning_with_a_mesh_or_rules_argument_gets_no_fix():
    fixed, messages = convert(PARTITIONED.replace('("mlp", None)))(x)', '("mlp", None), rules=()))(x)'))
    assert fixed is None
    assert any("`nn.with_logical_partitioning` with `mesh=` or `rules=`" in message for message in messages), messages


# --- a module bound to a name and used later, e.g. tied embeddings (constructs/local_module.py)

TIED = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class LM(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(10, 6)
        x = nn.Dense(6)(embed(tokens))
        return embed.attend(x)


variables = LM().init(jax.random.key(0), jnp.ones((1, 3), jnp.int32))
'''


def test_a_bound_embedding_is_one_attribute_called_and_attended():
    fixed, messages = convert(TIED)
    assert fixed is not None, messages
    assert "        self.embed_0 = nnx.Embed(10, 6, rngs=rngs)\n" in fixed
    assert "        x = self.dense_0(self.embed_0(tokens))\n        return self.embed_0.attend(x)\n" in fixed
    assert "embed =" not in fixed


@pytest.mark.parametrize("old, new, reason", [
    ("return embed.attend(x)", "return embed.variables", "(a submodule) is used other than by calling it"),
    ("return embed.attend(x)", "return embed.features", "(a submodule) is used other than by calling it"),
    ("        embed = nn.Embed(10, 6)\n", "        embed = nn.Embed(10, 6)\n        embed = nn.Embed(10, 6)\n",
     "bound to something other than a name assigned once"),
    ("x = nn.Dense(6)(embed(tokens))\n        return embed.attend(x)",
     "dense = nn.Dense(6)\n        x = dense.attend(embed(tokens))\n        return x", "`dense.attend` of an `nn.Dense`"),
])
def test_bound_modules_used_otherwise_get_no_fix(old, new, reason):
    assert old in TIED
    fixed, messages = convert(TIED.replace(old, new))
    assert fixed is None or "class LM(nn.Module):" in fixed
    assert messages and any(reason in message for message in messages), messages


def test_nested_constructions_are_numbered_as_linen_creates_them_outer_first():
    source = TIED.replace("x = nn.Dense(6)(embed(tokens))", "x = nn.Dense(6)(nn.relu(nn.Dense(6, use_bias=False)(embed(tokens))))")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    namespace: dict = {}
    exec(source, namespace)
    assert "bias" in namespace["variables"]["params"]["Dense_0"]  # Linen: the outer Dense is Dense_0
    assert "self.dense_1 = nnx.Linear(6, 6, use_bias=False, rngs=rngs)" in fixed
    assert "x = self.dense_0(nnx.relu(self.dense_1(self.embed_0(tokens))))" in fixed


@pytest.mark.parametrize("decode, nnx_decode", [("True", "True"), ("self.decode", "decode")])
def test_attention_with_a_decode_cache_keeps_its_decode_argument(decode, nnx_decode):
    # NNX makes the cache in init_cache (tests/test_linen_convert_transformer_parts.py decodes with it)
    source = TIED.replace("x = nn.Dense(6)(embed(tokens))",
                          f"x = nn.MultiHeadDotProductAttention(2, decode={decode})(embed(tokens))")
    fixed, messages = convert(source.replace("    @nn.compact", "    decode: bool = False\n\n    @nn.compact"))
    assert fixed is not None, messages
    assert f"nnx.MultiHeadAttention(2, 6, decode={nnx_decode}, rngs=rngs)" in fixed


# --- nn.remat / nn.checkpoint of a single module (constructs/remat.py)

def test_a_rematerialised_block_is_applied_under_nnx_remat():
    source = LOOP_STACK.replace("for _ in range(self.depth):\n            x = Block(8)(x)",
                                "x = nn.remat(Block)(8)(x)\n        Saved = nn.checkpoint(Block)\n"
                                "        x = Saved(8, name='saved')(x)")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "        self.checkpoint_block_0 = Block(8, 8, rngs=rngs)\n        self.saved = Block(8, 8, rngs=rngs)\n" in fixed
    assert "        x = nnx.remat(Block.__call__)(self.checkpoint_block_0, x)\n" \
           "        x = nnx.remat(Block.__call__)(self.saved, x)\n" in fixed
    assert "Saved" not in fixed


@pytest.mark.parametrize("new, reason", [
    ("x = nn.remat(Block, static_argnums=(1,))(8)(x)", "`nn.remat` with options"),
    ("x = nn.remat(nn.Dense)(8)(x)", "`nn.remat` of something other than a Linen class of this file"),
    ("x = nn.remat(Block)(8)(x=x)", "called with keyword or starred arguments"),
])
def test_remat_without_an_exact_nnx_form_gets_no_fix(new, reason):
    fixed, messages = convert(LOOP_STACK.replace("for _ in range(self.depth):\n            x = Block(8)(x)", new))
    assert fixed is None or "class Stack(nn.Module):" in fixed
    assert messages and any(reason in message for message in messages), messages
