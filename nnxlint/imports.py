"""Adding the imports that fixes need, where a careful person would put them."""

from __future__ import annotations

import sys
from typing import Iterable, Optional

import libcst as cst

from nnxlint.names import dotted_name


def _imported_modules(statement: cst.CSTNode) -> list[str]:
    """Qualified names an import statement binds (``from flax import nnx`` -> flax.nnx)."""
    if not isinstance(statement, cst.SimpleStatementLine):
        return []
    found = []
    for small in statement.body:
        if isinstance(small, cst.Import):
            found += [dotted_name(alias.name) or "" for alias in small.names]
        elif isinstance(small, cst.ImportFrom) and not small.relative and small.module is not None:
            module = dotted_name(small.module)
            if not isinstance(small.names, cst.ImportStar):
                found += [f"{module}.{dotted_name(alias.name)}" for alias in small.names]
    return found


def _is_import(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and all(
        isinstance(small, (cst.Import, cst.ImportFrom)) for small in statement.body)


def is_docstring(statement: cst.CSTNode) -> bool:
    """A statement that is only a string: a module's, class's or function's docstring where it comes first."""
    return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Expr)
            and isinstance(statement.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def _insertion_index(body: list[cst.CSTNode], package: str) -> tuple[int, bool]:
    """After the last import of the same package; else, for a standard-library package,
    after the leading standard-library imports or before the others (then it takes
    their blank lines above: True); else after the leading imports; else after the
    docstring."""
    last_same: Optional[int] = None
    last_leading_import: Optional[int] = None
    last_standard: Optional[int] = None
    first_other: Optional[int] = None
    for index, statement in enumerate(body):
        if _is_import(statement):
            last_leading_import = index
            packages = {name.split(".")[0] for name in _imported_modules(statement)}
            if package in packages:
                last_same = index
            if packages == {"__future__"}:  # stays first
                continue
            if packages and packages <= sys.stdlib_module_names:
                last_standard = index if first_other is None else last_standard
            elif first_other is None:
                first_other = index
        elif not (index == 0 and is_docstring(statement)):
            break
    if last_same is not None:
        return last_same + 1, False
    if package in sys.stdlib_module_names and last_standard is not None:
        return last_standard + 1, False
    if package in sys.stdlib_module_names and first_other is not None:
        return first_other, True
    if last_leading_import is not None:
        return last_leading_import + 1, False
    return (1 if body and is_docstring(body[0]) else 0), False


def _statement_for(qualified: str) -> cst.SimpleStatementLine:
    package, _, name = qualified.rpartition(".")
    source = f"from {package} import {name}\n" if package else f"import {qualified}\n"
    return cst.parse_statement(source)  # type: ignore[return-value]


def add_imports(module: cst.Module, qualified_names: Iterable[str]) -> cst.Module:
    """``module`` with an import for each name it does not import yet."""
    body = list(module.body)
    present = {name for statement in body for name in _imported_modules(statement)}
    for qualified in sorted(set(qualified_names) - present):
        index, first = _insertion_index(body, qualified.split(".")[0])
        statement = _statement_for(qualified)
        if first:  # before the first import: the blank lines above are its
            statement = statement.with_changes(leading_lines=body[index].leading_lines)
            body[index] = body[index].with_changes(leading_lines=[cst.EmptyLine()])
        body.insert(index, statement)
    return module.with_changes(body=body)


def add_after_imports(module: cst.Module, statement: cst.BaseStatement) -> cst.Module:
    """``module`` with a definition (a helper function a fix needs) after its docstring and
    leading imports, two blank lines on either side as PEP 8 has them."""
    body = list(module.body)
    index = 0
    while index < len(body) and (_is_import(body[index]) or (index == 0 and is_docstring(body[index]))):
        index += 1
    blank = cst.EmptyLine()
    if index < len(body):
        body[index] = body[index].with_changes(leading_lines=[blank, blank])
    return module.with_changes(body=[*body[:index], statement.with_changes(leading_lines=[blank, blank]),
                                     *body[index:]])
