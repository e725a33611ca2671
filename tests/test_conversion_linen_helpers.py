"""A class that calls a function building a Linen layer on each call (a ``batch_norm(x, train)``
helper, of its file or of another file of the run) gets no fix: NNX code calling it would
raise CallCompactUnboundModuleError.  A helper that builds nothing holds nothing back."""

import textwrap

from conversion_helpers import convert

HELPER = '''
import flax.linen as nn


def batch_norm(x, train):
    return nn.BatchNorm(use_running_average=not train)(x)


def double(x):
    return 2 * x
'''

SAME_FILE = HELPER + '''

class Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train=True):
        return batch_norm(nn.Dense(self.features)(x), train)


class Plain(nn.Module):
    @nn.compact
    def __call__(self, x):
        return double(nn.Dense(3)(x))
'''

USER = '''
import flax.linen as nn

from . import ops


class Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train=True):
        x = nn.Dense(self.features)(x)
        return ops.double(ops.batch_norm(x, train))
'''


def test_a_helper_of_the_file_that_builds_a_linen_layer_holds_its_caller_back():
    fixed, reasons = convert(SAME_FILE)
    assert "no fix: `batch_norm` (line 18), a function of this file, builds a Linen layer" in reasons["Block"]
    assert "CallCompactUnboundModuleError" in reasons["Block"]
    assert fixed is not None and "class Plain(nnx.Module):" in fixed and "return double(self.dense_0(x))" in fixed


def test_a_helper_of_another_file_of_the_run_holds_its_caller_back(run_cli, tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "ops.py").write_text(textwrap.dedent(HELPER))
    (package / "models.py").write_text(textwrap.dedent(USER))
    result = run_cli("check", "--no-cache", "--fix", "--unsafe-fixes", package, cwd=tmp_path)
    assert (package / "models.py").read_text() == textwrap.dedent(USER)
    assert "`ops.batch_norm` (line 13), a function of " in result.stdout
    assert "pkg/ops.py, builds a Linen layer each time it runs" in result.stdout
