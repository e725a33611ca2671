"""Jupyter notebooks: check the code cells as one program, write fixes back cell by cell.

The code cells are joined into one Python text, so an import in an earlier cell
is visible in later ones.  IPython magics (``%time``, ``%%bash``), shell escapes
(``!pip install``) and help lines (``obj?``) are not Python: each such line is
replaced by a numbered placeholder of the same indentation, and restored when
fixes are written back; a fix that lost a placeholder is refused.

Fixes may rewrite code across cells (a Linen model converted in one cell, its
``init`` call in another), so the fixed text is split into cells again by a
line diff against the joined text: unchanged lines stay in their cell; each
top-level statement of replaced code goes to the cell of the statement it most
resembles, in order, so that no statement is split between cells; inserted
lines join the cell of the line before them.

Writing touches only the ``"source"`` values of the cells whose code changed:
every other byte of the file (outputs, metadata, indentation, key order) stays
as it was.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, replace
from typing import Optional


from nnxlint.findings import Finding
from nnxlint.textio import python_lines

NOTEBOOK_SUFFIX = ".ipynb"
_PLACEHOLDER = "{indent}pass  # nnxlint: magic {index}"
_PLACEHOLDER_LINE = re.compile(r"^[ \t]*pass  # nnxlint: magic (\d+)$")
# `%magic`, `!shell`, `?help`, `obj?`, and assignments from them (`files = !ls`)
_MAGIC_LINE = re.compile(r"^[ \t]*(?:[%!?]|[\w.]+[ \t]*=[ \t]*[%!]|[\w.]+\?\??[ \t]*$)")
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class NotebookError(ValueError):
    """The file is not a notebook nnxlint can read; the message says why."""


@dataclass
class _Cell:
    index: int  # 1-based position among all cells of the notebook
    span: tuple[int, int]  # character offsets of the cell's "source" value in the file
    source: str  # the cell's code as Jupyter shows it
    first_line: int = 0  # line of the cell's first line in the joined text (1-based)
    line_count: int = 0


def _skip_whitespace(text: str, position: int) -> int:
    return _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]


def _expect(text: str, position: int, character: str) -> int:
    position = _skip_whitespace(text, position)
    if text[position:position + 1] != character:
        raise NotebookError(f"expected {character!r} at offset {position}")
    return position + 1


def _object_members(text: str, position: int, decoder: json.JSONDecoder):
    """Yield (key, value start, value end) for the JSON object starting at ``position``.

    The caller may leave a value unparsed (the generator parses it); the last
    item yielded is (None, end of object, end of object).
    """
    position = _expect(text, position, "{")
    position = _skip_whitespace(text, position)
    if text[position:position + 1] == "}":
        yield None, position + 1, position + 1
        return
    while True:
        key, position = decoder.raw_decode(text, _skip_whitespace(text, position))
        position = _skip_whitespace(text, _expect(text, position, ":"))
        _, end = decoder.raw_decode(text, position)
        yield key, position, end
        position = _skip_whitespace(text, end)
        if text[position:position + 1] == "}":
            yield None, position + 1, position + 1
            return
        position = _expect(text, position, ",")


def _array_items(text: str, position: int, decoder: json.JSONDecoder):
    """Yield the start offset of each element of the JSON array at ``position``."""
    position = _skip_whitespace(text, _expect(text, position, "["))
    if text[position:position + 1] == "]":
        return
    while True:
        yield position
        _, end = decoder.raw_decode(text, position)
        position = _skip_whitespace(text, end)
        if text[position:position + 1] == "]":
            return
        position = _skip_whitespace(text, _expect(text, position, ","))


def _cell_source_spans(text: str) -> list[tuple[int, Optional[tuple[int, int]]]]:
    """For each cell of the notebook, (position, span of its "source" value if a code cell)."""
    decoder = json.JSONDecoder()
    cells_start = None
    for key, start, _ in _object_members(text, 0, decoder):
        if key == "cells":
            cells_start = start
    if cells_start is None:
        raise NotebookError("no `cells` list")
    spans = []
    for position, cell_start in enumerate(_array_items(text, cells_start, decoder), start=1):
        cell_type, source_span = None, None
        for key, start, end in _object_members(text, cell_start, decoder):
            if key == "cell_type":
                cell_type = decoder.raw_decode(text, start)[0]
            elif key == "source":
                source_span = (start, end)
        spans.append((position, source_span if cell_type == "code" else None))
    return spans


def _source_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    raise NotebookError("a cell's `source` is neither a string nor a list of strings")


class Notebook:
    """A parsed .ipynb file: its text, its code cells and their Python."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            spans = _cell_source_spans(text)
            self.cells = [_Cell(index, span, _source_text(json.loads(text[span[0]:span[1]])))
                          for index, span in spans if span is not None]
        except (ValueError, IndexError) as error:
            raise NotebookError(f"not a valid notebook: {error}") from None
        except RecursionError:
            raise NotebookError("not a valid notebook: JSON nested too deeply") from None
        self.magics: list[str] = []
        self.python = self._join()

    def _hide_magics(self, source: str) -> list[str]:
        lines = python_lines(source)
        if lines and lines[0].lstrip().startswith("%%"):  # a cell magic: the whole cell is not Python
            self.magics.extend(lines)
            first = len(self.magics) - len(lines)
            return [_PLACEHOLDER.format(indent="", index=first + offset) for offset in range(len(lines))]
        shown = []
        continued = False  # a line after a backslash continues the line before it
        in_magic = False  # ... which was a magic or shell escape: so is this line
        indent = ""
        for line in lines:
            if (in_magic and continued) or (
                    not continued and _MAGIC_LINE.match(line) and not line.lstrip().startswith("#")):
                if not (in_magic and continued):  # a continuation keeps its magic's indentation
                    indent = line[:len(line) - len(line.lstrip())]
                shown.append(_PLACEHOLDER.format(indent=indent, index=len(self.magics)))
                self.magics.append(line)
                in_magic = True
            else:
                shown.append(line)
                in_magic = in_magic and continued
            continued = line.endswith("\\")
        return shown

    def _join(self) -> str:
        lines: list[str] = []
        for cell in self.cells:
            cell.first_line = len(lines) + 1
            cell_lines = self._hide_magics(cell.source)
            cell.line_count = len(cell_lines)
            lines.extend(cell_lines)
        return "".join(line + "\n" for line in lines)

    def _cell_at(self, line: int) -> _Cell:
        for cell in reversed(self.cells):
            if line >= cell.first_line:
                return cell
        return self.cells[0]

    def locate(self, finding: Finding) -> Finding:
        """``finding`` (lines of the joined text) with its cell and cell-relative lines."""
        if not self.cells:
            return finding
        cell = self._cell_at(finding.line)
        offset = cell.first_line - 1
        return replace(finding, cell=cell.index, line=max(1, finding.line - offset),
                       end_line=max(1, finding.end_line - offset))

    def cell_source(self, index: int) -> str:
        return next(cell.source for cell in self.cells if cell.index == index)

    def with_python(self, fixed: str) -> Optional[str]:
        """The notebook's text with the cells' code replaced by ``fixed`` (the joined
        text after fixes), or None when a fix removed an IPython magic."""
        original = python_lines(self.python)
        cell_of = [position for position, cell in enumerate(self.cells) for _ in range(cell.line_count)]
        new_lines = python_lines(fixed)
        matcher = difflib.SequenceMatcher(None, original, new_lines, autojunk=False)
        old_starts = {first for first, _ in _statement_spans(self.python)}
        new_spans = _statement_spans(fixed)
        new_starts = {first for first, _ in new_spans}
        owners: list[int] = []
        unchanged: set[int] = set()  # lines of ``fixed`` that the diff matched to the original
        for tag, old_start, old_end, new_start, new_end in matcher.get_opcodes():
            if tag == "equal":
                owners += cell_of[old_start:old_end]
                unchanged.update(range(new_start, new_end))
            elif old_start < old_end:
                owners += _replacement_owners(original[old_start:old_end], cell_of[old_start:old_end],
                                              new_lines[new_start:new_end],
                                              {line - old_start for line in old_starts},
                                              {line - new_start for line in new_starts})
            else:  # inserted lines: the cell of the line before them
                owners += [cell_of[old_start - 1] if old_start else 0] * (new_end - new_start)
        for first, end in new_spans:  # a statement stays whole: in the cell of its first unchanged line
            anchor = next((line for line in range(first, end) if line in unchanged), first)
            owners[first:end] = [owners[anchor]] * (end - first)
        cells_code: list[list[str]] = [[] for _ in self.cells]
        for owner, line in zip(owners, new_lines):
            cells_code[owner].append(line)
        seen_magics = set()
        for code in cells_code:
            for number, line in enumerate(code):
                placeholder = _PLACEHOLDER_LINE.match(line)
                if placeholder and int(placeholder.group(1)) < len(self.magics):
                    seen_magics.add(int(placeholder.group(1)))
                    code[number] = self.magics[int(placeholder.group(1))]
        if len(seen_magics) != len(self.magics):
            return None
        pieces, end = [], 0
        for cell, code in zip(self.cells, cells_code):
            if code == python_lines(cell.source):  # unchanged: its bytes stay, line endings included
                continue
            newline = "\r\n" if "\r\n" in cell.source else "\n"
            new_source = newline.join(code)
            if cell.source.endswith(("\n", "\r")):
                new_source += newline
            start, stop = cell.span
            pieces += [self.text[end:start], _render_source(self.text[start:stop], new_source)]
            end = stop
        return "".join(pieces) + self.text[end:]


