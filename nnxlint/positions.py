"""Source positions of nodes, computed in one light code-generation pass.

LibCST's PositionProvider tracks line and column on every token and builds a
CodeRange for every node: about three times the cost of the parse. Here the
code generator only notes token counts where each node starts and ends (the same
hooks and precedence PositionProvider uses, so the ranges are identical), and
line and column are computed afterwards for the few nodes that were reported.
"""

from __future__ import annotations

import bisect
import re
from contextlib import contextmanager
from itertools import accumulate
from typing import Iterator, Optional

import libcst as cst
from libcst._nodes.internal import CodegenState
from libcst.metadata import CodePosition, CodeRange

_NEWLINE = re.compile(r"\r\n|\r|\n")  # what LibCST counts as a line break


class _TokenSpans(CodegenState):
    def __init__(self, module: cst.Module) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.spans: dict[cst.CSTNode, tuple[int, int]] = {}
        self._starts: list[int] = []

    # whitespace-inclusive spans for every node; the syntactic ones, recorded
    # inside, take precedence (PositionProvider's rule)
    def before_codegen(self, node: cst.CSTNode) -> None:
        self._starts.append(len(self.tokens))

    def after_codegen(self, node: cst.CSTNode) -> None:
        start = self._starts.pop()
        if node not in self.spans:
            self.spans[node] = (start, len(self.tokens))

    @contextmanager
    def record_syntactic_position(self, node: cst.CSTNode, *, start_node: Optional[cst.CSTNode] = None,
                                  end_node: Optional[cst.CSTNode] = None) -> Iterator[None]:
        start = len(self.tokens)
        try:
            yield
        finally:
            end = len(self.tokens)
            if start_node is not None:
                start = self.spans[start_node][0]
            if end_node is not None:
                end = self.spans[end_node][1]
            self.spans[node] = (start, end)


class Positions:
    """``positions[node]`` -> CodeRange (1-based lines, 0-based columns), like PositionProvider."""

    def __init__(self, module: cst.Module) -> None:
        state = _TokenSpans(module)
        module._codegen(state)
        self._spans = state.spans
        self._offsets = [0, *accumulate(len(token) for token in state.tokens)]
        code = "".join(state.tokens)
        self._line_starts = [0, *(match.end() for match in _NEWLINE.finditer(code))]

    def _position(self, token_index: int) -> CodePosition:
        offset = self._offsets[token_index]
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return CodePosition(line + 1, offset - self._line_starts[line])

    def get(self, node: cst.CSTNode) -> Optional[CodeRange]:
        span = self._spans.get(node)
        if span is None:
            return None
        return CodeRange(self._position(span[0]), self._position(span[1]))

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        found = self.get(node)
        if found is None:
            raise KeyError(node)
        return found
