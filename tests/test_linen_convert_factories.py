"""Layer factories and loops that change sizes, as flax's examples/imagenet and
ogbg_molpcba write them: ``partial(nn.Conv, ...)`` / ``partial(nn.BatchNorm, ...)``
passed to blocks through module-valued fields (``constructs/layer_factory.py``),
stages built by a loop over a field's widths and an MLP over ``feature_sizes``
(``constructs/loop_stack.py``).  Each converted model runs against the Linen
original from transplanted weights, train and eval."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, max_relative_difference


RESNET = '''\
from functools import partial
from typing import Any, Callable
import flax.linen as nn
import jax.numpy as jnp

ModuleDef = Any


class Unit(nn.Module):
    channels: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable = nn.relu
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        h = self.conv(self.channels, (3, 3), self.stride)(x)
        h = self.act(self.norm()(h))
        h = self.norm(scale_init=nn.initializers.ones_init())(self.conv(self.channels, (3, 3))(h))
        skip = self.norm(name="skip_norm")(self.conv(self.channels, (1, 1), self.stride, name="skip")(x))
        return self.act(h + skip)


class Net(nn.Module):
    widths: tuple = (4, 6)
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x, train: bool = True):
        conv = partial(self.conv, use_bias=False)
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.5, epsilon=1e-5)
        x = nn.relu(norm(name="stem_norm")(conv(4, (3, 3), name="stem")(x)))
        for stage, width in enumerate(self.widths):
            x = Unit(width, conv=conv, norm=norm, stride=1 if stage == 0 else 2)(x)
        return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))
'''


def test_partial_factories_move_to_init_over_the_nnx_layers_and_blocks_call_them_with_input_sizes():
    fixed, messages = convert(RESNET)
    assert fixed is not None, messages
    # the parent: partials over the NNX layers, the train flag left to model.train()/eval()
    assert "        conv_factory = partial(conv, use_bias=False)\n" in fixed  # the field keeps its name
    assert "        norm = partial(nnx.BatchNorm, momentum=0.5, epsilon=1e-5)\n" in fixed
    assert "        self.stem = conv_factory(in_features, 4, (3, 3), rngs=rngs)\n" in fixed
    assert "    def __call__(self, x):\n" in fixed  # `train` went with the flag
    assert "conv: ModuleDef = nnx.Conv" in fixed  # a field defaulting to a Flax layer
    # the block: each factory call gets the input size, attributes named as Linen names them
    assert "        self.conv_0 = conv(in_features, channels, (3, 3), stride, rngs=rngs)\n" in fixed
    assert "        self.batch_norm_0 = norm(channels, rngs=rngs)\n" in fixed
    assert "        self.batch_norm_1 = norm(channels, scale_init=nnx.initializers.ones_init(), rngs=rngs)\n" in fixed
    assert "        self.skip = conv(in_features, channels, (1, 1), stride, rngs=rngs)\n" in fixed
    # the stage loop changes the width: __init__ runs it with a running size
    assert ("        x_features = 4\n        self.units = nnx.List()\n"
            "        for stage, width in enumerate(widths):\n"
            "            self.units.append(Unit(x_features, width, conv=conv_factory, norm=norm, "
            "stride=1 if stage == 0 else 2, rngs=rngs))\n"
            "            x_features = width\n") in fixed
    assert "        for stage, width in enumerate(self.widths):\n            x = self.units[stage](x)\n" in fixed
    compile(fixed, "models.py", "exec")


def test_the_converted_resnet_computes_what_linen_computes_in_train_and_eval_mode():
    jnp = pytest.importorskip("jax.numpy")
    fixed, messages = convert(RESNET)
    assert fixed is not None, messages
    x = jnp.sin(jnp.arange(2 * 6 * 6 * 2, dtype=jnp.float32).reshape(2, 6, 6, 2))
    difference = max_relative_difference(
        RESNET, fixed, lambda linen: linen["Net"](), lambda ns, nnx: ns["Net"](2, rngs=nnx.Rngs(0)), x,
        [({"train": False}, "eval"), ({"train": True}, "train")])  # eval first: train mode moves the statistics
    assert difference <= 1e-5
    # the convolutions, built through the factory, read 4 axes: the pooled features are the stages' width
    assert "        self.dense_0 = nnx.Linear(x_features, 3, rngs=rngs)\n" in fixed


MLP = '''\
from typing import Callable, Sequence
import flax.linen as nn


class MLP(nn.Module):
    feature_sizes: Sequence[int]
    activation: Callable = nn.tanh

    @nn.compact
    def __call__(self, inputs):
        x = inputs
        for size in self.feature_sizes:
            x = nn.Dense(features=size)(x)
            x = self.activation(x)
        return x
'''


def test_a_loop_over_a_fields_sizes_builds_the_list_with_a_running_size_and_runs_exactly():
    fixed, messages = convert(MLP)
    assert fixed is not None, messages
    assert ("        x_features = in_features\n        self.denses = nnx.List()\n"
            "        for size in feature_sizes:\n"
            "            self.denses.append(nnx.Linear(x_features, size, rngs=rngs))\n"
            "            x_features = size\n") in fixed
    assert "        for index, size in enumerate(self.feature_sizes):\n            x = self.denses[index](x)\n" in fixed
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.linspace(-1.0, 1.0, 15).reshape(3, 5)
    difference = max_relative_difference(
        MLP, fixed, lambda linen: linen["MLP"]((4, 7, 2)),
        lambda ns, nnx: ns["MLP"](5, (4, 7, 2), rngs=nnx.Rngs(0)), x, [({}, "eval")])
    assert difference <= 1e-6


def test_a_loop_keeping_the_size_still_builds_the_list_in_one_comprehension():
    fixed, messages = convert(MLP.replace("nn.Dense(features=size)(x)", "nn.LayerNorm()(x) * size"))
    assert fixed is not None, messages
    assert ("        self.layer_norms = nnx.List([nnx.LayerNorm(in_features, rngs=rngs) "
            "for size in feature_sizes])\n") in fixed


def test_a_loop_in_a_branch_on_fields_builds_its_list_under_the_same_test():
    source = MLP.replace("        for size in self.feature_sizes:\n            x = nn.Dense(features=size)(x)\n"
                         "            x = self.activation(x)\n",
                         "        if self.feature_sizes:\n            for size in self.feature_sizes:\n"
                         "                x = nn.Dense(features=size)(x)\n                x = self.activation(x)\n")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert ("        if feature_sizes:\n            x_features = in_features\n            self.denses = nnx.List()\n"
            "            for size in feature_sizes:\n"
            "                self.denses.append(nnx.Linear(x_features, size, rngs=rngs))\n") in fixed
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.linspace(-1.0, 1.0, 15).reshape(3, 5)
    for sizes in ((4, 7, 2), ()):  # the branch taken, and not (no list then, and none used)
        difference = max_relative_difference(
            source, fixed, lambda linen: linen["MLP"](sizes),
            lambda ns, nnx: ns["MLP"](5, sizes, rngs=nnx.Rngs(0)), x, [({}, "eval")])
        assert difference <= 1e-6


@pytest.mark.parametrize("old, new, reason", [
    # the activation is not known to keep the shape: the next layer's size is not followed
    ("activation: Callable = nn.tanh", "activation: Callable = print", "inputs of other sizes in later iterations"),
    # a loop nested in one that does more than run it (`self.activation`): no index of one flat list
    ("        for size in self.feature_sizes:\n            x = nn.Dense(features=size)(x)\n",
     "        for _ in range(2):\n            for size in self.feature_sizes:\n"
     "                x = nn.Dense(features=size)(x)\n", "in a loop nested in a loop that does more than run it"),
    # a stack in a branch on a value of ``__call__``: whether Linen builds it is known only then
    ("        for size in self.feature_sizes:\n",
     "        if inputs.sum() > 0:\n          for size in self.feature_sizes:\n",
     "inside a branch on a value of `__call__`"),
])
def test_loops_that_cannot_become_a_list_get_no_fix(old, new, reason):
    source = MLP.replace(old, new)
    assert source != MLP
    fixed, messages = convert(source)
    assert fixed is None
    assert reason in messages["MLP"], messages


@pytest.mark.parametrize("old, new, reason", [
    # the factory escapes: its removed name would be read in __call__
    ("        return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))",
     "        print(norm)\n        return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))",
     "the layer factory `norm` is used other than to build layers"),
    ("conv = partial(self.conv, use_bias=False)", "conv = partial(self.conv, 4, use_bias=False)",
     "with positional or starred arguments"),
    ("conv = partial(self.conv, use_bias=False)", "conv = partial(self.conv, features=4)", "fixing `features`"),
    # a factory whose layer nobody tells: the block's own reason, after every parent was tried
    ("            x = Unit(width, conv=conv, norm=norm, stride=1 if stage == 0 else 2)(x)\n",
     "            x = nn.Dense(width)(x)\n", "`conv` is a module-valued field; what it builds is known only"),
])
def test_factories_the_conversion_cannot_follow_get_no_fix(old, new, reason):
    source = RESNET.replace(old, new)
    assert source != RESNET
    fixed, messages = convert(source)
    assert any(reason in message for message in messages.values()), messages
    assert fixed is None or "class Unit(nn.Module)" in fixed


def test_a_block_given_factories_of_different_layers_by_two_parents_gets_no_fix():
    source = RESNET + '''

class Other(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Unit(4, conv=nn.Conv, norm=nn.LayerNorm)(x)
'''
    fixed, messages = convert(source)
    assert any("given layer factories of different kinds" in message for message in messages.values()), messages


def test_a_module_level_partial_passing_a_linen_layer_keeps_the_class_linen_with_the_reason():
    # ``NetT = partial(Net, conv=nn.ConvTranspose)`` stays as written, and an NNX Net would build the
    # Linen layer through it (flax's imagenet ``conv=nn.ConvLocal`` goes through the bridge instead:
    # tests/test_conversion_bridge.py)
    fixed, messages = convert(RESNET + "\n\nNetT = partial(Net, conv=nn.ConvTranspose)\n")
    assert fixed is None or "class Net(nn.Module)" in fixed
    assert ("`NetT = partial(..., conv=nn.ConvTranspose)` passes a Linen module class, which an NNX class cannot "
            "build") in messages["Net"]


def test_a_loop_that_leaves_an_array_alone_keeps_its_whole_shape_for_a_later_flatten():
    fixed, messages = convert('''\
        import jax
        import jax.numpy as jnp
        import flax.linen as nn

        class M(nn.Module):
            @nn.compact
            def __call__(self, x):
                x = nn.Conv(4, (3, 3))(x)
                for _ in range(2):
                    y = x * 2
                x = x.reshape((x.shape[0], -1))
                return nn.Dense(3)(x)

        model = M()
        variables = model.init(jax.random.key(0), jnp.ones((1, 5, 5, 2)))
        ''')
    assert fixed is not None, messages
    assert "self.dense_0 = nnx.Linear(100, 3, rngs=rngs)" in fixed  # 5 * 5 * 4 after the loop


NEST = '''\
import flax.linen as nn
import jax.numpy as jnp


class Block(nn.Module):
    width: int
    strides: tuple = (1, 1)

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(self.width, (3, 3), self.strides)(x))


class Net(nn.Module):
    stage_sizes: tuple = (2, 1)

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x)
        for i, block_size in enumerate(self.stage_sizes):
            for j in range(block_size):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = Block(4 * 2**i, strides=strides)(x)
        return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))
'''


def test_stages_of_blocks_built_by_nested_loops_are_one_list_applied_in_order():
    fixed, messages = convert(NEST)
    assert fixed is not None, messages
    # __init__ runs the same loops, with the body's own values (`strides`) and the running size
    assert ("        x_features = 4\n        self.blocks = nnx.List()\n"
            "        for i, block_size in enumerate(stage_sizes):\n"
            "            for j in range(block_size):\n"
            "                strides = (2, 2) if i > 0 and j == 0 else (1, 1)\n"
            "                self.blocks.append(Block(x_features, 4 * 2**i, strides=strides, rngs=rngs))\n"
            "                x_features = 4 * 2**i\n") in fixed
    # Linen numbers the blocks Block_0, Block_1, ... across the stages: one list, applied in order
    assert "        for block in self.blocks:\n            x = block(x)\n" in fixed
    # read as its convolutions read it (4 axes), the mean over (1, 2) keeps the loop's running size
    assert "        self.dense_0 = nnx.Linear(x_features, 3, rngs=rngs)\n" in fixed
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.cos(jnp.arange(2 * 8 * 8 * 2, dtype=jnp.float32).reshape(2, 8, 8, 2))
    difference = max_relative_difference(NEST, fixed, lambda linen: linen["Net"]((2, 2)),
                                         lambda ns, nnx: ns["Net"](2, (2, 2), rngs=nnx.Rngs(0)), x,
                                         [({}, "eval")])
    assert difference <= 1e-5


@pytest.mark.parametrize("old, new, reason", [
    ("        return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))",
     "        return nn.Dense(3)(jnp.mean(x, axis=(1, 2))) * j", "`j`, bound by a nest of loops that builds modules"),
    ("                x = Block(4 * 2**i, strides=strides)(x)\n",
     "                x = Block(4 * 2**i, strides=strides)(x)\n                x = x * 2\n",
     "does more than apply one of them"),
])
def test_nests_of_loops_that_cannot_become_one_applied_list_get_no_fix(old, new, reason):
    source = NEST.replace(old, new)
    assert source != NEST
    fixed, messages = convert(source)
    assert fixed is None
    assert reason in messages["Net"], messages


PROJECTED = RESNET.replace('''        skip = self.norm(name="skip_norm")(self.conv(self.channels, (1, 1), self.stride, name="skip")(x))
        return self.act(h + skip)''', '''        skip = x
        if skip.shape != h.shape:
            skip = self.conv(self.channels, (1, 1), self.stride, name="skip")(skip)
            skip = self.norm(name="skip_norm")(skip)
        return self.act(h + skip)''').replace("widths: tuple = (4, 6)", "widths: tuple = (4, 4, 6)")


def test_a_projection_made_when_the_shapes_differ_is_built_when_sizes_or_strides_say_so():
    assert PROJECTED != RESNET
    fixed, messages = convert(PROJECTED)
    assert fixed is not None, messages
    guard = "        if in_features != channels or stride not in (1, (1,), (1, 1), (1, 1, 1)):\n"
    assert guard + "            self.skip = conv(in_features, channels, (1, 1), stride, rngs=rngs)\n" in fixed
    assert guard + "            self.skip_norm = norm(channels, rngs=rngs)\n" in fixed
    assert "        if skip.shape != h.shape:\n            skip = self.skip(skip)\n" in fixed  # the test stays
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.sin(jnp.arange(2 * 6 * 6 * 2, dtype=jnp.float32).reshape(2, 6, 6, 2))
    # the first unit keeps 4 channels at stride 1 (no projection), the others project
    difference = max_relative_difference(
        PROJECTED, fixed, lambda linen: linen["Net"](), lambda ns, nnx: ns["Net"](2, rngs=nnx.Rngs(0)), x,
        [({"train": False}, "eval"), ({"train": True}, "train")])
    assert difference <= 1e-5


@pytest.mark.parametrize("old, new", [
    ('        h = self.conv(self.channels, (3, 3), self.stride)(x)\n',
     '        h = self.conv(self.channels, (3, 3), self.stride, padding="VALID")(x)\n'),  # shrinks at stride 1
    ("        skip = x\n", "        skip = x[:, ::2]\n"),  # a slice changes the shape too
    ("        if skip.shape != h.shape:\n", "        if skip.shape != h.shape or True:\n"),
])
def test_shape_tests_the_conversion_cannot_bound_by_sizes_get_no_fix(old, new):
    source = PROJECTED.replace(old, new)
    assert source != PROJECTED
    fixed, messages = convert(source)
    assert fixed is None
    assert "uses `Unit`, which cannot be converted: submodules created inside a loop or branch are not " \
           "converted" in messages["Net"], messages


CLASS_FIELD = NEST.replace('''class Net(nn.Module):
    stage_sizes: tuple = (2, 1)
''', '''class Wide(nn.Module):
    width: int
    strides: tuple = (1, 1)

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(2 * self.width, (3, 3), self.strides)(x))


class Net(nn.Module):
    block_cls: type
    stage_sizes: tuple = (2, 1)
''').replace("x = Block(4 * 2**i, strides=strides)(x)", "x = self.block_cls(4 * 2**i, strides=strides)(x)") + '''

Small = partial(Net, block_cls=Block)
Large = partial(Net, block_cls=Wide)
'''


def test_a_field_holding_one_of_the_files_block_classes_builds_them_through_the_field():
    source = "from functools import partial\n" + CLASS_FIELD
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert ("                self.blocks.append(block_cls(x_features, 4 * 2**i, strides=strides, rngs=rngs))\n"
            "                x_features = {Block: 4 * 2**i, Wide: 2 * (4 * 2**i)}[block_cls]\n") in fixed
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.cos(jnp.arange(2 * 8 * 8 * 2, dtype=jnp.float32).reshape(2, 8, 8, 2))
    for name in ("Block", "Wide"):
        # Linen names the modules Wide_0, Wide_1, ...: the transplant finds them in the list holding Wide modules
        difference = max_relative_difference(
            source, fixed, lambda linen: linen["Net"](linen[name], (2, 2)),
            lambda ns, nnx: ns["Net"](2, ns[name], (2, 2), rngs=nnx.Rngs(0)), x, [({}, "eval")])
        assert difference <= 1e-5, name


def test_a_class_field_given_something_else_or_used_outside_a_loop_gets_no_fix():
    source = "from functools import partial\n" + CLASS_FIELD
    fixed, messages = convert(source + "Odd = partial(Net, block_cls=print)\n")  # not a module class of the file
    assert "`block_cls` is a module-valued field" in messages["Net"], messages
    looped = "        for i, block_size in enumerate(self.stage_sizes):\n            for j in range(block_size):\n" \
             "                strides = (2, 2) if i > 0 and j == 0 else (1, 1)\n" \
             "                x = self.block_cls(4 * 2**i, strides=strides)(x)\n"
    assert looped in source
    fixed, messages = convert(source.replace(looped, "        x = self.block_cls(4)(x)\n"))
    assert "outside a loop: a field that may hold Block, Wide, whose Linen name depends on the class" \
        in messages["Net"], messages


def test_blocks_waiting_for_a_builder_that_stays_linen_say_which_builder_and_why():
    # as imagenet: only Net builds the blocks (through unit_cls), and the layer a partial passes keeps Net Linen
    source = "from functools import partial\n" + RESNET.replace("class Net(nn.Module):", "class Net(nn.Module):\n    unit_cls: Any = None").replace(
        "x = Unit(width,", "x = self.unit_cls(width,") + "\n\nNet1 = partial(Net, unit_cls=Unit)\nNetT = partial(Net, conv=nn.ConvTranspose)\n"
    fixed, messages = convert(source)
    assert "`Net` builds it (`unit_cls=Unit`) and stays Linen: `NetT = partial(..., conv=nn.ConvTranspose)`" \
        in messages["Unit"], messages
    # a block built by a class body that stays Linen says so as any used class does
    fixed, messages = convert(RESNET + "\n\nNetT = partial(Net, conv=nn.ConvTranspose)\n")
    assert messages["Unit"].startswith("Linen Module class `Unit`: migrate to `nnx.Module` (no fix: `Net` uses it "
                                       "and stays Linen"), messages
