from flax import nnx

from shop.layers import Block


class Classifier(nnx.Module):
    def __init__(self, din, classes, *, rngs):
        self.block = Block(din, 8, rngs=rngs)
        self.head = nnx.Linear(8, classes, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.block(x)))
