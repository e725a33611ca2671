"""NNX000 for a text that does not parse: CPython's verdict, where the user sees it.

LibCST and CPython disagree at the edges: LibCST reports most errors a line late
and tokenizer errors at 1:1, and it gives up on valid Python beyond its limits
(thousands of concatenated strings, very deep nesting).  So the message and the
position come from CPython's own parser whenever CPython rejects the text too;
a text CPython accepts is reported as beyond LibCST, never as a syntax error.
"""

from __future__ import annotations

import ast
import re
import warnings
from typing import Optional

from nnxlint.findings import Finding, source_error

_LIBCST_AT = re.compile(r"error at (\d+):(\d+): ")


def python_syntax_error(text: str) -> Optional[tuple[str, int, int]]:
    """(message, line, column) when CPython's parser rejects ``text``, else None.
    Columns are 1-based, as CPython reports them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings are the user's business, not ours
            compile(text, "<nnxlint>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as error:  # IndentationError and TabError included
        line = error.lineno or 1
        return error.msg, line, max(1, error.offset or 1)
    except ValueError as error:  # null bytes
        return str(error), 1, 1
    except (RecursionError, MemoryError):
        return "too deeply nested for Python's parser", 1, 1
    return None


def parse_failure(text: str, path: str, error: BaseException) -> Finding:
    """The NNX000 finding for ``text``, which LibCST failed to parse with ``error``."""
    rejected = python_syntax_error(text)
    if rejected is not None:
        message, line, column = rejected
        return source_error(path, f"syntax error: {message}", line, column)
    if isinstance(error, (RecursionError, MemoryError)):
        return source_error(path, "valid Python that LibCST cannot parse: too deeply nested")
    reason = getattr(error, "message", str(error))
    where = _LIBCST_AT.search(reason)
    line, column = (int(where.group(1)), int(where.group(2)) + 1) if where else (1, 1)
    return source_error(path, f"valid Python that LibCST cannot parse: {_LIBCST_AT.sub('', reason)}", line, column)
