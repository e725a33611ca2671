"""``self.make_rng('dropout')`` -> ``self.dropout_rngs()``, the module keeping the stream
it was built with: ``self.dropout_rngs = rngs.dropout.fork()`` in ``__init__`` (as
``nnx.Dropout`` keeps ``rngs.dropout.fork()``).

Each call draws a new key, as each Linen call does, but not the same one: Linen
folds the module's path and a per-call counter into the key given to ``apply``
(``rngs={'dropout': key}``), NNX advances the stream's own counter.  The draws
have the same distribution; a comparison of the values needs the same keys on
both sides (``benchmarks/convert_repo.py`` draws dropout masks from one sequence).
An ``nnx.Rngs`` without that stream falls back on its ``default`` one
(``nnx.Rngs(0)``); one with named streams only must name it.  The training code's
``init({'params': k0, 'noise': k1}, x)`` builds ``nnx.Rngs(params=0, noise=1)``, and
the keys it gives ``apply(..., rngs={'noise': key})`` go (``training.py``): a key
split per step becomes the stream's counter, carried in the model through
``nnx.jit``.
"""

from __future__ import annotations

import libcst as cst

from nnxlint.conversion.base import IDENTIFIER, Unconvertible
from nnxlint.conversion.constructs import SelfCall, self_call
from nnxlint.conversion.shapes import string_literal


@self_call("make_rng")
class MakeRng(SelfCall):
    def in_setup(self, converter, attribute: str, call: cst.Call) -> None:
        raise Unconvertible("`self.make_rng` in `setup` (one key drawn when the module is built) is not converted")

    def in_call(self, rewriter, call: cst.Call) -> cst.BaseExpression:
        stream = string_literal(call.args[0].value) if len(call.args) == 1 and call.args[0].keyword is None \
            else None
        if stream is None or not IDENTIFIER.fullmatch(stream):
            raise Unconvertible("`self.make_rng` needs one literal stream name that is an identifier")
        converter = rewriter.converter
        attribute = f"{stream}_rngs"
        if attribute in converter.field_names or attribute in converter.slots or attribute in converter.params \
                or attribute in converter.variables:
            raise Unconvertible(f"`self.make_rng({stream!r})` needs the attribute `{attribute}`, which is taken")
        converter.rng_streams[attribute] = f"self.{attribute} = rngs.{stream}.fork()"
        converter.uses_rngs = True
        return cst.parse_expression(f"self.{attribute}()")
