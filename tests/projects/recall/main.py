import jax.numpy as jnp
from flax import nnx

from shop import train
from shop.train import create, report

model, optimizer = create()
metrics = nnx.metrics.Average()
x = jnp.ones((5, 4))
y = jnp.zeros((5,), jnp.int32)
for _ in range(2):
    train.train_step(model, optimizer, metrics, x, y)
report(model, optimizer, metrics)

state = nnx.state(model)
print(state["head"]["kernel"].value.shape)
state["block"]["calls"].value = jnp.array(7)
graphdef, params, rest = nnx.split(model, nnx.Param, ...)
clone = nnx.merge(graphdef, params, rest)
print(clone.block.calls.value, clone.head.bias.value.shape)
print(model.block.last.value)
