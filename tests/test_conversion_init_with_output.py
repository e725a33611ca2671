"""A model's output from ``init_with_output`` in a file that imports its class (flax's sst2 and
ogbg ``models_test.py``: ``y, _ = model.init_with_output(rng, x)``): the NNX model is built where
it is first used, its input sizes read off the example input, and called
(training_constructs/init_with_output.py)."""

from __future__ import annotations

import textwrap

from conversion_helpers import import_fresh

MODELS = '''\
import jax.numpy as jnp
import flax.linen as nn


class Tower(nn.Module):
    widths: tuple

    @nn.compact
    def __call__(self, x, scale=1.0):
        for width in self.widths:
            x = nn.relu(nn.Dense(width)(x))
        return x * scale

    def blank_input(self, rows):
        return jnp.zeros((rows, 3))
'''

TEST = '''\
import jax
import jax.numpy as jnp

import models


def test_tower_shape():
    # the model under test
    tower = models.Tower(
        widths=(4, 2),
    )
    rng = jax.random.key(0)
    x = jnp.ones((5, 3))
    out, _ = tower.init_with_output(rng, x, scale=2.0)
    assert out.shape == (5, 2)
    return out


def test_blank_input():
    tower = models.Tower((6,))
    x = tower.blank_input(2)
    (out), unused = tower.init_with_output(jax.random.key(1), x)
    return out
'''


def _fix(run_cli, tmp_path, test=TEST):
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "models_test.py").write_text(textwrap.dedent(test))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", tmp_path)
    return (tmp_path / "models_test.py").read_text(), result


def test_a_file_with_a_site_that_cannot_be_followed_is_not_updated(run_cli, tmp_path):
    """``x = tower.blank_input(2)`` uses the model before ``x`` exists: its input size is unknown
    where it must be built; the whole file stays as it is, the reason names the line."""
    after, result = _fix(run_cli, tmp_path)
    assert after == TEST
    assert ("models_test.py:22: the input size `in_features` of `Tower` cannot be read off the example "
            "input") in result.stderr


def test_the_model_is_built_where_it_is_first_used_and_the_test_runs(run_cli, tmp_path, monkeypatch):
    test = TEST.split("\n\ndef test_blank_input")[0] + '''

def test_blank_input():
    x = jnp.ones((2, 3))
    rng = jax.random.key(1)
    tower = models.Tower((6,))
    zeros = tower.blank_input(2)
    (out), unused = tower.init_with_output(rng, x)
    return out, zeros
'''
    after, result = _fix(run_cli, tmp_path, test)
    assert (
        "    rng = jax.random.key(0)\n"
        "    x = jnp.ones((5, 3))\n"
        "    # the model under test\n"
        "    tower = models.Tower(\n"
        "        x.shape[-1],\n"
        "        widths=(4, 2),\n"
        "        rngs=nnx.Rngs(rng),\n"
        "    )\n"
        "    out = tower(x, scale=2.0)\n") in after, result.stderr
    # a method of the NNX class used first: the model is built before it
    assert ("    rng = jax.random.key(1)\n"
            "    tower = models.Tower(x.shape[-1], (6,), rngs=nnx.Rngs(rng))\n"
            "    zeros = tower.blank_input(2)\n"
            "    (out) = tower(x)\n") in after
    assert ".init_with_output(" not in after and "from flax import nnx" in after
    import_fresh(tmp_path, monkeypatch, "models")  # this test's models, not another's left imported
    namespace: dict = {}
    exec(compile(after, "models_test.py", "exec"), namespace)
    assert namespace["test_tower_shape"]().shape == (5, 2)
    assert namespace["test_blank_input"]()[0].shape == (2, 6)
    checked = run_cli("check", "--no-cache", "--select", "NNX1", tmp_path)
    assert checked.returncode == 0, checked.stdout


def test_an_example_input_written_as_an_expression_gives_no_size(run_cli, tmp_path, monkeypatch):
    test = '''\
        import jax

        import models


        def test_blank_input():
            rng = jax.random.key(1)
            tower = models.Tower((6,))
            rows = 2
            out, _ = tower.init_with_output(rng, jax.numpy.ones((rows, 3)))
            return out
        '''
    after, result = _fix(run_cli, tmp_path, test)
    # the example input is an expression evaluated once: its size is unknown where the model is built, so
    # the test keeps its Linen ``init_with_output`` on the NNX class built through the bridge, sized by its input
    assert "tower = to_linen_sized(models.Tower, lambda x, *_, **__: (x.shape[-1],), (6,))" in after
    assert "out, _ = tower.init_with_output({'params': rng, 'default': rng}, jax.numpy.ones((rows, 3)))" in after
    assert "models_test.py stays Linen" in result.stderr
    import_fresh(tmp_path, monkeypatch, "models")  # this test's models, not another's left imported
    namespace: dict = {}
    exec(compile(after, "models_test.py", "exec"), namespace)
    assert namespace["test_blank_input"]().shape == (2, 6)


def test_read_variables_and_method_keyword_are_named(run_cli, tmp_path, monkeypatch):
    test = '''\
        import jax
        import jax.numpy as jnp

        import models


        def test_params():
            tower = models.Tower((4,))
            out, variables = tower.init_with_output(jax.random.key(0), jnp.ones((1, 3)))
            return variables['params']
        '''
    # the variables are read: the test keeps Linen's ``init_with_output`` on a bridged model
    after, result = _fix(run_cli, tmp_path, test)
    assert "tower = to_linen_sized(models.Tower, lambda x, *_, **__: (x.shape[-1],), (4,))" in after
    import_fresh(tmp_path, monkeypatch, "models")  # this test's models, not another's left imported
    namespace: dict = {}
    exec(compile(after, "models_test.py", "exec"), namespace)
    assert namespace["test_params"]()["denses"][0]["kernel"].shape == (3, 4)
    # ``method=`` by name: neither way; both reasons are named
    test = test.replace("out, variables = tower.init_with_output(jax.random.key(0), jnp.ones((1, 3)))",
                        "out, _ = tower.init_with_output(jax.random.key(0), jnp.ones((1, 3)), method='blank_input')")
    after, result = _fix(run_cli, tmp_path, test)
    assert after == textwrap.dedent(test)
    assert "`tower.init_with_output(..., method=...)` is not converted" in result.stderr
    assert "is run through another method (`method=`): the construction is not bridged" in result.stderr
