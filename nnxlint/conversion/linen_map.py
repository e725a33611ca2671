"""The Linen -> NNX layer table that the conversion reads.

One entry per Linen layer: its NNX counterpart, how positional arguments map
to names on each side, which NNX argument receives the input size that Linen
infers, renamed keywords (construction and call time), and the defaults that
differ.  ``tests/test_linen_map.py`` checks every name and every default claim
against the installed Flax; measured on flax 0.12.8.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Optional


@dataclass(frozen=True)
class LayerMapping:
    linen: str
    nnx: str
    # Linen dataclass fields in order: the names of positional constructor arguments.
    linen_positional: tuple[str, ...]
    # NNX parameters that may be passed positionally, in order.
    nnx_positional: tuple[str, ...]
    # The NNX argument that takes the input's feature size (last axis), if any.
    input_size: Optional[str] = None
    # The Linen argument giving the output's last axis; the input's when absent.
    output_size: Optional[str] = None
    # Linen keyword -> NNX keyword at construction.
    renamed: Mapping[str, str] = field(default_factory=dict)
    # Linen keyword -> NNX keyword at call time.
    call_renamed: Mapping[str, str] = field(default_factory=dict)
    # Linen positional call parameters after the input, by name.
    call_positional: tuple[str, ...] = ()
    # Arguments NNX needs that Linen does not: keyword -> source text.
    added: Mapping[str, str] = field(default_factory=dict)
    # The train/eval switch: Linen argument (construction or call) that
    # ``model.train()`` / ``model.eval()`` set in NNX, and its value in eval mode.
    mode_flag: Optional[str] = None
    # Linen fields with no NNX parameter: a call that sets one gets no fix.
    no_equivalent: tuple[str, ...] = ()
    # Keywords whose defaults are equal on both sides (checked by the tests).
    same_defaults: tuple[str, ...] = ()
    # Keyword -> (Linen default, NNX default), where they differ.
    different_defaults: Mapping[str, tuple[object, object]] = field(default_factory=dict)
    # Holds no variables on either side (no weights to place): ``__init__`` may build it
    # where Linen builds it only in some iterations of a loop (``constructs/loop_stack.py``).
    without_variables: bool = False


_INIT_DEFAULTS = ("use_bias", "kernel_init", "bias_init", "param_dtype", "dtype", "precision")
# Linen norms reduce in float32 for low-precision inputs; NNX has no such switch.
_FLOAT32_REDUCTIONS = ("force_float32_reductions",)
_ATTENTION_EINSUMS = ("force_fp32_for_softmax", "qk_attn_weights_einsum_cls", "attn_weights_value_einsum_cls")
_NORM_DEFAULTS = ("epsilon", "use_bias", "use_scale", "bias_init", "scale_init", "param_dtype",
                  "dtype", "use_fast_variance")

LAYERS: dict[str, LayerMapping] = {mapping.linen: mapping for mapping in (
    LayerMapping("Dense", "Linear", ("features", "use_bias", "dtype", "param_dtype"),
                 ("in_features", "out_features"), input_size="in_features", output_size="features",
                 renamed={"features": "out_features"}, no_equivalent=("dot_general_cls",),
                 same_defaults=_INIT_DEFAULTS),
    LayerMapping("DenseGeneral", "LinearGeneral", ("features", "axis"),
                 ("in_features", "out_features"), input_size="in_features", output_size="features",
                 renamed={"features": "out_features"}, no_equivalent=("batch_dims",),
                 same_defaults=_INIT_DEFAULTS + ("axis",)),
    LayerMapping("Conv", "Conv", ("features", "kernel_size", "strides", "padding"),
                 ("in_features", "out_features", "kernel_size", "strides"), input_size="in_features",
                 output_size="features", renamed={"features": "out_features"},
                 no_equivalent=("conv_general_dilated_cls",),
                 same_defaults=_INIT_DEFAULTS + ("strides", "padding", "input_dilation", "kernel_dilation",
                                                 "feature_group_count")),
    LayerMapping("ConvTranspose", "ConvTranspose", ("features", "kernel_size", "strides", "padding"),
                 ("in_features", "out_features", "kernel_size", "strides"), input_size="in_features",
                 output_size="features", renamed={"features": "out_features"},
                 same_defaults=_INIT_DEFAULTS + ("strides", "padding", "kernel_dilation", "transpose_kernel")),
    LayerMapping("Embed", "Embed", ("num_embeddings", "features"), ("num_embeddings", "features"),
                 output_size="features", same_defaults=("embedding_init", "param_dtype", "dtype")),
    LayerMapping("LayerNorm", "LayerNorm", ("epsilon", "dtype", "param_dtype", "use_bias"),
                 ("num_features",), input_size="num_features", no_equivalent=_FLOAT32_REDUCTIONS,
                 same_defaults=_NORM_DEFAULTS + ("reduction_axes", "feature_axes")),
    LayerMapping("RMSNorm", "RMSNorm", ("epsilon", "dtype", "param_dtype", "use_scale"),
                 ("num_features",), input_size="num_features", no_equivalent=_FLOAT32_REDUCTIONS,
                 same_defaults=("epsilon", "use_scale", "scale_init", "param_dtype", "dtype",
                                "reduction_axes", "feature_axes", "use_fast_variance")),
    LayerMapping("GroupNorm", "GroupNorm", ("num_groups", "group_size", "epsilon"),
                 ("num_features", "num_groups", "group_size"), input_size="num_features",
                 no_equivalent=_FLOAT32_REDUCTIONS, same_defaults=_NORM_DEFAULTS + ("num_groups", "group_size")),
    LayerMapping("BatchNorm", "BatchNorm", ("use_running_average", "axis", "momentum", "epsilon"),
                 ("num_features",), input_size="num_features", mode_flag="use_running_average",
                 call_positional=("use_running_average",), no_equivalent=_FLOAT32_REDUCTIONS,
                 same_defaults=_NORM_DEFAULTS + ("axis", "momentum"),
                 different_defaults={"use_running_average": (None, False)}),
    LayerMapping("Dropout", "Dropout", ("rate", "broadcast_dims", "deterministic", "rng_collection"),
                 ("rate",), mode_flag="deterministic", call_renamed={"rng": "rngs"},
                 call_positional=("deterministic", "rng"),
                 same_defaults=("broadcast_dims", "rng_collection"),
                 different_defaults={"deterministic": (None, False)}, without_variables=True),
    LayerMapping("MultiHeadDotProductAttention", "MultiHeadAttention", ("num_heads",),
                 ("num_heads", "in_features", "qkv_features", "out_features"), input_size="in_features",
                 output_size="out_features", call_renamed={"dropout_rng": "rngs"},
                 call_positional=("inputs_k", "inputs_v"),
                 added={"decode": "False"}, mode_flag="deterministic", no_equivalent=_ATTENTION_EINSUMS,
                 same_defaults=_INIT_DEFAULTS + ("qkv_features", "out_features", "broadcast_dropout",
                                                 "dropout_rate", "out_kernel_init", "out_bias_init"),
                 different_defaults={"decode": (False, None)}),
    LayerMapping("SelfAttention", "MultiHeadAttention", ("num_heads",),
                 ("num_heads", "in_features", "qkv_features", "out_features"), input_size="in_features",
                 output_size="out_features", call_renamed={"dropout_rng": "rngs"},
                 call_positional=("mask", "deterministic"),
                 added={"decode": "False"}, mode_flag="deterministic", no_equivalent=_ATTENTION_EINSUMS,
                 same_defaults=_INIT_DEFAULTS + ("qkv_features", "out_features", "broadcast_dropout",
                                                 "dropout_rate", "out_kernel_init", "out_bias_init"),
                 different_defaults={"decode": (False, None)}),
    LayerMapping("LSTMCell", "LSTMCell", ("features", "gate_fn", "activation_fn"),
                 ("in_features", "hidden_features"), input_size="in_features", output_size="features",
                 renamed={"features": "hidden_features"},
                 same_defaults=("gate_fn", "activation_fn", "kernel_init", "bias_init", "param_dtype", "dtype")),
    LayerMapping("OptimizedLSTMCell", "OptimizedLSTMCell", ("features", "gate_fn", "activation_fn"),
                 ("in_features", "hidden_features"), input_size="in_features", output_size="features",
                 renamed={"features": "hidden_features"},
                 same_defaults=("gate_fn", "activation_fn", "kernel_init", "recurrent_kernel_init", "bias_init",
                                "param_dtype", "dtype")),
    LayerMapping("GRUCell", "GRUCell", ("features", "gate_fn", "activation_fn"),
                 ("in_features", "hidden_features"), input_size="in_features", output_size="features",
                 renamed={"features": "hidden_features"},
                 same_defaults=("gate_fn", "activation_fn", "kernel_init", "recurrent_kernel_init",
                                "bias_init", "param_dtype", "dtype")),
)}
# Linen's subclass with the same fields and call
LAYERS["MultiHeadAttention"] = replace(LAYERS["MultiHeadDotProductAttention"], linen="MultiHeadAttention")

# Linen functions that flax.nnx re-exports as the very same objects.
SAME_FUNCTIONS = frozenset({
    "relu", "gelu", "silu", "swish", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "leaky_relu",
    "one_hot", "softplus", "celu", "selu", "glu", "standardize", "relu6", "hard_tanh", "logsumexp",
    "log_sigmoid", "hard_sigmoid", "hard_silu", "soft_sign", "max_pool", "avg_pool", "pool",
})
# Linen functions whose flax.nnx twins are other objects with the same signature that
# compute the same (only a rank mismatch raises ValueError instead of AssertionError).
TWIN_FUNCTIONS = frozenset({"combine_masks", "make_attention_mask", "make_causal_mask"})
# Linen functions that read no module state, only Flax's global logical-axis rules (the ones
# ``nnx.logical_axis_rules`` sets too): converted code calls them as they are, through the Linen import.
STATELESS_FUNCTIONS = frozenset({"with_logical_constraint"})
# Functions that keep the array's shape (for the static shape inference).
ELEMENTWISE_FUNCTIONS = frozenset({
    "relu", "gelu", "silu", "swish", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "leaky_relu",
    "softplus", "celu", "selu", "standardize", "relu6", "hard_tanh", "log_sigmoid", "hard_sigmoid",
    "hard_silu", "soft_sign",
})
POOLING_FUNCTIONS = frozenset({"max_pool", "avg_pool"})

# Linen collections of ``self.variable`` -> the NNX Variable type holding them.
VARIABLE_TYPES = {"params": "Param", "batch_stats": "BatchStat", "cache": "Cache"}


def custom_variable_type(collection: str) -> str:
    """The ``nnx.Variable`` subclass the conversion defines for a collection of
    its own (``'ema_stats'`` -> ``EmaStats``); ``nnxlint.transplant`` finds it by
    this name."""
    return "".join(part[:1].upper() + part[1:] for part in collection.split("_"))

# Linen cells that keep one Dense per gate where the NNX cell fuses them into one
# Linear per input: NNX layer -> the Linen gate layers concatenated on the output
# axis, in the order the NNX cell splits that output (nnx.GRUCell: r, z, n).
# (nnx.OptimizedLSTMCell: i, f, g, o, as Linen's computes them.)
FUSED_GATES = {"GRUCell": {"dense_i": ("ir", "iz", "in"), "dense_h": ("hr", "hz", "hn")},
               "OptimizedLSTMCell": {"dense_i": ("ii", "if", "ig", "io"), "dense_h": ("hi", "hf", "hg", "ho")}}
# Linen gate parameters the fused NNX cell has no place for.  Linen's GRU adds a
# bias to the candidate's recurrent term, inside the reset gate
# (tanh(W_in x + b_in + r * (W_hn h + b_hn))); nnx.GRUCell's dense_h has no bias,
# so the two agree only while b_hn is zero, as it is at init: training moves it.
UNFUSABLE_GATE_PARAMETERS = {"GRUCell": (("hn", "bias"),), "OptimizedLSTMCell": ()}
# Where converted code keeps them: the parameter of the NNX cell's subclass that the
# conversion adds to the file (``constructs/gru.py``), Linen gate parameter -> its attribute.
KEPT_GATE_PARAMETERS = {"GRUCell": {("hn", "bias"): "hn_bias"}}
# Linen wrappers that name an initializer's axes -> the NNX one, and the arguments NNX
# needs besides: Linen only names the axes at creation, NNX also shards the variable
# then (it needs a mesh) unless told not to.
PARTITIONING = {"with_logical_partitioning": "with_partitioning", "with_partitioning": "with_partitioning"}
PARTITIONING_ADDED = {"eager_sharding": "False"}
# Methods of a layer other than ``__call__`` that NNX has with the same meaning.
LAYER_METHODS = {"Embed": ("attend",)}
# Flax layers whose NNX twin hands the arrays it computes with to its ``promote_dtype`` constructor
# argument right after reading its parameters, in this order (Linen promotes the same arrays after
# ``self.param``): a Linen subclass that transforms one parameter in a ``param`` override does it
# in that hook (``constructs/param_override.py``).
PROMOTED_ARRAYS = {"Dense": ("inputs", "kernel", "bias"), "Conv": ("inputs", "kernel", "bias"),
                   "ConvTranspose": ("inputs", "kernel", "bias")}
# Linen layers with no NNX twin that the conversion keeps as Linen inside ``nnx.bridge.ToNNX``
# (``constructs/linen_bridge.py``) -> the layer of the table whose constructor fields, call and
# output shape they share: converted code builds them with that layer's NNX arguments.
BRIDGED_LAYERS = {"ConvLocal": "Conv"}
