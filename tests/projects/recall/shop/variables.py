import jax
from flax import nnx


class Count(nnx.Variable):
    """How many batches a layer has seen."""


class Ema(nnx.Variable[jax.Array]):
    """A running average."""


class Seen(Count):
    pass
