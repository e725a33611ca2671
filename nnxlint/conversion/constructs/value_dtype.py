"""The dtype of a value of ``__call__`` in a parameter's or layer's arguments.

A Linen class may create a parameter in the dtype of an array it computed, as
text and vision transformers do for their position embedding::

    x = nn.Embed(num_embeddings=vocab, features=width)(tokens)
    n, l, d = x.shape
    x = x + self.param('pos_embedding', init, (1, l, d), x.dtype)

NNX creates the parameter in ``__init__``, before any array exists, so
``x.dtype`` is written as the dtype the value is known to have whatever the
input: what a Flax layer given ``dtype=`` returns (``nn.Dense(..., dtype=t)``
returns ``t``), what ``nn.Embed`` returns without it (its ``param_dtype``,
float32 by default: Linen's ``promote_dtype`` of the table alone),
``x.astype(t)`` and ``jnp.asarray(x, t)``; reshapes and slices keep it, and
so does arithmetic between two values of the same known dtype.  Any other
value's dtype follows its input's, which ``__init__`` does not have: such a
``x.dtype`` keeps the refusal "a layer argument depends on `x`".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible, arg_keyword
from nnxlint.conversion.shapes import Bindings

if TYPE_CHECKING:
    from nnxlint.conversion.base import Slot
    from nnxlint.conversion.calls import CallRewriter

_KEEP_DTYPE_METHODS = ("reshape", "squeeze", "transpose", "swapaxes", "flatten", "ravel")
# functions returning their first argument's elements rearranged
_KEEP_DTYPE_FUNCTIONS = tuple(f"jax.numpy.{name}" for name in (
    "reshape", "squeeze", "transpose", "swapaxes", "moveaxis", "expand_dims", "tile", "ravel"))
_CASTS = ("jax.numpy.asarray", "jax.numpy.array")


def layer_output_dtype(rewriter: "CallRewriter", slot: "Slot") -> Optional[str]:
    """The dtype of what the Flax layer built by ``slot`` returns, where it does not
    depend on the input."""
    layer = rewriter.converter.layer(slot.construction.func)
    if layer is None or layer.mapping is None:
        return None
    keywords = {arg_keyword(arg): arg.value for arg in slot.construction.args if arg_keyword(arg)}
    dtype = keywords.get("dtype")
    if dtype is not None and not (isinstance(dtype, cst.Name) and dtype.value == "None"):
        return _init_code(rewriter, dtype)
    if layer.mapping.linen != "Embed":
        return None
    if "param_dtype" in keywords:
        return _init_code(rewriter, keywords["param_dtype"])
    return _float32(rewriter)


def bind_dtypes(rewriter: "CallRewriter", assignment: cst.Assign) -> None:
    """After ``x = ...``: the dtype ``x`` is known to have, or none."""
    dtype = value_dtype(rewriter, assignment.value)
    for target in assignment.targets:
        forget(rewriter.shapes, target.target)
        if isinstance(target.target, cst.Name) and dtype is not None:
            rewriter.shapes.dtypes[target.target.value] = dtype


def forget(shapes: Bindings, target: cst.BaseExpression) -> None:
    """``target`` is bound again (``x += y``, ``a, x = ...``): its dtype is not known."""
    if isinstance(target, cst.Name):
        shapes.dtypes.pop(target.value, None)
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            forget(shapes, element.value)


def value_dtype(rewriter: "CallRewriter", node: cst.BaseExpression) -> Optional[str]:
    dtypes = rewriter.shapes.dtypes
    if isinstance(node, cst.Name):
        return dtypes.get(node.value)
    if isinstance(node, cst.Subscript):
        return value_dtype(rewriter, node.value)
    if isinstance(node, cst.BinaryOperation):
        left, right = value_dtype(rewriter, node.left), value_dtype(rewriter, node.right)
        return left if left is not None and left == right else None
    if not isinstance(node, cst.Call):
        return None
    if id(node) in rewriter.call_dtypes:
        return rewriter.call_dtypes[id(node)]
    func = node.func
    positional = [arg.value for arg in node.args if arg.keyword is None and not arg.star]
    keywords = {arg_keyword(arg): arg.value for arg in node.args if arg_keyword(arg)}
    if isinstance(func, cst.Attribute) and rewriter.converter.env.resolve(func) is None:  # a method
        if func.attr.value == "astype" and len(positional) == 1 and not keywords:
            return _init_code(rewriter, positional[0])
        if func.attr.value in _KEEP_DTYPE_METHODS:
            return value_dtype(rewriter, func.value)
    qualified = rewriter.converter.env.resolve(func)
    if qualified in _KEEP_DTYPE_FUNCTIONS and positional:
        return value_dtype(rewriter, positional[0])
    if qualified in _CASTS:
        written = positional[1] if len(positional) > 1 else keywords.get("dtype")
        return _init_code(rewriter, written) if written is not None else None
    return None


def dtype_read(dtypes: dict[str, str], node: cst.Attribute) -> Optional[str]:
    """The known dtype for ``x.dtype``."""
    if node.attr.value == "dtype" and isinstance(node.value, cst.Name):
        return dtypes.get(node.value.value)
    return None


def _init_code(rewriter: "CallRewriter", node: cst.BaseExpression) -> Optional[str]:
    try:
        return rewriter.converter.init_code(node, rewriter.shapes)
    except Unconvertible:  # the dtype is a value of ``__call__``: not known in ``__init__``
        return None


def _float32(rewriter: "CallRewriter") -> Optional[str]:
    """``jnp.float32`` as the file spells jax.numpy, else NumPy's (``np.float32``, the same
    dtype to JAX); None if it imports none of jax.numpy, jax and numpy."""
    spellings = {binding.qualified_name: name for name, bindings in rewriter.converter.env.scope.bindings.items()
                 for binding in bindings if binding.qualified_name in ("jax.numpy", "jax", "numpy")}
    if "jax.numpy" in spellings:
        return f"{spellings['jax.numpy']}.float32"
    if "jax" in spellings:
        return f"{spellings['jax']}.numpy.float32"
    if "numpy" in spellings:
        return f"{spellings['numpy']}.float32"
    return None
