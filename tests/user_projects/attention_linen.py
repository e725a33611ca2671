"""An encoder whose attention weights have dropout, next to a Dropout layer."""

import jax
import jax.numpy as jnp
import flax.linen as nn


class Encoder(nn.Module):
    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(self.width)(x)
        x = nn.MultiHeadDotProductAttention(num_heads=2, dropout_rate=0.3, deterministic=not train)(x, x)
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return nn.Dense(2)(x)


def build():
    model = Encoder(width=16)
    variables = model.init(jax.random.key(0), jnp.ones((1, 5, 8)))
    return model, variables
