"""Where Linen's ``init`` was, the NNX model is built (``model = Model(..., rngs=...)``),
and the line that built the Linen model goes.  Shared by the stateful training rewriter
(``training.py``) and the split/merge one (``split_merge.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import libcst as cst

from nnxlint.conversion.base import ConvertedClass, FileEnv
from nnxlint.conversion.blank_lines import blank_part
from nnxlint.conversion.constructs.linen_bridge import lazy_init_lines

if TYPE_CHECKING:
    from nnxlint.conversion.training import InitSite


def parsed_statement(env: FileEnv, code: str) -> cst.SimpleStatementLine:
    """One line of code, parsed as the file is (its newline, its Python version)."""
    return cst.parse_statement(code + env.module.default_newline,
                               config=env.module.config_for_parsing)  # type: ignore[return-value]


def drop_construction(original: cst.SimpleStatementLine,
                      removed_lines: dict[int, Sequence[cst.EmptyLine]]) -> cst.RemovalSentinel:
    """``model = Net(...)``, built anew where ``init`` was: its blank lines (PEP 8's two after
    a class) stay where they were, above the next statement (``blank_lines.KeepsBlankLines``);
    its comments go with the line that now creates the model."""
    removed_lines[id(original)] = blank_part(original.leading_lines)
    return cst.RemoveFromParent()


def creation_lines(env: FileEnv, site: "InitSite", converted: ConvertedClass, construction: str,
                   original: cst.SimpleStatementLine,
                   removed_lines: dict[int, Sequence[cst.EmptyLine]]) -> list[cst.SimpleStatementLine]:
    """``model = <construction>`` in place of the init statement ``original``, under its own
    and the dropped construction's comments, then the ``nnx.bridge.lazy_init`` lines a model
    holding a bridged Linen layer needs.  The caller places ``original``'s trailing comment."""
    removed = site.construction_statement
    moved = removed.leading_lines[len(removed_lines.get(id(removed), ())):] if removed is not None else ()
    creation = parsed_statement(env, f"{site.model_name} = {construction}").with_changes(
        leading_lines=[*moved, *original.leading_lines])
    bridged = lazy_init_lines(site.model_name, site.call, converted, env)
    return [creation, *(parsed_statement(env, line) for line in bridged)]
