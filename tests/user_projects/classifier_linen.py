"""A classifier of two blocks, trained with optax."""

import jax
import jax.numpy as jnp
import optax
import flax.linen as nn


class Block(nn.Module):
    features: int
    rate: float = 0.1

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(self.features)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        return nn.Dropout(self.rate, deterministic=not train)(x)


class Classifier(nn.Module):
    hidden: int = 16
    classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Block(self.hidden)(x, train)
        x = Block(self.hidden, rate=0.2)(x, train)
        return nn.Dense(self.classes)(x)


def train(steps):
    model = Classifier(hidden=16, classes=3)
    variables = model.init(jax.random.key(0), jnp.ones((1, 8)))
    params, batch_stats = variables["params"], variables["batch_stats"]
    tx = optax.sgd(0.1)
    opt_state = tx.init(params)
    x = jax.random.normal(jax.random.key(1), (32, 8))
    y = (x[:, 0] > 0).astype(jnp.int32)

    @jax.jit
    def step(params, batch_stats, opt_state, key):
        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                          rngs={"dropout": key}, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        changes, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, changes), updates["batch_stats"], opt_state, loss

    key = jax.random.key(2)
    for i in range(steps):
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, jax.random.fold_in(key, i))
    return model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
