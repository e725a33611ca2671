"""``nnxlint verify``: the fixture corpus is executed before and after fixing, and must train the same.

Only ``manifest`` and ``regenerate`` work without the ``verify`` extra; the
worker, which runs the programs, imports JAX, Flax and optax.
"""
