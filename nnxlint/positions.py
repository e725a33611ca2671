"""Source positions of nodes, computed by light code generation where they are asked for.

LibCST's PositionProvider tracks line and column on every token and builds a
CodeRange for every node: about three times the cost of the parse. Here the
code generator only notes token counts where each node starts and ends (the same
hooks and precedence PositionProvider uses, so the ranges are identical), and
line and column are computed afterwards for the few nodes that were reported.

Given the source text the module was parsed from, not even the whole module is
generated: only the top-level statements that hold an asked-for node.  A
top-level statement generates the same tokens alone as inside its module (no
indentation, the module's newline and indent), so its code is a piece of the
source; where that piece occurs exactly once in the source its offset is
certain.  Anything else (the module node itself, a piece that occurs twice, the
last line of a file without a final newline) takes the whole-module pass.

Told which nodes will be asked about (``wanted``: the reported ones), the generator
records the spans of those alone (and of the children their spans are measured
from); a question about any other node starts over without the restriction.
"""

from __future__ import annotations

import bisect
import contextlib
import re
from itertools import accumulate
from typing import Iterable, Optional, Union

import libcst as cst
from libcst._nodes.internal import CodegenState
from libcst.metadata import CodePosition, CodeRange

from nnxlint.context import walk

_NEWLINE = re.compile(r"\r\n|\r|\n")  # what LibCST counts as a line break


_UNRECORDED = contextlib.nullcontext()  # the span of a node nobody will ask about: nothing to note


class _TokenSpans(CodegenState):
    def __init__(self, module: cst.Module, wanted: Optional[frozenset[int]] = None) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        # keyed by id(): a CSTNode's __hash__ is a Python-level call, in the hottest loop here
        self.spans: dict[int, tuple[int, int]] = {}
        self._starts: list[int] = []
        self._wanted = set(wanted) if wanted is not None else None

    # whitespace-inclusive spans (of every node, or of the wanted ones); the syntactic
    # ones, recorded inside, take precedence (PositionProvider's rule)
    def before_codegen(self, node: cst.CSTNode) -> None:
        if self._wanted is None or id(node) in self._wanted:
            self._starts.append(len(self.tokens))

    def after_codegen(self, node: cst.CSTNode) -> None:
        if self._wanted is None or id(node) in self._wanted:
            start = self._starts.pop()
            self.spans.setdefault(id(node), (start, len(self.tokens)))

    def record_syntactic_position(self, node: cst.CSTNode, *, start_node: Optional[cst.CSTNode] = None,
                                  end_node: Optional[cst.CSTNode] = None) -> "Union[_Syntactic, contextlib.nullcontext]":
        wanted = self._wanted
        if wanted is not None:
            if id(node) not in wanted:
                return _UNRECORDED
            # measured from these children (generated inside): their own syntactic spans
            wanted.update(id(child) for child in (start_node, end_node) if child is not None)
        return _Syntactic(self, node, start_node, end_node)


class _Syntactic:
    """The span of a node's own syntax (a class, not a generator: it runs for most nodes)."""

    __slots__ = ("state", "node", "start_node", "end_node", "start")

    def __init__(self, state: _TokenSpans, node: cst.CSTNode, start_node: Optional[cst.CSTNode],
                 end_node: Optional[cst.CSTNode]) -> None:
        self.state, self.node, self.start_node, self.end_node = state, node, start_node, end_node

    def __enter__(self) -> None:
        self.start = len(self.state.tokens)

    def __exit__(self, *exception: object) -> None:
        spans = self.state.spans
        start = spans[id(self.start_node)][0] if self.start_node is not None else self.start
        end = spans[id(self.end_node)][1] if self.end_node is not None else len(self.state.tokens)
        spans[id(self.node)] = (start, end)


class _Generated:
    """The tokens generated for one node (a statement or the module), where they begin
    in the source, and the token spans of every node in it."""

    def __init__(self, module: cst.Module, node: cst.CSTNode, wanted: Optional[frozenset[int]] = None) -> None:
        state = _TokenSpans(module, wanted)
        node._codegen(state)
        self.spans = state.spans
        self.offsets = [0, *accumulate(len(token) for token in state.tokens)]
        self.code = "".join(state.tokens)
        self.start = 0  # offset in the source


class Positions:
    """``positions[node]`` -> CodeRange (1-based lines, 0-based columns), like PositionProvider.

    ``text``: the source ``module`` was parsed from; without it the whole module is
    generated on the first question.  ``wanted``: the nodes that will be asked about,
    when known (others cost a second generation)."""

    def __init__(self, module: cst.Module, text: Optional[str] = None,
                 wanted: Optional[Iterable[cst.CSTNode]] = None) -> None:
        self._module = module
        self._text = text
        # kept alive here with their ids, so that no other node can take one of them
        self._wanted_nodes = list(wanted) if wanted is not None else None
        self._wanted = frozenset(map(id, self._wanted_nodes)) if self._wanted_nodes is not None else None
        self._whole: Optional[_Generated] = None
        self._line_starts: Optional[list[int]] = None
        self._owner: dict[int, int] = {}  # id(node) -> index of its top-level statement
        self._walked = 0  # top-level statements entered in _owner so far
        self._statements: dict[int, Optional[_Generated]] = {}  # index -> its code, None: not placeable

    def _whole_module(self) -> _Generated:
        if self._whole is None:
            self._whole = _Generated(self._module, self._module, self._wanted)
            if self._text is None:
                self._text = self._whole.code
        return self._whole

    def _statement_of(self, node: cst.CSTNode) -> Optional[int]:
        """The index of the top-level statement holding ``node`` (walked lazily), or None."""
        key = id(node)
        body = self._module.body
        while key not in self._owner and self._walked < len(body):
            index = self._walked
            self._owner.update((id(found), index) for found in walk(body[index]))
            self._walked += 1
        return self._owner.get(key)

    def _statement(self, index: int) -> Optional[_Generated]:
        if index not in self._statements:
            assert self._text is not None
            module = self._module
            generated = _Generated(module, module.body[index], self._wanted)
            start = self._text.find(generated.code)
            # the module pass drops the final newline of a file without one: not this statement's code there
            last = index == len(module.body) - 1 and not module.footer and not module.has_trailing_newline
            placeable = (not last and generated.code and start >= 0
                         and self._text.find(generated.code, start + 1) < 0)
            generated.start = start
            self._statements[index] = generated if placeable else None
        return self._statements[index]

    def _generated_for(self, node: cst.CSTNode) -> _Generated:
        if self._text is not None and self._whole is None:
            index = self._statement_of(node)
            if index is not None:
                generated = self._statement(index)
                if generated is not None and id(node) in generated.spans:
                    return generated
        return self._whole_module()

    def _position(self, generated: _Generated, token_index: int) -> CodePosition:
        if self._line_starts is None:
            assert self._text is not None
            self._line_starts = [0, *(match.end() for match in _NEWLINE.finditer(self._text))]
        offset = generated.start + generated.offsets[token_index]
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return CodePosition(line + 1, offset - self._line_starts[line])

    def get(self, node: cst.CSTNode) -> Optional[CodeRange]:
        if self._wanted is not None and id(node) not in self._wanted:  # not foreseen: no restriction from now on
            self._wanted = self._wanted_nodes = self._whole = None
            self._statements.clear()
        generated = self._generated_for(node)
        span = generated.spans.get(id(node))
        if span is None:
            return None
        return CodeRange(self._position(generated, span[0]), self._position(generated, span[1]))

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        found = self.get(node)
        if found is None:
            raise KeyError(node)
        return found
