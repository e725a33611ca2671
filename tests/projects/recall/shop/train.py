import jax.numpy as jnp
import optax
from flax import nnx

import shop


def create(seed=0):
    model = shop.Classifier(4, 3, rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    return model, optimizer


def loss_fn(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer: nnx.optimizer.Optimizer, metrics, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    metrics.update(values=loss)
    return loss


def report(model, optimizer, metrics):
    print("step", optimizer.step.value, "calls", model.block.calls.value)
    print("loss", metrics.total.value / metrics.count.value)
    return jnp.asarray(model.block.ema.value)
