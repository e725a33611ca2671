"""A Linen MLP with BatchNorm and Dropout, trained with optax and jax.jit."""

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(24)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x))
        return nn.Dense(3)(x)


def train(steps: int):
    model = MLP()
    x = jax.random.normal(jax.random.key(0), (64, 6))
    y = jnp.argmax(x[:, :3] - x[:, 3:], axis=1)
    variables = model.init(jax.random.key(1), x[:16], train=False)
    params, batch_stats = variables["params"], variables["batch_stats"]
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, batch_stats, opt_state, x, y, key):
        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                          rngs={"dropout": key}, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        changes, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), updates["batch_stats"], opt_state, loss

    losses = []
    for step in range(steps):
        batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
        params, batch_stats, opt_state, loss = train_step(
            params, batch_stats, opt_state, x[batch], y[batch], jax.random.fold_in(jax.random.key(2), step))
        losses.append(float(loss))
    outputs = model.apply({"params": params, "batch_stats": batch_stats}, x[:16] * 0.5, train=False)
    return losses, outputs
