"""Submodules handed to jraph's graph-network builders (``constructs/jraph_graph.py``):
the conversion as text (no jraph needed), the forward pass against Linen, and
``jraph_map.py`` against the installed jraph."""

from __future__ import annotations

import contextlib
import importlib.util
import sys

import pytest

from conversion_helpers import convert

GNN = '''
from typing import Callable

from flax import linen as nn
import jax.numpy as jnp
import jraph


class Tower(nn.Module):
    width: int
    rate: float = 0.5
    deterministic: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width)(x))
        x = nn.Dropout(self.rate, deterministic=self.deterministic)(x)
        return nn.Dense(self.width)(x)


class Molecules(nn.Module):
    hidden: int
    classes: int
    deterministic: bool = True
    pooling: Callable = jraph.segment_mean

    @nn.compact
    def __call__(self, graphs: jraph.GraphsTuple) -> jraph.GraphsTuple:
        encoder = jraph.GraphMapFeatures(embed_node_fn=nn.Dense(self.hidden), embed_edge_fn=nn.Dense(self.hidden),
                                         embed_global_fn=nn.Dense(self.hidden))
        graphs = encoder(graphs)
        edge_fn = jraph.concatenated_args(Tower(self.hidden, deterministic=self.deterministic))
        node_fn = jraph.concatenated_args(Tower(2 * self.hidden, deterministic=self.deterministic))
        network = jraph.GraphNetwork(update_edge_fn=edge_fn, update_node_fn=node_fn,
                                     update_global_fn=jraph.concatenated_args(nn.Dense(self.hidden)))
        graphs = network(graphs)
        graphs = graphs._replace(nodes=nn.LayerNorm()(graphs.nodes))
        conv = jraph.GraphConvolution(update_node_fn=nn.Dense(self.hidden), add_self_edges=True)
        graphs = conv(graphs)
        pooled = self.pooling(graphs.nodes, jnp.zeros(graphs.nodes.shape[0], jnp.int32), 1)
        decoder = jraph.GraphMapFeatures(embed_global_fn=nn.Dense(self.classes))
        return decoder(graphs._replace(globals=pooled))
'''


def test_submodules_handed_to_jraph_are_built_with_the_sizes_jraph_calls_them_with():
    fixed, messages = convert(GNN)
    assert fixed is not None, messages
    molecules = fixed[fixed.index("class Molecules"):]
    init_lines = [line.strip() for line in molecules.splitlines() if line.strip().startswith("self.")]
    assert "def __init__(self, graphs_node_features: int, graphs_edge_features: int, " \
           "graphs_global_features: int, hidden: int" in fixed
    # Linen's names in creation order; the sizes follow GraphNetwork's argument lists
    assert init_lines == [
        "self.pooling = pooling",
        "self.dense_0 = nnx.Linear(graphs_node_features, hidden, rngs=rngs)",
        "self.dense_1 = nnx.Linear(graphs_edge_features, hidden, rngs=rngs)",
        "self.dense_2 = nnx.Linear(graphs_global_features, hidden, rngs=rngs)",
        "self.tower_0 = Tower(4 * hidden, hidden, deterministic=deterministic, rngs=rngs)",  # e, s, r, g
        "self.tower_1 = Tower(4 * hidden, 2 * hidden, deterministic=deterministic, rngs=rngs)",  # n, e, e, g
        "self.dense_3 = nnx.Linear(2 * hidden + 2 * hidden, hidden, rngs=rngs)",  # new n, e, g
        "self.layer_norm_0 = nnx.LayerNorm(2 * hidden, rngs=rngs)",
        "self.dense_4 = nnx.Linear(2 * hidden, hidden, rngs=rngs)",
        "self.dense_5 = nnx.Linear(hidden, classes, rngs=rngs)",  # globals: the pooled nodes
    ]
    assert "encoder = jraph.GraphMapFeatures(embed_node_fn=self.dense_0, embed_edge_fn=self.dense_1," in fixed
    assert "edge_fn = jraph.concatenated_args(self.tower_0)" in fixed
    assert "update_global_fn=jraph.concatenated_args(self.dense_3))" in fixed
    assert convert(fixed)[0] is None  # idempotent: nothing Linen left


