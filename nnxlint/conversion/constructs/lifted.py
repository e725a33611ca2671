"""Linen lifted transforms of a class of the file that the conversion knows,
created and called at once (``nn.scan(...)(...)(x)``) or bound to a name first
(``Blocks = nn.scan(...)``): ``nn.scan`` layer stacks (``scan_stack.py``),
``nn.remat`` / ``nn.checkpoint`` (``remat.py``), ``nn.vmap`` ensembles and shared
modules and ``nn.jit`` (``vmap.py``)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Unconvertible, line_of
from nnxlint.conversion.constructs.remat import Remat, is_remat, read_remat, remat_call
from nnxlint.conversion.constructs.scan_stack import (
    Scan,
    is_scan,
    read_scan,
    scanned_call,
)
from nnxlint.conversion.constructs.vmap import Jit, Vmap, is_vmap, read_vmap, vmap_call

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter

Lifted = Scan | Remat | Vmap | Jit


def is_lifted(converter: ClassConverter, node: cst.BaseExpression) -> bool:
    return is_scan(converter, node) or is_remat(converter, node) or is_vmap(converter, node)


def read_lifted(converter: ClassConverter, node: cst.Call) -> Lifted:
    with _at_line(converter, node):
        if is_vmap(converter, node):
            return read_vmap(converter, node)
        return read_scan(converter, node) if is_scan(converter, node) else read_remat(converter, node)


def lifted_call(rewriter: CallRewriter, lifted: Lifted, construction: cst.Call, call: cst.Call,
                updated: cst.Call) -> cst.BaseExpression:
    with _at_line(rewriter.converter, call):
        if isinstance(lifted, Scan):
            return scanned_call(rewriter, lifted, construction, call, updated)
        if isinstance(lifted, (Vmap, Jit)):
            return vmap_call(rewriter, lifted, construction, call, updated)
        return remat_call(rewriter, lifted, construction, call, updated)


@contextmanager
def _at_line(converter: ClassConverter, node: cst.CSTNode):
    """A refusal names the line of the transform (the finding stands on the class)."""
    try:
        yield
    except Unconvertible as error:
        if " (line " in str(error):
            raise
        raise type(error)(f"{error} (line {line_of(converter.env.module, node)})") from None
