"""PEP 8's blank lines survive a removed statement: a transformer that removes one
records its blank leading lines, and they move to the next statement that has no
blank line above it (two blank lines after a class stay two blank lines after it)."""

from __future__ import annotations

from typing import Sequence

import libcst as cst


class KeepsBlankLines:
    """Mixin for a ``cst.CSTTransformer``: ``removed_lines[id(original statement)]``
    holds the lines to hand on when that statement is removed."""

    removed_lines: dict[int, Sequence[cst.EmptyLine]]

    def leave_IndentedBlock(self, original_node, updated_node):
        return updated_node.with_changes(body=self._blank_lines_kept(original_node.body, updated_node.body))

    def leave_Module(self, original_node, updated_node):
        return updated_node.with_changes(body=self._blank_lines_kept(original_node.body, updated_node.body))

    def _blank_lines_kept(self, before: Sequence[cst.BaseStatement], after: Sequence[cst.BaseStatement]) -> list:
        after = list(after)
        removed = [statement for statement in before if id(statement) in self.removed_lines]
        if not removed or len(after) != len(before) - len(removed):
            return after
        kept = iter(after)
        pairs = [(statement, None if id(statement) in self.removed_lines else next(kept)) for statement in before]
        return [replacement for replacement in _handed_on(pairs, self.removed_lines) if replacement is not None]


def has_blank_line(statement: cst.CSTNode) -> bool:
    return any(line.comment is None for line in getattr(statement, "leading_lines", ()))


def blank_part(lines: Sequence[cst.EmptyLine]) -> list[cst.EmptyLine]:
    """The blank lines above a statement's first comment line."""
    blank = []
    for line in lines:
        if line.comment is not None:
            break
        blank.append(line)
    return blank


def hand_on_top_level(body: Sequence[cst.BaseStatement], new: dict, removed_lines: dict[int, Sequence[cst.EmptyLine]]
                      ) -> None:
    """``KeepsBlankLines`` for module-level statements that a transformer visited one by
    one (``new`` maps each to its replacement)."""
    pairs = [(statement, None if isinstance(new.get(statement, statement), cst.RemovalSentinel)
              else new.get(statement, statement)) for statement in body]
    for (statement, before), after in zip(pairs, _handed_on(pairs, removed_lines)):
        if after is not before:
            new[statement] = after


def _handed_on(pairs: list, removed_lines: dict[int, Sequence[cst.EmptyLine]]) -> list:
    """The replacements of (statement, replacement) pairs, None for a statement removed,
    with the blank lines of each one removed moved onto the next one kept."""
    pending: Sequence[cst.EmptyLine] = ()
    result = []
    for statement, replacement in pairs:
        if replacement is None:
            pending = pending or removed_lines.get(id(statement), ())
        elif pending:
            replacement = _with_lines_above(replacement, pending)
            pending = ()
        result.append(replacement)
    return result


def _with_lines_above(replacement, lines: Sequence[cst.EmptyLine]):
    """``lines`` above the first statement of ``replacement``, unless it has a blank line already."""
    first = replacement.nodes[0] if isinstance(replacement, cst.FlattenSentinel) and replacement.nodes else replacement
    if not isinstance(first, (cst.SimpleStatementLine, cst.BaseCompoundStatement)) or has_blank_line(first):
        return replacement
    first = first.with_changes(leading_lines=[*lines, *first.leading_lines])
    return cst.FlattenSentinel([first, *replacement.nodes[1:]]) if isinstance(replacement, cst.FlattenSentinel) else first
