"""Linen's test for its own ``init`` call, as attention caches write it::

    is_initialized = self.has_variable('cache', 'cache_index')
    cache_index = self.variable('cache', 'cache_index', lambda: jnp.array(0, jnp.uint32))
    if is_initialized:
        i = cache_index.value
        cache_index.value = i + 1

The variable is missing only while ``init`` runs ``__call__``.  NNX's ``__init__``
makes it (``self.cache_index = nnx.Cache(...)``) and never runs ``__call__``, so
every call is a later one: the ``has_variable`` statement goes and ``if
is_initialized:`` keeps only its body, as ``if not self.is_initializing():`` does.
Converted when the flag is bound once, the class makes that variable right
after, under the same branches, and the flag is read only as the test of an
``if`` without ``else``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible
from nnxlint.conversion.shapes import string_literal

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter


@dataclass
class InitializedFlag:
    variable: str  # the attribute the ``self.variable`` of the same name becomes
    conditions: tuple[Optional[str], ...]  # the branches the flag is bound under


def bind_initialized_flag(rewriter: CallRewriter, node: cst.Assign) -> bool:
    """``flag = self.has_variable(collection, name)``: recorded and removed; True when it was one."""
    converter = rewriter.converter
    value = node.value
    if not (isinstance(value, cst.Call) and converter.is_self_call(value.func, "has_variable")):
        return False
    target = node.targets[0].target if len(node.targets) == 1 else None
    names = [string_literal(arg.value) if arg.keyword is None and not arg.star else None for arg in value.args]
    if not isinstance(target, cst.Name) or converter._assignments.get(target.value) != 1 \
            or len(names) != 2 or None in names:
        raise Unconvertible("`self.has_variable` other than `flag = self.has_variable('collection', 'name')` "
                            "bound once")
    rewriter.initialized_flags[target.value] = InitializedFlag(names[1], tuple(rewriter.conditions))  # type: ignore[arg-type]
    rewriter.removed_statements.add(id(node))
    return True


def is_initialized_guard(rewriter: CallRewriter, node: cst.If) -> bool:
    """``if flag:`` (no ``else``) for a flag of ``bind_initialized_flag`` whose variable the class made."""
    test = node.test
    flag = rewriter.initialized_flags.get(test.value) if isinstance(test, cst.Name) else None
    if flag is None:
        return False
    if node.orelse is not None or not isinstance(node.body, cst.IndentedBlock):
        raise Unconvertible(f"`if {test.value}:` (Linen's test for `init`) with an `else` is not converted")
    if flag.variable not in rewriter.converter.variables or tuple(rewriter.conditions) != flag.conditions:
        raise Unconvertible(f"`{test.value} = self.has_variable(...)` without `self.variable(...)` of the same "
                            "name made right after, under the same branches")
    rewriter.initialized_reads.add(id(test))
    return True


def check_flag_read(rewriter: CallRewriter, node: cst.Name) -> None:
    if node.value in rewriter.initialized_flags and id(node) not in rewriter.initialized_reads:
        raise Unconvertible(f"`{node.value}` (Linen's `self.has_variable`) is used other than as `if {node.value}:`")
