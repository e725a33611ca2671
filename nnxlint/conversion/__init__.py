"""The Linen -> NNX conversion: the unsafe fix behind NNX002."""
