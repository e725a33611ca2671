"""Shared by the conversion tests: NNX002's fix and messages for one models file, and the
Linen-vs-converted forward comparison from transplanted weights."""

from __future__ import annotations

import textwrap

import pytest

from nnxlint.engine import check_source
from nnxlint.registry import all_rules

NNX002 = all_rules()["NNX002"]


def convert(source: str):
    """(fixed text or None, {class: message})."""
    source = textwrap.dedent(source)
    fixed = check_source(source, "models.py", [NNX002], "unsafe").fixed_text
    findings = check_source(source, "models.py", [NNX002]).findings
    return fixed, {f.message.split("`")[1]: f.message for f in findings}


def max_relative_difference(linen_source, nnx_source, linen_args, nnx_args, x, modes):
    """Linen ``init`` variables loaded into the NNX model; the largest relative
    difference of the outputs over ``modes`` (Linen call keywords, NNX mode)."""
    jax = pytest.importorskip("jax")
    import numpy as np
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    linen, converted = {}, {}
    exec(textwrap.dedent(linen_source), linen)
    exec(nnx_source, converted)
    linen_model = linen_args(linen)
    variables = linen_model.init(jax.random.key(0), x, **modes[0][0])
    model = nnx_args(converted, nnx)
    load_linen_variables(model, variables)
    worst = 0.0
    for call, mode in modes:
        mutable = [c for c in variables if c != "params"]
        expected = linen_model.apply(variables, x, **call, mutable=mutable or False)
        expected = expected[0] if mutable else expected
        getattr(model, mode)()
        got = model(x)
        worst = max(worst, float(np.max(np.abs(np.asarray(expected) - np.asarray(got)))
                                 / np.max(np.abs(np.asarray(expected)))))
    return worst


def import_fresh(directory, monkeypatch, *modules: str):
    """The project's ``modules`` imported anew from ``directory`` (another copy of the same
    files may have been imported before: the Linen original, then the converted one)."""
    import importlib
    import sys

    for name in ("layers", "model", "train", *modules):
        sys.modules.pop(name, None)
    monkeypatch.syspath_prepend(str(directory))
    return tuple(importlib.import_module(name) for name in modules)


def write_project(directory, files: dict):
    """``directory``, made, with ``files`` (name -> text) written in it."""
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def compared_runs(script: str, before, after):
    """What ``script`` prints last as JSON (the Linen original's figures and the fixed
    project's), run in a fresh interpreter with the two directories as its arguments."""
    import json
    import os
    import subprocess
    import sys

    compared = subprocess.run([sys.executable, "-c", script, str(before), str(after)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert compared.returncode == 0, compared.stderr
    return json.loads(compared.stdout.strip().splitlines()[-1])


def bridged_training_script(trainer: str, construction: str) -> str:
    """For ``compared_runs``: trains the Linen original (``trainer.learn(steps, params=None)``
    returns the losses and the parameters), then the fixed project from the same weights:
    the NNX model built by ``construction`` (``models.Tower(3, 10, 12, rngs=nnx.Rngs(0))``)
    gets the Linen weights through ``nnxlint.transplant``, laid out as the bridge lays them
    out (checked against what the bridged ``init`` gives)."""
    return f"""\
import json, sys
import jax
from flax import nnx
from nnxlint.transplant import load_linen_variables

sys.path.insert(0, sys.argv[1])
import {trainer}
linen_losses = {trainer}.learn(4)[0]
_, params = {trainer}.learn(0)
for name in ("{trainer}", "models"):
    del sys.modules[name]
sys.path[0] = sys.argv[2]
import {trainer}, models
model = {construction}
load_linen_variables(model, {{"params": params}})
params = nnx.state(model, nnx.Param).to_pure_dict()
_, bridged = {trainer}.learn(0)
assert jax.tree.structure(bridged) == jax.tree.structure(params), (bridged, params)
print(json.dumps([linen_losses, {trainer}.learn(4, params)[0]]))
"""