def test_a_builder_in_a_branch_is_refused_with_the_construct_and_its_line():
    source = GNN.replace("        node_fn = jraph.concatenated_args(",
                         "        if self.deterministic:\n            node_fn = jraph.concatenated_args(")
    fixed, messages = convert(source)
    assert fixed is None
    line = source.splitlines().index("            node_fn = jraph.concatenated_args(Tower(2 * self.hidden, "
                                     "deterministic=self.deterministic))") + 1
    assert f"`jraph.concatenated_args(Tower(...))` at line {line} is inside a branch (or a loop) that is not a " \
           "message-passing loop" in messages["Molecules"]


def test_a_module_given_a_graph_it_cannot_follow_is_refused():
    source = GNN.replace("graphs = encoder(graphs)", "graphs = encoder(graphs.nodes)")
    fixed, messages = convert(source)
    assert fixed is None
    assert "`encoder(...)`: its argument is not known to be a `jraph.GraphsTuple`" in messages["Molecules"]


def test_attention_arguments_are_refused():
    source = GNN.replace("update_edge_fn=edge_fn, ", "update_edge_fn=edge_fn, attention_logit_fn=None, ")
    assert "`jraph.GraphNetwork(attention_logit_fn=...)`" in convert(source)[1]["Molecules"]


@contextlib.contextmanager
def _same_masks(jax):
    """Every dropout mask from one fixed key sequence, in Linen and in NNX."""
    original, count = jax.random.bernoulli, [0]

    def bernoulli(key, p=0.5, shape=None, **kwargs):
        count[0] += 1
        return original(jax.random.fold_in(jax.random.key(7), count[0]), p, shape, **kwargs)

    jax.random.bernoulli = bernoulli
    try:
        yield
    finally:
        jax.random.bernoulli = original


def _load(source: str, name: str, tmp_path):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("deterministic", [True, False])
def test_the_converted_gnn_computes_what_linen_does(tmp_path, deterministic):
    jraph = pytest.importorskip("jraph")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, messages = convert(GNN)
    assert fixed is not None, messages
    linen = _load(GNN, "linen_gnn", tmp_path)
    converted = _load(fixed, "nnx_gnn", tmp_path)
    graph = jraph.GraphsTuple(
        nodes=jax.random.normal(jax.random.key(1), (5, 3)), edges=jax.random.normal(jax.random.key(2), (4, 2)),
        senders=jnp.array([0, 1, 2, 3]), receivers=jnp.array([1, 2, 3, 4]),
        globals=jax.random.normal(jax.random.key(3), (1, 6)), n_node=jnp.array([5]), n_edge=jnp.array([4]))
    model = linen.Molecules(hidden=8, classes=3, deterministic=deterministic)
    variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(4)}, graph)
    nnx_model = converted.Molecules(3, 2, 6, hidden=8, classes=3, deterministic=deterministic, rngs=nnx.Rngs(0))
    load_linen_variables(nnx_model, variables)
    with _same_masks(jax):
        expected = model.apply(variables, graph, rngs={"dropout": jax.random.key(4)}).globals
    with _same_masks(jax):
        got = nnx_model(graph).globals
    assert expected.shape == got.shape == (1, 3)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_the_table_matches_what_the_installed_jraph_calls_each_update_function_with():
    jraph = pytest.importorskip("jraph")
    import inspect

    import jax.numpy as jnp

    from nnxlint.conversion.jraph_map import GRAPH_MODELS, SIZE_KEEPING_ARGUMENTS

    # distinct feature sizes tell the arguments apart; each update writes a new distinct size
    sizes = {"nodes": 2, "edges": 3, "globals": 5}
    written = {"nodes": 7, "edges": 11, "globals": 13}
    graph = jraph.GraphsTuple(nodes=jnp.ones((3, 2)), edges=jnp.ones((2, 3)), globals=jnp.ones((1, 5)),
                              senders=jnp.array([0, 1]), receivers=jnp.array([1, 2]),
                              n_node=jnp.array([3]), n_edge=jnp.array([2]))
    for builder, updates in GRAPH_MODELS.items():
        function = getattr(jraph, builder.rpartition(".")[2])
        parameters = list(inspect.signature(function).parameters)
        assert set(SIZE_KEEPING_ARGUMENTS[builder]) <= set(parameters)
        seen: dict[str, tuple[int, ...]] = {}

        def recorder(update, seen=seen):
            def record(*args):
                seen[update.keyword] = tuple(arg.shape[-1] for arg in args)
                return jnp.ones(args[0].shape[:-1] + (written[update.writes],))
            return record

        for update in updates:
            assert parameters[update.position] == update.keyword
        function(**{update.keyword: recorder(update) for update in updates})(graph)
        current = dict(sizes)
        for update in updates:  # in the table's order, each reading the graph as updated so far
            assert seen[update.keyword] == tuple(current[name] for name in update.reads), (builder, update)
            current[update.writes] = written[update.writes]


