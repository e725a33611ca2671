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
        kept = iter(range(len(after)))
        pending: Sequence[cst.EmptyLine] = ()
        for statement in before:
            if id(statement) in self.removed_lines:
                pending = pending or self.removed_lines[id(statement)]
                continue
            index = next(kept)
            if pending and not has_blank_line(after[index]):
                after[index] = after[index].with_changes(leading_lines=[*pending, *after[index].leading_lines])
            pending = ()
        return after


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
    pending: Sequence[cst.EmptyLine] = ()
    for statement in body:
        replaced = new.get(statement, statement)
        if isinstance(replaced, cst.RemovalSentinel):
            pending = pending or removed_lines.get(id(statement), ())
            continue
        first = replaced.nodes[0] if isinstance(replaced, cst.FlattenSentinel) and replaced.nodes else replaced
        if pending and isinstance(first, (cst.SimpleStatementLine, cst.BaseCompoundStatement)) \
                and not has_blank_line(first):
            first = first.with_changes(leading_lines=[*pending, *first.leading_lines])
            new[statement] = cst.FlattenSentinel([first, *replaced.nodes[1:]]) \
                if isinstance(replaced, cst.FlattenSentinel) else first
        pending = ()
