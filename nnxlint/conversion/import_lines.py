"""The converted file's import lines: the Linen import becomes ``from flax import nnx`` (or
stays, followed by it, where Linen names are still read), imports the conversion left
unused go, and PEP 8's import groups stay apart."""

from __future__ import annotations

from collections import Counter
from typing import Sequence, Union

import libcst as cst

from nnxlint import names
from nnxlint.conversion.base import Unconvertible
from nnxlint.flax_api import FLAX_NNX, is_linen

Replacement = Union[cst.CSTNode, cst.RemovalSentinel, cst.FlattenSentinel]


def convert_imports(module: cst.Module, scope: names.Scope, nnx: str, new: dict[cst.CSTNode, Replacement],
                    before: Counter, after: Counter) -> None:
    """Rewrites the import lines of ``module`` into ``new`` (the converted statements);
    ``before``/``after``: how often each name is read in the file and in its conversion."""
    nnx_needed = nnx == "nnx" and scope.local_name(FLAX_NNX) is None
    for statement in module.body:
        if not is_import(statement):
            continue
        small = statement.body[0]  # type: ignore[attr-defined]
        if _imports_linen(small):  # Linen names still read stay (classes that stay Linen, a config)
            unused = {name for name in _bound_names(small) if after[name] <= 0}
            kept = _without_aliases(statement, unused) if unused else statement  # type: ignore[arg-type]
            if nnx_needed:
                nnx_line = cst.parse_statement("from flax import nnx" + module.default_newline)
                kept = cst.FlattenSentinel([kept, nnx_line]) if isinstance(kept, cst.CSTNode) else \
                    nnx_line.with_changes(leading_lines=statement.leading_lines,  # type: ignore[attr-defined]
                                          trailing_whitespace=statement.trailing_whitespace)
                nnx_needed = False
            new[statement] = kept
            continue
        unused = {alias_name for alias_name in _bound_names(small)
                  if before[alias_name] > 0 and after[alias_name] <= 0}
        if unused:
            new[statement] = _without_aliases(statement, unused)  # type: ignore[arg-type]
    _keep_import_group_breaks(module, new)
    if nnx_needed and after[nnx] > 0:  # no Linen import to follow (a training file): after the imports
        imports = [statement for statement in module.body if is_import(statement)]
        flax = [statement for statement in imports if any(
            qualified.startswith("flax.") for _, qualified in _alias_targets(statement.body[0]))]  # type: ignore
        if not imports:
            raise Unconvertible("the file has no import to put `from flax import nnx` after")
        anchor = (flax or imports)[-1]
        nnx_line = cst.parse_statement("from flax import nnx" + module.default_newline)
        kept = new.get(anchor, anchor)
        new[anchor] = cst.FlattenSentinel([*parts(kept), nnx_line]) if parts(kept) else \
            nnx_line.with_changes(leading_lines=anchor.leading_lines)  # type: ignore[attr-defined]


def _keep_import_group_breaks(module: cst.Module, new: dict[cst.CSTNode, Replacement]) -> None:
    """The blank line above a removed import (``import jax`` opening the third-party
    group) moves to the next import kept, so PEP 8's groups stay apart."""
    pending: Sequence[cst.EmptyLine] = ()
    for statement in module.body:
        if not is_import(statement):
            pending = ()
            continue
        replaced = new.get(statement, statement)
        if isinstance(replaced, cst.RemovalSentinel):
            pending = pending or statement.leading_lines  # type: ignore[attr-defined]
        elif isinstance(replaced, cst.SimpleStatementLine):
            if pending and not replaced.leading_lines:
                new[statement] = replaced.with_changes(leading_lines=pending)
            pending = ()


def parts(node: Replacement) -> list[cst.CSTNode]:
    if isinstance(node, cst.FlattenSentinel):
        return list(node.nodes)
    if isinstance(node, cst.CSTNode):
        return [node]
    return []


def is_import(statement: cst.CSTNode) -> bool:
    return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], (cst.Import, cst.ImportFrom)))


def _imports_linen(small: cst.BaseSmallStatement) -> bool:
    bound = list(_alias_targets(small))
    linen = [qualified for _, qualified in bound if is_linen(qualified)]
    if linen and len(linen) != len(bound):
        raise Unconvertible("an import statement that mixes flax.linen with other names")
    return bool(linen)


def _alias_targets(small: cst.BaseSmallStatement):
    if isinstance(small, cst.Import):
        for alias in small.names:
            dotted = names.dotted_name(alias.name) or ""
            if alias.asname is not None:
                yield alias.asname.name.value, dotted  # type: ignore[attr-defined]
            else:
                yield dotted.split(".")[0], dotted
    elif isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar) and small.module:
        module = names.dotted_name(small.module)
        for alias in small.names:
            local = alias.asname.name.value if alias.asname else names.dotted_name(alias.name)  # type: ignore
            yield local, f"{module}.{names.dotted_name(alias.name)}"


def _bound_names(small: cst.BaseSmallStatement) -> list[str]:
    return [local for local, _ in _alias_targets(small)]


def _without_aliases(statement: cst.SimpleStatementLine, unused: set[str]) -> Replacement:
    small = statement.body[0]
    aliases = list(small.names)  # type: ignore[attr-defined]
    kept = [alias for alias, (local, _) in zip(aliases, _alias_targets(small)) if local not in unused]
    if not kept:
        return cst.RemoveFromParent()
    kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return statement.with_changes(body=[small.with_changes(names=kept)])
