"""``nn.GRUCell``: an ``nnx.GRUCell`` subclass with Linen's candidate bias.

Linen's GRU computes its candidate as ``tanh(W_in x + b_in + r * (W_hn h + b_hn))``:
its recurrent ``hn`` Dense alone has a bias, inside the reset gate.  ``nnx.GRUCell``
(flax 0.12.8) fuses the gate layers into ``dense_i`` (``ir|iz|in``, with a bias) and
``dense_h`` (``hr|hz|hn``, without one), so it has nowhere to keep ``b_hn``
(``linen_map.UNFUSABLE_GATE_PARAMETERS``): the two agree while ``b_hn`` is zero, as
at init, and part once training moves it.  A converted file that builds a GRU gets,
once, before its first converted class, a small subclass that adds that bias as its
own ``nnx.Param`` (``linen_map.KEPT_GATE_PARAMETERS``: ``hn_bias``) and computes
Linen's formula; every ``nn.GRUCell`` (in ``nn.RNN``, stepped by hand, in ``setup``,
under a scanned ``__call__``, in a block under ``nn.remat`` or ``nn.scan``) becomes it::

    class LinenGRUCell(nnx.GRUCell):
        ...

    self.gru_cell_0 = LinenGRUCell(3, 16, rngs=rngs)

It takes ``nnx.GRUCell``'s arguments, so ``nnx.RNN`` steps it and
``initialize_carry`` is NNX's own.  ``nnxlint.transplant`` concatenates Linen's gate
kernels into ``dense_i``/``dense_h`` as for any fused cell and loads ``hn/bias``
into ``hn_bias``.  The class is named ``LinenGRUCell`` unless the file binds that
name (then ``LinenGRUCell2``, ...); the fix description says it was added.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.linen_map import KEPT_GATE_PARAMETERS

if TYPE_CHECKING:
    from nnxlint.conversion.base import FileEnv

GRU = "GRUCell"
_BIAS = KEPT_GATE_PARAMETERS[GRU][("hn", "bias")]

# The subclass's body ({nnx}: how the file spells flax.nnx; {bias}: the bias attribute).  Each
# gate is computed from its slice of the fused kernels, in Linen's order and as Linen's Dense
# computes it (promotion, dot_general, bias added after): a fused product would give the same
# forward values but sum the gradients in another order, and training would drift by rounding.
_BODY = '''\
class {name}({nnx}.GRUCell):
    """`{nnx}.GRUCell` computing Linen's `nn.GRUCell`, with its bias on the recurrent `hn` term
    inside the reset gate (`tanh(W_in x + b_in + r * (W_hn h + b_hn))`), which `{nnx}.GRUCell`
    lacks.  Added by nnxlint's conversion; takes `{nnx}.GRUCell`'s arguments."""

    def __init__(self, in_features, hidden_features, *, rngs, **kwargs):
        super().__init__(in_features, hidden_features, rngs=rngs, **kwargs)
        bias_init = kwargs.get("bias_init", {nnx}.initializers.zeros_init())
        self.{bias} = {nnx}.Param(bias_init(rngs.params(), (hidden_features,), self.param_dtype))

    def _gate(self, layer, inputs, index, bias=None):
        """Gate `index` (r, z, n) of the fused `layer`, as Linen's separate Dense computes it."""
        size = self.hidden_features
        kernel = layer.kernel[...][:, index * size:(index + 1) * size]
        if layer.bias is not None:
            bias = layer.bias[...][index * size:(index + 1) * size]
        inputs, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        y = layer.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())), precision=layer.precision)
        return y if bias is None else y + bias

    def __call__(self, carry, inputs):
        r = self.gate_fn(self._gate(self.dense_i, inputs, 0) + self._gate(self.dense_h, carry, 0))
        z = self.gate_fn(self._gate(self.dense_i, inputs, 1) + self._gate(self.dense_h, carry, 1))
        n = self.activation_fn(self._gate(self.dense_i, inputs, 2)
                               + r * self._gate(self.dense_h, carry, 2, self.{bias}[...]))
        new_h = (1.0 - z) * n + z * carry
        return new_h, new_h
'''


def gru_class_name(env: "FileEnv") -> str:
    """The name of the generated subclass: ``LinenGRUCell``, or the first free ``LinenGRUCell<n>``."""
    candidates = itertools.chain(["LinenGRUCell"], (f"LinenGRUCell{n}" for n in itertools.count(2)))
    return next(name for name in candidates if name not in env.scope.bindings)


def builds_gru(env: "FileEnv", converted: list[cst.ClassDef], module: cst.Module) -> bool:
    """A converted class builds the subclass."""
    uses = re.compile(rf"\b{gru_class_name(env)}\b")
    return any(uses.search(module.code_for_node(node)) for node in converted)


def gru_class(env: "FileEnv", converted: list[cst.ClassDef], module: cst.Module) -> list[cst.BaseStatement]:
    """The subclass's definition when a converted class builds it (none otherwise)."""
    if not builds_gru(env, converted, module):
        return []
    text = _BODY.format(name=gru_class_name(env), nnx=env.nnx, bias=_BIAS)
    if module.default_indent != "    ":
        text = text.replace("    ", module.default_indent)
    text = text.replace("\n", module.default_newline)
    statement = cst.parse_statement(text, config=module.config_for_parsing)
    return [statement.with_changes(leading_lines=[cst.EmptyLine(indent=False)] * 2)]


def gru_note(added: bool, env: "FileEnv") -> list[str]:
    """The fix description's sentence on the added subclass."""
    if not added:
        return []
    return [(f"`nn.{GRU}` becomes `{gru_class_name(env)}`, a subclass of `{env.nnx}.{GRU}` added to the file that "
             f"keeps Linen's bias on the candidate's recurrent term (`hn/bias`, which `{env.nnx}.{GRU}` lacks)")]


def nnx_layer(env: "FileEnv", linen: str, nnx: str) -> str:
    """How converted code builds the NNX layer of ``nn.<linen>``: ``nnx.Dense``..., the subclass for a GRU."""
    return gru_class_name(env) if linen == GRU else f"{env.nnx}.{nnx}"
