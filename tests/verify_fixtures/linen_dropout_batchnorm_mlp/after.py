"""The same MLP in NNX, as the conversion names it: auto-named Linen submodules become attributes."""

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.dense_0 = nnx.Linear(6, 24, rngs=rngs)
        self.batch_norm_0 = nnx.BatchNorm(24, momentum=0.9, rngs=rngs)
        self.dropout_0 = nnx.Dropout(0.2, rngs=rngs)
        self.dense_1 = nnx.Linear(24, 3, rngs=rngs)

    def __call__(self, x):
        x = self.batch_norm_0(self.dense_0(x))
        return self.dense_1(self.dropout_0(nnx.relu(x)))


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def train(steps: int):
    x = jax.random.normal(jax.random.key(0), (64, 6))
    y = jnp.argmax(x[:, :3] - x[:, 3:], axis=1)
    model = MLP(rngs=nnx.Rngs(params=1, dropout=2))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    model.train()
    losses = []
    for step in range(steps):
        batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
        losses.append(float(train_step(model, optimizer, x[batch], y[batch])))
    model.eval()
    return losses, model(x[:16] * 0.5)
