"""Sharding metadata on an initializer::

    nn.Dense(8, kernel_init=nn.with_logical_partitioning(init, ('embed', 'mlp')))
    -> nnx.Linear(d, 8, kernel_init=nnx.with_partitioning(init, ('embed', 'mlp'), eager_sharding=False), ...)

The NNX variable carries the axis names as its ``out_sharding`` metadata
(``nnx.get_partition_spec`` reads them, resolved through the same
``nn.logical_axis_rules``), as Linen's ``LogicallyPartitioned`` /
``Partitioned`` box does; ``nnxlint.transplant`` checks that the names agree.
Linen only names the axes when a variable is created; NNX by default also
shards it then, which needs a mesh the Linen program may not set, hence
``eager_sharding=False`` (``linen_map.PARTITIONING``).  The ``mesh=`` and
``rules=`` arguments are not converted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Unconvertible, arg_keyword
from nnxlint.conversion.linen_map import PARTITIONING, PARTITIONING_ADDED

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter


def is_partitioning(converter: ClassConverter, node: cst.Call) -> bool:
    return converter.env.linen_member(node.func) in PARTITIONING


def partitioned_init(converter: ClassConverter, original: cst.Call, updated: cst.Call) -> cst.Call:
    """The NNX initializer for a Linen partitioning wrapper; any other call unchanged."""
    if not is_partitioning(converter, original):
        return updated
    if len(original.args) != 2 or any(arg.star or arg_keyword(arg) not in (None, "fn", "names")
                                      for arg in original.args):
        raise Unconvertible(f"`nn.{converter.env.linen_member(original.func)}` with `mesh=` or `rules=` "
                            "is not converted")
    func = cst.parse_expression(f"{converter.env.nnx}.{PARTITIONING[converter.env.linen_member(original.func)]}")
    added = [cst.Arg(cst.parse_expression(value), keyword=cst.Name(keyword),
                     equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
             for keyword, value in PARTITIONING_ADDED.items()]
    args = list(updated.args)
    args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    return updated.with_changes(func=func, args=args + added)
