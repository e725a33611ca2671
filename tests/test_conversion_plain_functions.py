"""Linen's plain functions left outside the converted classes (a config's initializer, a
loss's activation) move to flax.nnx, which exports the same objects, so a converted file
no longer imports Linen for them; a class that stays Linen keeps its spelling."""

import ast

from conversion_helpers import convert

MODELS = '''
import dataclasses
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp


@dataclasses.dataclass
class Config:
    kernel_init: Callable = nn.initializers.normal(stddev=0.02)
    hidden: int = 8


class Mlp(nn.Module):
    config: Config

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.config.hidden, kernel_init=self.config.kernel_init)(x)
        return nn.Dense(1)(nn.relu(x))


def loss(logits, labels):
    return -jnp.mean(labels * nn.log_sigmoid(logits))
'''

STAYING = '''
class Odd(nn.Module):
    @nn.compact
    def __call__(self, x):
        key = self.scope.make_rng('noise')
        return nn.relu(x)
'''


def test_functions_outside_converted_classes_move_to_nnx():
    fixed, reasons = convert(MODELS)
    assert fixed is not None, reasons
    assert "kernel_init: Callable = nnx.initializers.normal(stddev=0.02)" in fixed
    assert "labels * nnx.log_sigmoid(logits)" in fixed
    imported = {alias.name for node in ast.walk(ast.parse(fixed)) if isinstance(node, ast.Import)
                for alias in node.names}
    assert "flax.linen" not in imported and "linen" not in fixed


def test_a_class_that_stays_linen_keeps_its_spelling():
    fixed, reasons = convert(MODELS + STAYING)
    assert fixed is not None, reasons
    assert "Odd" in reasons and "scope" in reasons["Odd"]
    assert "        return nn.relu(x)\n" in fixed  # Odd's code, untouched
    assert "labels * nnx.log_sigmoid(logits)" in fixed
    assert "import flax.linen as nn" in fixed
