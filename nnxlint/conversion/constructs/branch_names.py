"""Linen's automatic names of submodules created in a branch on fields::

    x = nn.Conv(f, (3, 3))(x)
    if self.params is None:
        x = nn.BatchNorm(use_running_average=not train)(x)
    else:
        x = nn.BatchNorm(use_running_average=not train, scale_init=...)(x)

Linen numbers automatic names (``BatchNorm_0``, ``BatchNorm_1``) over the
modules a call creates, in order.  A module made in a branch has a name known
in advance as long as the count of its type before it does not depend on an
earlier branch; both arms above make ``BatchNorm_0``, so the NNX ``__init__``
builds one attribute two ways (``if params is None: self.batch_norm_0 = ...``
``else: self.batch_norm_0 = ...``).  After a branch whose arms make different
numbers of modules of a type, the next automatic name of that type depends on
the arm taken: such a module is not converted (with ``name=`` it is).

The counters of ``ClassConverter.auto_name`` are saved when an ``if`` starts,
set back for its ``else``, and merged when it ends (``settled``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import Slot, Unconvertible, line_of
from nnxlint.conversion.constructs.branch_module import ends, negated

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter


@dataclass
class _Branch:
    before: dict[str, int]
    node: cst.If
    taken: Optional[dict[str, int]] = None


@dataclass
class UnsettledNames:
    """The types whose next automatic name depends on a branch: type -> that ``if``."""

    branches: dict[str, cst.If] = field(default_factory=dict)

    def check(self, module: cst.Module, type_name: str) -> None:
        branch = self.branches.get(type_name)
        if branch is not None:
            raise Unconvertible(
                f"an automatically named `{type_name}` after the `if` at line {line_of(module, branch)}, whose arms create different "
                f"numbers of `{type_name}` modules: Linen's name for it (`{type_name}_<n>`) depends on the arm "
                "taken; give it a `name=`")


def enter(rewriter: CallRewriter, node: cst.If) -> None:
    converter = rewriter.converter
    rewriter.name_branches[id(node)] = _Branch(dict(converter.auto_counters), node)


def leave_body(rewriter: CallRewriter, node: cst.If) -> None:
    """The ``else`` (or ``elif``) numbers from where the ``if`` started."""
    branch = rewriter.name_branches.get(id(node))
    if branch is not None:
        branch.taken = dict(rewriter.converter.auto_counters)
        _set(rewriter.converter, branch.before)


def leave(rewriter: CallRewriter, node: cst.If) -> None:
    """The counters after the whole ``if``: an arm that returns numbers nothing after it."""
    converter = rewriter.converter
    branch = rewriter.name_branches.pop(id(node), None)
    if branch is None or branch.taken is None:
        return
    taken, other = branch.taken, dict(converter.auto_counters)
    if ends(node.body):
        return  # what follows runs only when the body did not: the other arm's counters stand
    if isinstance(node.orelse, cst.Else) and ends(node.orelse.body):
        _set(converter, taken)
        return
    for type_name in taken.keys() | other.keys():
        made, otherwise = taken.get(type_name, 0), other.get(type_name, 0)
        if made != otherwise:
            converter.unsettled_names.branches.setdefault(type_name, node)
            converter.auto_counters[type_name] = max(made, otherwise)


def twin_slot(converter: ClassConverter, attribute: str, construction: cst.Call, guard: Optional[str]) -> Slot:
    """The ``else`` arm's module of the name the ``if`` arm made: built in that ``else``."""
    first_guard = converter.slot_guards.get(attribute)
    if guard is None or first_guard is None or guard != negated(first_guard) or attribute in converter.slot_twins:
        raise Unconvertible(f"`{attribute}` is created in two places that are not the two arms of one `if` on "
                            "fields (Linen's automatic name is the same for both)")
    slot = Slot(attribute, construction)
    converter.slot_twins[attribute] = slot
    return slot


def _set(converter: ClassConverter, counters: dict[str, int]) -> None:
    converter.auto_counters.clear()
    converter.auto_counters.update(counters)
