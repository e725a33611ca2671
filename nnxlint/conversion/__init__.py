"""The Linen -> NNX conversion: the unsafe fix behind NNX002.

Where things are (read top-down):

* ``file.py``       -- one file: its Linen classes, the training code around
  ``model.init``, the imports; entry point ``convert_file``.
* ``classes.py``    -- ``ClassConverter``: one Linen class -> one NNX class
  (fields and ``setup`` -> ``__init__``, submodules -> attributes, the
  train/eval flag -> ``model.train()``/``model.eval()``), with its mixins:
  ``fields_and_setup.py`` (reading the class body), ``submodule_slots.py``
  (naming and building submodules, a child class's constructor arguments),
  ``init_writer.py`` (the ``__init__`` it writes), ``layers.py``.
* ``calls.py``      -- ``CallRewriter``: rewrites ``__call__`` (and the methods
  it calls) statement by statement, with its mixins ``control_flow.py`` (loops
  and branches) and ``submodule_calls.py`` (a submodule's call and its
  arguments); ``call_shapes.py`` follows array shapes so each layer learns its
  input size (``shapes.py``: the size arithmetic).
* ``layers.py``     -- Flax layers of the table ``linen_map.py`` (one row per
  layer: NNX name, renamed arguments, input-size argument, defaults).
* ``constructs/``   -- construct units, one file per Linen construct that is not
  a plain layer: ``nn.Sequential``, ``nn.RNN``, ``self.param``,
  ``self.variable``.  **A new construct goes here**: see
  ``constructs/__init__.py`` for the two kinds (``Factory`` for module-building
  constructors like ``nn.scan``/``nn.remat``; ``SelfCall`` for
  ``self.make_rng``/``self.sow``) and how to register one.
* ``training.py``   -- init/apply, ``TrainState``/optax state and jitted steps ->
  ``nnx.Optimizer`` and ``nnx.jit``.
* ``naming.py``     -- Linen auto-names -> NNX attribute names (shared with
  ``nnxlint.transplant``).
* ``base.py``       -- ``Unconvertible`` (the reason there is no fix),
  ``ConvertedClass``, ``FileEnv``, syntax helpers.

Anything that cannot be converted exactly raises ``Unconvertible`` with a reason
that names the class and construct; a partial conversion is never emitted.
The package is imported only when a file has Linen modules (the check path
stays light).
"""
