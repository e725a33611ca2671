"""Cold vs warm cache: whole ``nnxlint check`` runs over a generated corpus.

    python benchmarks/bench_cache.py [--files 300] [--repeat 5]

Generates a corpus of Flax code (Linen modules, NNX modules, training loops,
plain utilities) in a temporary directory, then times complete ``nnxlint check``
processes: cold (cache directory emptied before each run) and warm (unchanged
tree, cache filled by the previous run), and runs with ``--no-cache``.  The three
kinds of run are interleaved, so that load from other processes hits them alike;
prints medians and minimums and the warm/cold ratio of each.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINEN_MODULE = '''\
"""Linen model {index}."""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class Block{index}(nn.Module):
    features: int = {width}
    dropout: float = 0.1

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        residual = x
        x = nn.LayerNorm()(x)
        x = nn.Dense(self.features * 4)(x)
        x = nn.gelu(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(self.features)(x)
        return x + residual


class Model{index}(nn.Module):
    widths: Sequence[int] = ({width}, {width})

    def setup(self):
        self.blocks = [Block{index}(w) for w in self.widths]
        self.head = nn.Dense(10)

    def __call__(self, x, train: bool = False):
        for block in self.blocks:
            x = block(x, train=train)
        return self.head(jnp.mean(x, axis=1))
'''

NNX_MODULE = '''\
"""NNX model {index}."""
import jax
import jax.numpy as jnp
from flax import nnx


class Block{index}(nnx.Module):
    def __init__(self, features: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(features, rngs=rngs)
        self.up = nnx.Linear(features, features * 4, rngs=rngs)
        self.down = nnx.Linear(features * 4, features, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x):
        y = self.up(self.norm(x))
        y = self.dropout(jax.nn.gelu(y))
        return x + self.down(y)


class Model{index}(nnx.Module):
    def __init__(self, depth: int = 2, features: int = {width}, *, rngs: nnx.Rngs):
        self.blocks = nnx.List([Block{index}(features, rngs=rngs) for _ in range(depth)])
        self.head = nnx.Linear(features, 10, rngs=rngs)

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(jnp.mean(x, axis=1))
'''

TRAINING = '''\
"""Training loop {index}."""
import optax
from flax import nnx


def loss_fn(model, batch):
    logits = model(batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


@nnx.jit
def train_step(model, optimizer, batch):
    loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
    optimizer.update(model, grads)
    return loss


def make_optimizer(model, learning_rate: float = {rate}):
    return nnx.Optimizer(model, optax.adamw(learning_rate))


def train(model, batches):
    optimizer = make_optimizer(model)
    losses = []
    for batch in batches:
        losses.append(train_step(model, optimizer, batch))
    return losses
'''

UTILITY = '''\
"""Helpers {index}: nothing Flax in here."""
import json
import os


def load_config(path):
    with open(path) as handle:
        return json.load(handle)


def checkpoint_dir(root, step: int = {index}):
    path = os.path.join(root, f"step_{{step:06d}}")
    os.makedirs(path, exist_ok=True)
    return path
'''

TEMPLATES = (LINEN_MODULE, NNX_MODULE, TRAINING, UTILITY)


def generate(root: Path, count: int) -> None:
    for index in range(count):
        package = root / f"package_{index % 10}"
        package.mkdir(exist_ok=True)
        template = TEMPLATES[index % len(TEMPLATES)]
        text = template.format(index=index, width=32 + index % 7 * 16, rate=f"{1e-3 * (1 + index % 5):.4f}")
        (package / f"module_{index}.py").write_text(text)


def timed_check(root: Path, *extra: str) -> float:
    command = [sys.executable, "-m", "nnxlint", "check", "--exit-zero", "-q", *extra, "."]
    start = time.perf_counter()
    subprocess.run(command, cwd=root, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "pyproject.toml").write_text("[tool.nnxlint]\n")
        generate(root, arguments.files)
        cache = root / ".nnxlint_cache"
        runs: dict[str, list[float]] = {"--no-cache": [], "cold cache": [], "warm cache": []}
        for _ in range(arguments.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            runs["cold cache"].append(timed_check(root))
            runs["warm cache"].append(timed_check(root))
            runs["--no-cache"].append(timed_check(root, "--no-cache"))
    print(f"{arguments.files} files, {arguments.repeat} runs of each kind (whole processes, seconds)")
    for kind, times in runs.items():
        print(f"{kind:<11} median {statistics.median(times):.3f}  min {min(times):.3f}")
    for summary in (statistics.median, min):
        ratio = summary(runs["warm cache"]) / summary(runs["cold cache"])
        print(f"warm / cold ({summary.__name__}): {ratio:.2f}")


if __name__ == "__main__":
    main()