LOOP = '''
from typing import Sequence

from flax import linen as nn
import jax.numpy as jnp
import jraph


def merged(new, old):
    return new._replace(nodes=new.nodes + old.nodes)


class Perceptron(nn.Module):
    sizes: Sequence[int]

    @nn.compact
    def __call__(self, x):
        for size in self.sizes:
            x = nn.gelu(nn.Dense(size)(x))
        return x


class Convolutions(nn.Module):
    width: int
    depth: int
    steps: int
    norm: bool = True

    @nn.compact
    def __call__(self, graphs: jraph.GraphsTuple):
        embed = jraph.GraphMapFeatures(embed_node_fn=nn.Dense(self.width))
        graphs = embed(graphs)
        for _ in range(self.steps):
            sizes = [self.width] * self.depth
            step = jraph.GraphConvolution(update_node_fn=jraph.concatenated_args(Perceptron(sizes)))
            graphs = merged(step(graphs), graphs)
            if self.norm:
                graphs = graphs._replace(nodes=nn.LayerNorm()(graphs.nodes))
        return jraph.segment_sum(graphs.nodes, jnp.zeros(graphs.nodes.shape[0], jnp.int32), 1)
'''


def test_a_message_passing_loop_builds_one_list_per_class_in_linen_order():
    fixed, messages = convert(LOOP)
    assert fixed is not None, messages
    assert """\
        self.perceptrons = nnx.List()
        self.layer_norms = nnx.List()
        for _ in range(steps):
            self.perceptrons.append(Perceptron(width, ([width] * depth), rngs=rngs))
            if norm:
                self.layer_norms.append(nnx.LayerNorm(width, rngs=rngs))
""" in fixed
    assert """\
        perceptrons = iter(self.perceptrons)
        layer_norms = iter(self.layer_norms)
        for _ in range(self.steps):
""" in fixed
    assert "step = jraph.GraphConvolution(update_node_fn=jraph.concatenated_args(next(perceptrons)))" in fixed
    assert "graphs = graphs._replace(nodes=next(layer_norms)(graphs.nodes))" in fixed
    # the sizes only the perceptrons read are computed in ``__init__`` now: neither they nor `depth` stay
    assert "sizes = [self.width] * self.depth" not in fixed and "self.depth = depth" not in fixed


def test_a_class_made_inside_and_outside_the_loop_is_refused():
    source = LOOP.replace("embed_node_fn=nn.Dense(self.width)", "embed_node_fn=Perceptron([self.width])")
    fixed, messages = convert(source)
    assert fixed is None
    assert "`Perceptron` is made both inside a message-passing loop and outside it" in messages["Convolutions"]


# each pass widens the nodes to twice the width: the first pass sees `width`, the others `2 * width`
GROWING = LOOP.replace("sizes = [self.width] * self.depth", "sizes = [2 * self.width]").replace(
    "graphs = merged(step(graphs), graphs)", "graphs = step(graphs)")


def test_a_size_that_a_pass_changes_is_carried_from_pass_to_pass():
    fixed, messages = convert(GROWING)
    assert fixed is not None, messages
    assert """\
        graphs_nodes_size = width
        for _ in range(steps):
            self.perceptrons.append(Perceptron(graphs_nodes_size, ([2 * width]), rngs=rngs))
            if norm:
                self.layer_norms.append(nnx.LayerNorm(2 * width, rngs=rngs))
            graphs_nodes_size = 2 * width
""" in fixed


