"""``out, updates = model.apply(variables, x, mutable=['intermediates'])`` ->
``out, updates = nnx.capture(model, nnx.Intermediate)(x)``: the sown values come back in
the State ``nnx.capture`` returns instead of being kept on the module.

Linen's ``updates`` is ``{'intermediates': {'encoder': {'h': (value,)}}}``; NNX's State
is ``{'encoder': {'h': Intermediate((value,))}}`` (an ``Intermediate`` indexes into its
tuple), so ``updates['intermediates']`` becomes ``updates`` and the keys after it stay:
the converted model's attributes carry the names Linen's submodules had (``setup``
attributes, ``name=``), except Linen's automatic ones (``Dense_0``): a file that
captures and reads such a key anywhere (through an alias too) is refused.
Any other use of ``updates`` (returned, passed on, iterated) is refused with its line.
Once a file captures, its other calls of the model become ``nnx.capture(model)(x)``:
there ``sow`` stores nothing and returns False, as Linen's ``sow`` without a mutable
'intermediates' -- a plain ``model(x)`` would keep a tuple on the module that grows at
each call (and makes a jitted step trace again)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import Unconvertible, line_of
from nnxlint.conversion.constructs.sow import COLLECTION
from nnxlint.conversion.shapes import string_literal

if TYPE_CHECKING:
    from nnxlint.conversion.training import TrainingRewriter

_AUTOMATIC_NAME = re.compile(r"[A-Z]\w*_\d+")  # Linen's ``Dense_0``: the NNX attribute is named otherwise


def captured_updates(call: cst.Call, target: cst.BaseExpression) -> Optional[str]:
    """``updates`` for ``out, updates = X.apply(..., mutable=['intermediates'])`` (or
    ``mutable='intermediates'``); None for any other assignment."""
    mutable = [arg.value for arg in call.args if arg.keyword is not None and arg.keyword.value == "mutable"]
    if not mutable or any(arg.keyword is not None and arg.keyword.value == "capture_intermediates"
                          for arg in call.args):
        return None
    value = mutable[0]
    elements = [element.value for element in value.elements] if isinstance(value, (cst.List, cst.Tuple)) \
        else [value]
    if [string_literal(element) for element in elements] != [COLLECTION]:
        return None
    if not isinstance(target, (cst.Tuple, cst.List)) or len(target.elements) != 2 \
            or not isinstance(target.elements[1].value, cst.Name):
        return None
    return target.elements[1].value.value


def check_reads(module: cst.Module, names: set[str]) -> None:
    """Every read of a captured ``updates`` is ``updates['intermediates']...`` with keys
    the converted model has; the first other use is refused naming its line."""
    if not names:
        return
    through: set[int] = set()  # the Names read as ``updates['intermediates']``
    for node in walk(module):
        if isinstance(node, cst.Subscript) and _collection_of(node) is not None:
            through.add(id(node.value))
        key = _key(node) if isinstance(node, cst.Subscript) else None
        if key is not None and _AUTOMATIC_NAME.fullmatch(key):  # wherever the State went (an alias, a caller)
            raise Unconvertible(f"`{key}` read at line {line_of(module, node)} beside captured intermediates: "
                                "Linen's automatic name, which the converted model's attribute does not keep")
    for node in walk(module):
        if isinstance(node, cst.Assign):
            for target in node.targets:
                through.update(id(name) for name in walk(target.target) if isinstance(name, cst.Name))
        if isinstance(node, cst.Name) and node.value in names and id(node) not in through:
            raise Unconvertible(f"`{node.value}` at line {line_of(module, node)} uses the captured "
                                "intermediates other than as `" + node.value + "['intermediates'][...]`")


def read_collection(original: cst.Subscript, updated: cst.Subscript, names: set[str]) -> Optional[cst.BaseExpression]:
    """``updates`` for ``updates['intermediates']`` of a captured ``updates``; None otherwise."""
    name = _collection_of(original)
    if name is None or name not in names:
        return None
    return updated.value.with_changes(lpar=updated.lpar, rpar=updated.rpar)


def capture_call(rewriter: "TrainingRewriter", original: cst.Call, func: str) -> str:
    """The callee of a converted apply: ``nnx.capture(model, nnx.Intermediate)`` where it
    captured, ``nnx.capture(model)`` beside a capture in the file, else ``model``."""
    nnx = rewriter.nnx
    if id(original) in rewriter.analysis.captured_applies:
        return f"{nnx}.capture({func}, {nnx}.Intermediate)"
    return f"{nnx}.capture({func})" if rewriter.analysis.captured_applies else func


def _collection_of(node: cst.Subscript) -> Optional[str]:
    """``updates`` for ``updates['intermediates']``."""
    return node.value.value if isinstance(node.value, cst.Name) and _key(node) == COLLECTION else None


def _key(node: cst.Subscript) -> Optional[str]:
    if len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
        return string_literal(node.slice[0].slice.value)
    return None
