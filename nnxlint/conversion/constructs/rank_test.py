"""A test of an array's rank, as encoders that take a batch or a single example write it::

    if len(x.shape) == 4:
        x = x.reshape([x.shape[0], -1])
    else:
        x = x.reshape([-1])

A class converted for an input of known rank (stated, given by its builder, or the rank its
convolutions read: ``input_axes.py``) knows the rank of each array it follows, so the test is
decided: the shapes after the ``if`` are the ones of the branch taken.  The test stays in
``__call__`` as written; ``__init__`` needs only the sizes.  Tests of an array of unknown
rank, or of anything else, are left to ``branch_sizes.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.shapes import int_literal, is_open

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter

_COMPARISONS = {cst.Equal: lambda a, b: a == b, cst.NotEqual: lambda a, b: a != b,
                cst.LessThan: lambda a, b: a < b, cst.LessThanEqual: lambda a, b: a <= b,
                cst.GreaterThan: lambda a, b: a > b, cst.GreaterThanEqual: lambda a, b: a >= b}


def decided_rank_test(rewriter: "CallRewriter", test: cst.BaseExpression) -> Optional[bool]:
    """The value of ``x.ndim == k`` / ``len(x.shape) == k`` (or ``!=``, ``<``, ...) for an
    array ``x`` whose rank the conversion knows; None for any other test."""
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return None
    compare = _COMPARISONS.get(type(test.comparisons[0].operator))
    rank, number = _rank(rewriter, test.left), int_literal(test.comparisons[0].comparator)
    if rank is None or number is None or compare is None:
        return None
    return compare(rank, number)


def _rank(rewriter: "CallRewriter", node: cst.BaseExpression) -> Optional[int]:
    """The rank ``x.ndim`` or ``len(x.shape)`` reads, when the shape of ``x`` is known."""
    if isinstance(node, cst.Attribute) and node.attr.value == "ndim":
        array = node.value
    elif isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "len" \
            and len(node.args) == 1 and isinstance(node.args[0].value, cst.Attribute) \
            and node.args[0].value.attr.value == "shape" and rewriter.converter.env.scope.lookup("len") is None:
        array = node.args[0].value.value
    else:
        return None
    shape = rewriter.shape_of(array)
    if not isinstance(shape, tuple) or not shape or is_open(shape):
        return None
    return len(shape)