def test_a_sum_of_arrays_is_as_wide_as_the_wider_of_its_terms():
    """A skip connection ``graphs.nodes + step(graphs).nodes``: NumPy broadcasting runs
    only where the sizes are equal or one is 1, and then gives the larger, so ``max``
    is exact wherever Linen runs (ogbg_molpcba's GraphNet with MLPs of no layers)."""
    from nnxlint.conversion.shapes import Size, broadcast

    width, wide = (None, Size("width")), (None, Size("4 * width"))
    assert broadcast(width, width) == width
    assert broadcast(wide, width) == (None, Size("max(4 * width, width)"))
    assert broadcast((None, Size.number(1)), wide) == wide
    assert broadcast((None, Size.number(3)), (None, Size.number(4))) is None  # fails in Linen too
    # other ranks: NumPy gives the shorter shape leading axes of size 1
    assert broadcast((None, None, Size("width")), width) == (None, None, Size("width"))
    assert broadcast((None, Size.number(3), Size("width")), (Size.number(2), Size("width"))) is None


@pytest.mark.parametrize("source", [LOOP, GROWING], ids=["same sizes", "growing sizes"])
@pytest.mark.parametrize("norm", [True, False])
def test_the_converted_loop_computes_what_linen_does(tmp_path, norm, source):
    jraph = pytest.importorskip("jraph")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, messages = convert(source)
    assert fixed is not None, messages
    suffix = f"{norm}_{source is GROWING}"
    linen = _load(source, f"linen_loop_{suffix}", tmp_path)
    converted = _load(fixed, f"nnx_loop_{suffix}", tmp_path)
    graph = jraph.GraphsTuple(
        nodes=jax.random.normal(jax.random.key(1), (4, 3)), edges=None, globals=None,
        senders=jnp.array([0, 1, 2]), receivers=jnp.array([1, 2, 3]), n_node=jnp.array([4]), n_edge=jnp.array([3]))
    model = linen.Convolutions(width=5, depth=2, steps=3, norm=norm)
    variables = model.init(jax.random.key(0), graph)
    nnx_model = converted.Convolutions(3, width=5, depth=2, steps=3, norm=norm, rngs=nnx.Rngs(0))
    load_linen_variables(nnx_model, variables)
    expected, got = model.apply(variables, graph), nnx_model(graph)
    assert expected.shape == got.shape == (1, 5 if source is LOOP else 10)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6)


OPTIONAL_EDGES = LOOP.replace('''            step = jraph.GraphConvolution(update_node_fn=jraph.concatenated_args(Perceptron(sizes)))
''', '''            if self.edges:
                edge_fn = jraph.concatenated_args(Perceptron([self.width]))
            else:
                edge_fn = None
            node_fn = jraph.concatenated_args(Perceptron([self.width, self.width]))
            step = jraph.GraphNetwork(update_edge_fn=edge_fn, update_node_fn=node_fn)
''').replace("    norm: bool = True\n", "    norm: bool = True\n    edges: bool = True\n").replace(
    "embed_node_fn=nn.Dense(self.width))", "embed_node_fn=nn.Dense(self.width), embed_edge_fn=nn.Dense(self.width))")


def test_an_update_function_that_is_none_unless_a_field_says_so_keeps_its_sizes():
    fixed, messages = convert(OPTIONAL_EDGES)
    assert fixed is not None, messages
    assert """\
        for _ in range(steps):
            if edges:
                self.perceptrons.append(Perceptron(3 * width + graphs_global_features, [width], rngs=rngs))
            self.perceptrons.append(Perceptron(3 * width + graphs_global_features, [width, width], rngs=rngs))
""" in fixed
    assert "edge_fn = jraph.concatenated_args(next(perceptrons))" in fixed
    # edges of another size after the update: the next pass builds its modules for the size it sees
    fixed, messages = convert(OPTIONAL_EDGES.replace("Perceptron([self.width])", "Perceptron([2 * self.width])"))
    assert """\
        graphs_edges_size = width
        for _ in range(steps):
            if edges:
                self.perceptrons.append(Perceptron(graphs_edges_size + 2 * width + graphs_global_features, [2 * width], \
rngs=rngs))
""" in fixed
    assert "            graphs_edges_size = 2 * width if edges else graphs_edges_size\n" in fixed


