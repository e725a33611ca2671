"""What a check reports: findings and their fixes (no LibCST needed to read them,
so a run served from the cache never imports the parser)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Applicability = Literal["safe", "unsafe"]
SOURCE_ERROR_CODE = "NNX000"
SOURCE_ERROR_NAME = "invalid-source"


@dataclass(frozen=True)
class FixSummary:
    applicability: Applicability
    description: str


@dataclass
class Finding:
    path: str
    code: str
    name: str
    message: str
    line: int
    column: int  # 1-based
    end_line: int
    end_column: int
    fix: Optional[FixSummary] = None
    cell: Optional[int] = None  # notebooks: 1-based cell number, markdown cells counted (as editors show it)
    # no fix worked out: plain ``check`` leaves a costly one (NNX002's conversion) to a run
    # that applies or shows fixes, which may or may not find one
    fix_deferred: bool = False


def source_error(path: str, message: str, line: int = 1, column: int = 1) -> Finding:
    return Finding(path, SOURCE_ERROR_CODE, SOURCE_ERROR_NAME, message, line, column, line, column)
