"""What the conversion knows of jraph: the graph-network builders that a Linen
module hands its submodules to, and which graph features each submodule is
called with.  ``tests/test_jraph_map.py`` checks every entry against the
installed jraph's source (read from google-deepmind/jraph 0.0.6.dev0).

A builder (``jraph.GraphNetwork(update_edge_fn=..., ...)``) returns a function
of a ``GraphsTuple``; it calls its update functions in the order of
``GRAPH_MODELS[builder]``, each with the listed features of the graph as it
stands then (an update before it has replaced its feature), and the result
replaces ``writes``.  Aggregations (``segment_sum`` and its kin) keep the
feature axis, so only the features read matter for sizes.  With
``jraph.concatenated_args(f)``, ``f`` receives those arguments concatenated on
the last axis: its input size is the sum of their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

# ``jraph.GraphsTuple``: the feature fields whose last axis a layer reads.
GRAPHS_TUPLE = ("jraph.GraphsTuple", "jraph._src.graph.GraphsTuple")
GRAPH_FEATURES = ("nodes", "edges", "globals")
CONCATENATED_ARGS = "jraph.concatenated_args"


@dataclass(frozen=True)
class UpdateFn:
    keyword: str
    position: int  # in the builder's signature
    writes: str  # the feature it replaces
    reads: tuple[str, ...]  # the features it is called with, in order


GRAPH_MODELS: dict[str, tuple[UpdateFn, ...]] = {
    # _ApplyGraphNet: edges, then nodes (edges aggregated to senders and receivers), then globals
    "jraph.GraphNetwork": (
        UpdateFn("update_edge_fn", 0, "edges", ("edges", "nodes", "nodes", "globals")),
        UpdateFn("update_node_fn", 1, "nodes", ("nodes", "edges", "edges", "globals")),
        UpdateFn("update_global_fn", 2, "globals", ("nodes", "edges", "globals")),
    ),
    # Embed: each feature on its own
    "jraph.GraphMapFeatures": (
        UpdateFn("embed_edge_fn", 0, "edges", ("edges",)),
        UpdateFn("embed_node_fn", 1, "nodes", ("nodes",)),
        UpdateFn("embed_global_fn", 2, "globals", ("globals",)),
    ),
    # _ApplyGCN: the nodes alone, then aggregated over (self) edges
    "jraph.GraphConvolution": (
        UpdateFn("update_node_fn", 0, "nodes", ("nodes",)),
    ),
}

# Builder arguments other than the update functions that keep every feature size
# (aggregations, normalisation switches); any other argument is refused.
SIZE_KEEPING_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "jraph.GraphNetwork": ("aggregate_edges_for_nodes_fn", "aggregate_nodes_for_globals_fn",
                           "aggregate_edges_for_globals_fn"),
    "jraph.GraphMapFeatures": (),
    "jraph.GraphConvolution": ("aggregate_nodes_fn", "add_self_edges", "symmetric_normalization"),
}

# ``f(data, segment_ids, num_segments)``: the result keeps ``data``'s feature axis.
SEGMENT_FUNCTIONS = frozenset(f"jraph.{name}" for name in (
    "segment_sum", "segment_mean", "segment_max", "segment_min", "segment_normalize", "segment_softmax",
))
