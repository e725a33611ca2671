"""nnxlint: flags Flax Linen usage and NNX anti-patterns, and fixes them to NNX idioms."""

__version__ = "0.1.0"
