"""Run-time type checks on ``__call__`` (``@typechecked`` above ``@nn.compact``, as gemma
writes it; jaxtyping's ``@jaxtyped(typechecker=beartype)``) wrap any signature: the NNX
``__call__`` keeps them, and only ``@nn.compact`` goes."""

from __future__ import annotations

import pytest

from conversion_helpers import convert, import_fresh

CHECKED = '''\
import flax.linen as nn
from typeguard import typechecked


class Block(nn.Module):
    width: int

    # checked at each call
    @typechecked
    @nn.compact
    def __call__(self, x, scale: float = 1.0):
        return nn.relu(nn.Dense(self.width)(x)) * scale
'''


def test_a_type_check_stays_on_the_converted_call_and_compact_goes():
    fixed, messages = convert(CHECKED)
    assert fixed is not None, messages
    assert ("    # checked at each call\n    @typechecked\n"
            "    def __call__(self, x, scale: float = 1.0):\n") in fixed
    assert "from typeguard import typechecked\n" in fixed and "compact" not in fixed


def test_a_type_check_called_with_arguments_stays_too():
    source = CHECKED.replace("from typeguard import typechecked", "import jaxtyping\nfrom beartype import beartype") \
        .replace("    @typechecked\n    @nn.compact\n", "    @nn.compact\n    @jaxtyping.jaxtyped(typechecker=beartype)\n")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "    @jaxtyping.jaxtyped(typechecker=beartype)\n    def __call__(" in fixed


def test_a_type_check_bound_to_a_module_level_name_stays_too():
    source = CHECKED.replace("from typeguard import typechecked",
                             "from kauldron import typing\n\ntypechecked = typing.typechecked")
    fixed, messages = convert(source)
    assert fixed is not None, messages
    assert "typechecked = typing.typechecked\n" in fixed and "    @typechecked\n    def __call__(" in fixed


def test_another_decorator_on_call_still_gets_no_fix():
    source = CHECKED.replace("from typeguard import typechecked", "from mylib import traced").replace(
        "@typechecked", "@traced")
    fixed, messages = convert(source)
    assert fixed is None and "decorated method `__call__` is not converted" in messages["Block"]


def test_the_checked_nnx_block_computes_what_linen_computes_and_checks_its_arguments(tmp_path, monkeypatch):
    pytest.importorskip("typeguard")  # it reads the method's source: the modules are files here
    jax = pytest.importorskip("jax")
    from flax import nnx

    from nnxlint.transplant import load_linen_variables

    # (typeguard rebuilds the function it checks, losing Linen's mark: ``@nn.compact`` goes above it)
    source = CHECKED.replace("    @typechecked\n    @nn.compact\n", "    @nn.compact\n    @typechecked\n")
    fixed, messages = convert(source)
    assert "    @typechecked\n    def __call__" in fixed
    (tmp_path / "linen_block.py").write_text(source)
    (tmp_path / "nnx_block.py").write_text(fixed)
    linen_block, nnx_block = import_fresh(tmp_path, monkeypatch, "linen_block", "nnx_block")
    x = jax.numpy.linspace(-1.0, 1.0, 12).reshape(3, 4)
    variables = linen_block.Block(5).init(jax.random.key(0), x)
    block = nnx_block.Block(4, 5, rngs=nnx.Rngs(0))
    load_linen_variables(block, variables)
    assert jax.numpy.allclose(block(x, 2.0), linen_block.Block(5).apply(variables, x, 2.0))
    with pytest.raises(Exception, match="scale"):  # the check still runs on the NNX call
        block(x, "2")