def _statement_spans(text: str) -> list[tuple[int, int]]:
    """(first, end) lines (0-based, end exclusive) of each top-level statement of ``text``,
    decorators included, comments and blank lines before it excluded."""
    import libcst as cst  # only when fixes are split back into cells

    module = cst.parse_module(text)
    line, spans = len(module.header), []
    for statement in module.body:
        first = line + len(statement.leading_lines)
        line += module.code_for_node(statement).count("\n")
        spans.append((first, line))
    return spans


def _replacement_owners(old: list[str], old_cells: list[int], new: list[str], old_starts: set[int],
                        new_starts: set[int]) -> list[int]:
    """The cell of each line of ``new``, the code that replaced ``old`` (lines in ``old_cells``).

    Lines are grouped into top-level statements (a group begins at each start, and
    at the first line).  Each new group goes where the old group with the most
    similar first line was, never before the previous group's choice.
    """
    old_groups = [0] + sorted(line for line in old_starts if 0 < line < len(old))
    owners, chosen = [], 0
    for number, line in enumerate(new):
        if number in new_starts:
            chosen = max(range(chosen, len(old_groups)), key=lambda group: (
                difflib.SequenceMatcher(None, line.strip(), old[old_groups[group]].strip()).ratio(), -group))
        owners.append(old_cells[old_groups[chosen]])
    return owners


def _render_source(original: str, source: str) -> str:
    """``source`` as a JSON value written in the style of ``original`` (the old value)."""
    ensure_ascii = original.isascii() and "\\u" in original
    if original.startswith('"'):
        return json.dumps(source, ensure_ascii=ensure_ascii)
    lines = python_lines(source, keepends=True)
    items = [json.dumps(line, ensure_ascii=ensure_ascii) for line in lines]
    layout = re.match(r"\[(\s*)", original)
    opening = layout.group(1) if layout else ""  # type: ignore[union-attr]
    if "\n" not in opening:  # a one-line list
        return "[" + ", ".join(items) + "]"
    closing = re.search(r"(\s*)\]$", original).group(1)  # type: ignore[union-attr]
    return "[" + opening + ("," + opening).join(items) + closing + "]"
