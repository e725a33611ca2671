"""How two training runs are compared: relative differences and a z-test over seeds."""

from __future__ import annotations

import math
import os
from typing import Sequence

# A difference is relative to the larger of the two values, but never to less than
# this fraction of the array's scale: outputs near zero do not blow up the ratio.
SCALE_FLOOR = 1e-3
# Runs with dropout active over several seeds agree when no step's mean loss differs
# by more than this many standard errors.
Z_LIMIT = 4.0
# Tolerances are stated for CPU float32; accelerators reduce in a different order
# (and not always deterministically), so their limit is this much looser.
ACCELERATOR_TOLERANCE_FACTOR = 10.0
# GPU reductions (convolution gradients, scatter-adds) are not reproducible by default:
# measured on an H100, one unchanged program's BatchNorm eval outputs differed by 0.15
# between two runs. Two runs are only comparable when each is reproducible.
DETERMINISTIC_XLA_FLAG = "--xla_gpu_deterministic_ops=true"


def worker_environment() -> dict[str, str]:
    """The environment of a process that trains a program to be compared: quiet and reproducible."""
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    flags = environment.get("XLA_FLAGS", "")
    if "xla_gpu_deterministic_ops" not in flags:  # the user's own choice stands
        environment["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_XLA_FLAG}".strip()
    return environment


def max_relative_difference(actual, expected) -> float:
    """max |a - b| / max(|a|, |b|, SCALE_FLOOR * max|b|); inf for other shapes or non-finite values."""
    import numpy as np  # the verify extra; `nnxlint verify` checks for it before comparing

    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    floor = max(SCALE_FLOOR * float(np.max(np.abs(b))), float(np.finfo(np.float32).tiny))
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
    return float(np.max(np.abs(a - b) / scale))


def max_z_score(runs: Sequence[Sequence[float]], other_runs: Sequence[Sequence[float]]) -> float:
    """Largest per-step |mean difference| in standard errors between two sets of loss curves.

    Each argument holds one loss curve per seed (seeds x steps).
    """
    import numpy as np

    a = np.asarray(runs, dtype=np.float64)
    b = np.asarray(other_runs, dtype=np.float64)
    if a.shape[1:] != b.shape[1:] or len(a) < 2 or len(b) < 2:
        return math.inf
    difference = np.abs(a.mean(axis=0) - b.mean(axis=0))
    standard_error = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    # steps where every run agrees exactly have no spread: equal means are z = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(difference == 0.0, 0.0, difference / standard_error)
    return float(np.max(z))


def tolerance_for(platform: str, cpu_tolerance: float) -> float:
    return cpu_tolerance if platform == "cpu" else cpu_tolerance * ACCELERATOR_TOLERANCE_FACTOR
