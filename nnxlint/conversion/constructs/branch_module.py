"""A submodule created under ``@nn.compact`` inside a branch on fields, or after one
that returns (``if self.tied: return embed.attend(x)``: the code after it runs
under ``not (tied)``)::

    if config.logits_via_embedding:
        logits = embed.attend(y)
    else:
        logits = nn.Dense(config.vocab, name='logitdense')(y)

Linen creates the layer only when the branch is taken; so does the NNX
``__init__``, under the same test in ``__init__`` terms (``if not
(config.logits_via_embedding): self.logitdense = nnx.Linear(...)``), and the
call stays in its branch.  Converted when every enclosing ``if`` reads only
fields and module-level names (no loop, no value of ``__call__``); automatic
names (``Dense_1``) follow ``branch_names.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter


def branch_guard(rewriter: CallRewriter, construction: cst.Call) -> str:
    """The test, in ``__init__`` terms, under which ``construction`` (inside a branch) is built."""
    if rewriter.depth != len(rewriter.conditions) or None in rewriter.conditions:
        raise Unconvertible("submodules created inside a loop or branch are not converted, but in a branch "
                            "whose test reads only fields (not a value of `__call__`)")
    return " and ".join(rewriter.conditions)  # type: ignore[arg-type]


def built_every_iteration(rewriter: CallRewriter, loop, construction: cst.BaseExpression) -> bool:
    """A layer without variables (``nn.Dropout``) made in a branch inside a stack loop, the
    tests between them all ``if``s (``if i + 1 < len(self.sizes): x = nn.Dropout(r)(x, ...)``):
    ``__init__`` builds one per iteration whatever the tests (there are no weights whose
    place depends on them) and the call keeps its branch."""
    if not isinstance(construction, cst.Call) or loop.node is None:
        return False
    layer = rewriter.converter.layer(construction.func)
    branches = len(rewriter.conditions) - rewriter.loop_conditions[-1]
    return layer is not None and layer.mapping is not None and layer.mapping.without_variables \
        and rewriter.depth - loop.depth == branches > 0


def guarded(init_code: str, guard: str | None, indent: str, otherwise: str | None = None) -> str:
    """The ``__init__`` line(s) building a submodule, under its branch's test (and
    what the attribute is otherwise, ``constructs/chosen_module.py``)."""
    if guard is None:
        return init_code
    # built as nodes: code of several lines (an ``if`` kept whole) moves one level in as a block
    orelse = cst.Else(cst.IndentedBlock(list(cst.parse_module(otherwise).body))) if otherwise else None
    branch = cst.If(test=cst.parse_expression(guard), body=cst.IndentedBlock(list(cst.parse_module(init_code).body)),
                    orelse=orelse)
    return cst.Module(body=[branch], default_indent=indent).code.rstrip("\n")


def returns(node: cst.If) -> bool:
    """``if test: ...; return ...`` without ``else``: the code after it runs only when ``test`` is false."""
    return node.orelse is None and ends(node.body)


def ends(block: Optional[cst.BaseSuite]) -> bool:
    """The block ends in ``return`` or ``raise``."""
    statements = block.body if isinstance(block, cst.IndentedBlock) else ()
    last = statements[-1] if statements else None
    return isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[-1], (cst.Return, cst.Raise))


def negated(condition: str | None) -> str | None:
    """``not config.tied`` / ``not (a and b)``; None (a value of ``__call__``) stays None."""
    if condition is None:
        return None
    dotted = all(part.isidentifier() for part in condition.split("."))
    return f"not {condition}" if dotted else f"not ({condition})"