def test_after_the_loop_a_size_no_pass_changed_is_its_value_before_the_loop():
    """Only the edges are carried (``graphs_edges_size``): a layer after the loop reads
    the nodes' size as the plain expression, never a running size ``__init__`` lacks."""
    source = OPTIONAL_EDGES.replace("Perceptron([self.width])", "Perceptron([2 * self.width])").replace(
        "        return jraph.segment_sum(graphs.nodes,",
        "        graphs = graphs._replace(nodes=nn.Dense(3)(graphs.nodes))\n        return jraph.segment_sum(graphs.nodes,")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "            graphs_edges_size = 2 * width if edges else graphs_edges_size\n" \
           "        self.dense_2 = nnx.Linear(width, 3, rngs=rngs)\n" in fixed
    assert "graphs_nodes_size" not in fixed


# the edges come out of the optional update at another size, and are projected back within the pass
WIDER_EDGES = OPTIONAL_EDGES.replace("Perceptron([self.width])", "Perceptron([2 * self.width])").replace(
    "            graphs = merged(step(graphs), graphs)\n",
    "            graphs = merged(step(graphs), graphs)\n"
    "            graphs = graphs._replace(edges=Perceptron([self.width])(graphs.edges))\n")


def test_sizes_after_an_optional_update_are_conditional_on_its_test():
    fixed, messages = convert(WIDER_EDGES)
    assert fixed is not None, messages
    assert """\
        for _ in range(steps):
            if edges:
                self.perceptrons.append(Perceptron(3 * width + graphs_global_features, [2 * width], rngs=rngs))
            self.perceptrons.append(Perceptron(width + 2 * (2 * width if edges else width) + graphs_global_features, \
[width, width], rngs=rngs))
            self.perceptrons.append(Perceptron(2 * width if edges else width, [width], rngs=rngs))
""" in fixed


@pytest.mark.parametrize("source", [OPTIONAL_EDGES, WIDER_EDGES], ids=["same sizes", "conditional sizes"])
@pytest.mark.parametrize("edges", [True, False])
def test_the_optional_update_computes_what_linen_does(tmp_path, edges, source):
    jraph = pytest.importorskip("jraph")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, messages = convert(source)
    assert fixed is not None, messages
    suffix = f"{edges}_{source is WIDER_EDGES}"
    linen = _load(source, f"linen_edges_{suffix}", tmp_path)
    converted = _load(fixed, f"nnx_edges_{suffix}", tmp_path)
    graph = jraph.GraphsTuple(
        nodes=jax.random.normal(jax.random.key(1), (4, 3)), edges=jax.random.normal(jax.random.key(2), (3, 2)),
        globals=jax.random.normal(jax.random.key(3), (1, 5)), senders=jnp.array([0, 1, 2]),
        receivers=jnp.array([1, 2, 3]), n_node=jnp.array([4]), n_edge=jnp.array([3]))
    model = linen.Convolutions(width=5, depth=2, steps=2, edges=edges)
    variables = model.init(jax.random.key(0), graph)
    nnx_model = converted.Convolutions(3, 2, 5, width=5, depth=2, steps=2, edges=edges, rngs=nnx.Rngs(0))
    load_linen_variables(nnx_model, variables)
    np.testing.assert_allclose(np.asarray(nnx_model(graph)), np.asarray(model.apply(variables, graph)),
                               rtol=1e-5, atol=1e-6)


def test_an_init_site_passes_the_example_graph_s_feature_sizes():
    source = '''
import jax
import jraph
from flax import linen as nn


class Embed(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, graphs: jraph.GraphsTuple) -> jraph.GraphsTuple:
        encoder = jraph.GraphMapFeatures(embed_node_fn=nn.Dense(self.hidden), embed_global_fn=nn.Dense(self.hidden))
        return encoder(graphs)


def create(graphs):
    model = Embed(hidden=4)
    variables = model.init(jax.random.key(0), graphs)
    return model, variables
'''
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "model = Embed(graphs.nodes.shape[-1], graphs.globals.shape[-1], hidden=4, rngs=nnx.Rngs(0))" in fixed


def test_modules_made_in_a_loop_inside_the_message_passing_loop_are_refused():
    source = LOOP.replace("            if self.norm:\n",
                          "            for _ in range(2):\n"
                          "                graphs = graphs._replace(nodes=nn.Dense(self.width)(graphs.nodes))\n"
                          "            if self.norm:\n")
    fixed, messages = convert(source)
    assert fixed is None
    assert "a module made in a loop (or comprehension) inside a message-passing loop" in messages["Convolutions"]
