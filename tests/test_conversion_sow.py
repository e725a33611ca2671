"""``self.sow('intermediates', ...)`` (constructs/sow.py): left out, with a comment showing
the NNX form, where nothing in the run reads the collection; refused, naming the reading
site, where something may."""

from __future__ import annotations

import json
import textwrap

import pytest

from conversion_helpers import NNX002, convert
from nnxlint.engine import check_source

SCORER = '''\
import jax.numpy as jnp
import flax.linen as nn


class Scorer(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, keys, mask):
        energy = nn.tanh(nn.Dense(self.hidden, use_bias=False)(keys))
        scores = nn.Dense(1, use_bias=False)(energy).squeeze(-1)
        scores = nn.softmax(jnp.where(mask, scores, -jnp.inf), axis=-1)
        # the attention weights, for plots
        self.sow('intermediates', 'attention', scores)
        if keys.shape[0] > 100:
            self.sow('intermediates', 'big', scores)
        return scores
'''


def _fix_description(source: str):
    found = check_source(textwrap.dedent(source), "models.py", [NNX002]).findings
    return [finding.fix.description for finding in found if finding.fix is not None]


def test_a_sow_nothing_reads_is_left_out_with_the_nnx_form_in_a_comment():
    fixed, messages = convert(SCORER)
    assert messages["Scorer"].endswith("migrate to `nnx.Module`")  # a fix: no reason
    assert "self.sow(" not in fixed.replace("# NNX, read under nnx.capture: self.sow(", "")
    # the call's own comment stays; the line becomes a comment; a block left empty keeps a ``pass``
    assert ("        # the attention weights, for plots\n"
            "        # NNX, read under nnx.capture: self.sow(nnx.Intermediate, 'attention', scores)\n"
            "        if keys.shape[0] > 100:\n"
            "            # NNX, read under nnx.capture: self.sow(nnx.Intermediate, 'big', scores)\n"
            "            pass\n"
            "        return scores\n") in fixed
    compile(fixed, "models.py", "exec")
    [description] = _fix_description(SCORER)
    assert "left out: `Scorer`'s `self.sow('intermediates', 'attention', scores)`, `Scorer`'s " in description
    assert "Linen stores nothing unless `apply` makes 'intermediates' mutable" in description
    assert "`nnx.capture(model, nnx.Intermediate)`" in description


def test_the_converted_scorer_gives_linen_outputs_from_its_weights():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    fixed, _ = convert(SCORER)
    linen_namespace: dict = {}
    exec(SCORER, linen_namespace)
    nnx_namespace: dict = {}
    exec(fixed, nnx_namespace)
    keys = jax.random.normal(jax.random.key(1), (2, 5, 4))
    mask = jnp.array([[True] * 5, [True, True, False, False, False]])
    linen_model = linen_namespace["Scorer"](hidden=3)
    variables = linen_model.init(jax.random.key(0), keys, mask)
    assert "intermediates" not in variables  # Linen's ``init`` leaves the collection out
    model = nnx_namespace["Scorer"](4, hidden=3, rngs=nnx.Rngs(0))
    load_linen_variables(model, variables)
    expected = linen_model.apply(variables, keys, mask)
    assert jnp.array_equal(model(keys, mask), expected)
    assert not any(isinstance(value, nnx.Intermediate) for _, value in nnx.graph.iter_graph(model))


@pytest.mark.parametrize("reader, site", [
    ("model.apply(variables, keys, mask, mutable=['intermediates'])", "mutable=['intermediates']"),
    ("model.apply(variables, keys, mask, mutable=True)", "mutable=True"),
    ("model.apply(variables, keys, mask, mutable=which)", "mutable=which"),
    ("model.apply(variables, keys, mask, capture_intermediates=True)", "capture_intermediates="),
    ("state['intermediates']", "'intermediates'"),
])
def test_a_file_that_may_read_the_collection_keeps_the_class_linen_and_is_named(reader, site):
    source = SCORER + f"\n\ndef read(model, variables, keys, mask, state, which):\n    return {reader}\n"
    fixed, messages = convert(source)
    assert fixed is None
    line = source.count("\n", 0, source.index(reader)) + 1
    assert f"this file:{line} (`{site}" in messages["Scorer"]
    assert "in a way the conversion does not turn into `nnx.capture`" in messages["Scorer"]


def test_other_mutable_collections_do_not_read_it():
    source = SCORER + "\n\ndef read(model, variables, x):\n    return model.apply(variables, x, mutable=['batch_stats'])\n"
    assert convert(source)[0] is not None


@pytest.mark.parametrize("statement, reason", [
    ("stored = self.sow('intermediates', 'attention', scores)", "used as a value"),
    ("self.sow('stats', 'attention', scores)", "Linen's `init` keeps any other collection"),
    ("self.sow('intermediates', 'attention', scores, reduce_fn=lambda a, b: b)", "`reduce_fn`/`init_fn`"),
    ("self.sow('intermediates', 'attention', jnp.sum(scores))", "a value that calls something"),
    ("self.sow('intermediates', f'attention_{self.hidden}', scores)", "a name that is not a literal"),
])
def test_sows_that_are_not_left_out_exactly_are_refused(statement, reason):
    source = SCORER.replace("self.sow('intermediates', 'attention', scores)", statement)
    fixed, messages = convert(source)
    assert fixed is None and reason in messages["Scorer"]


MODELS = '''\
import flax.linen as nn


class Tagger(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4)(x)
        self.sow('intermediates', 'hidden', h)
        return nn.Dense(2)(h)
'''

PROBE = '''\
import jax
import jax.numpy as jnp

from models import Tagger


def probe(variables):
    _, state = Tagger().apply(variables, jnp.ones((1, 3)), mutable=['intermediates'])
    return state
'''


def _check_json(run_cli, directory):
    result = run_cli("check", "--unsafe-fixes", "--select", "NNX002", "--output-format", "json", directory,
                     cwd=directory)
    return {finding["message"].split("`")[1]: finding for finding in json.loads(result.stdout)
            if finding["code"] == "NNX002"}


def test_a_reader_in_another_file_of_the_run_keeps_the_class_linen(run_cli, tmp_path):
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "probe.py").write_text(PROBE)
    message = _check_json(run_cli, tmp_path)["Tagger"]["message"]
    assert "probe.py:8 (`mutable=['intermediates']`) may read the 'intermediates' collection" in message
    # an edit inside a function body of another file: the cached finding of models.py is not reused
    (tmp_path / "probe.py").write_text(PROBE.replace("mutable=['intermediates']", "mutable=False"))
    assert "no fix" not in _check_json(run_cli, tmp_path)["Tagger"]["message"]
    (tmp_path / "probe.py").write_text(PROBE)
    assert "no fix" in _check_json(run_cli, tmp_path)["Tagger"]["message"]
