"""Build google/tunix's NNX models with tiny configs and run a forward pass (a driver for
benchmarks/nnx109_recall.py: run it with the tunix checkout as working directory)."""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tunix_packages import skip_package_inits

skip_package_inits(os.getcwd())

import jax
import jax.numpy as jnp
from flax import nnx

TINY = {"num_layers": 1, "vocab_size": 64, "embed_dim": 32, "hidden_dim": 64, "num_heads": 2, "head_dim": 16,
        "num_kv_heads": 1, "num_embed": 64, "num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 32,
        "max_position_embeddings": 64, "sliding_window_size": 8, "query_pre_attn_scalar": 16}
GEMMA4_TINY = {"num_layers": 1, "num_embed": 64, "embed_dim": 64, "hidden_dim": 128, "num_heads": 2, "head_dim": 32,
               "num_kv_heads": 1, "frac_shared_layers": 0.0}


def tiny(config):
    """``config`` with every size field it has made small."""
    fields = {field.name for field in dataclasses.fields(config)}
    return dataclasses.replace(config, **{key: value for key, value in TINY.items() if key in fields})


def run(name, make):
    """Build a model and call it on its own sample input; a failure is printed, not raised,
    so that the other models still run."""
    try:
        model = make()
        output = model(**model.get_model_input())
        print(name, "ok", jax.tree.map(jnp.shape, output[0]))
    except Exception as error:  # noqa: BLE001 (report and go on)
        print(name, "FAILED", type(error).__name__, str(error)[:300])


def gemma4_forward(config):
    model = gemma4.Gemma4(config, rngs=nnx.Rngs(0))
    tokens = jnp.arange(16)[None, :] % config.num_embed
    mask = jnp.tril(jnp.ones((16, 16), dtype=jnp.bool_))[None]
    logits, _ = model(tokens, positions=jnp.arange(16)[None, :], attention_mask=mask)
    print("gemma4 ok", logits.shape)


from tunix.models.gemma import model as gemma
from tunix.models.gemma3 import model as gemma3
from tunix.models.gemma4 import model as gemma4
from tunix.models.llama3 import model as llama3
from tunix.models.qwen2 import model as qwen2
from tunix.models.qwen3 import model as qwen3

run("llama3", lambda: llama3.Llama3(tiny(llama3.ModelConfig.llama3p2_1b()), rngs=nnx.Rngs(0)))
run("qwen3", lambda: qwen3.Qwen3(tiny(qwen3.ModelConfig.qwen3_0p6b()), rngs=nnx.Rngs(0)))
run("qwen2", lambda: qwen2.Qwen2(tiny(qwen2.ModelConfig.qwen2p5_0p5b()), rngs=nnx.Rngs(0)))
run("gemma3", lambda: gemma3.Gemma3(tiny(gemma3.ModelConfig.gemma3_270m()), rngs=nnx.Rngs(0)))
run("gemma", lambda: gemma.Gemma(tiny(gemma.ModelConfig.gemma_2b()), rngs=nnx.Rngs(0)))
run("qwen3-moe", lambda: qwen3.Qwen3(tiny(qwen3.ModelConfig.qwen3_30b_a3b()), rngs=nnx.Rngs(0)))
for label, extra in (("dense", {}), ("moe", {"num_experts": 2, "num_experts_per_tok": 1, "expert_dim": 32})):
    try:
        config = gemma4.ModelConfig.gemma4_e2b()
        for key, value in {**GEMMA4_TINY, **extra}.items():
            setattr(config, key, value)
        gemma4_forward(config)
    except Exception as error:  # noqa: BLE001 (report and go on)
        print("gemma4", label, "FAILED", type(error).__name__, str(error)[:300])
