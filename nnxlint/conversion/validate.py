"""The last gate before a conversion becomes a fix: the converted file must
compile, name nothing it does not define or import (a name the Linen file had
is not lost: an import the conversion dropped, a class it removed), and give
none of nnxlint's own NNX1xx findings that the Linen file did not have.
Otherwise there is no fix, and the reason says which check failed.
"""

from __future__ import annotations

import builtins
import symtable
from collections import Counter
from typing import Iterable, Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible


class _Replacer(cst.CSTTransformer):
    def __init__(self, replacements: dict) -> None:
        super().__init__()
        self.replacements = {id(node): new for node, new in replacements.items()}

    def on_leave(self, original_node, updated_node):  # type: ignore[override]
        return self.replacements.get(id(original_node), updated_node)


def converted_text(module: cst.Module, replacements: dict) -> str:
    return converted_module(module, replacements).code


def converted_module(module: cst.Module, replacements: dict) -> cst.Module:
    top = {id(statement) for statement in module.body}
    if not all(id(node) in top for node in replacements):  # a change below the top level: a full pass
        return module.visit(_Replacer(replacements))
    body: list = []  # the usual case, top-level statements only: no pass over every node of the file
    for statement in module.body:
        new = replacements.get(statement, statement)
        if isinstance(new, cst.FlattenSentinel):
            body.extend(new.nodes)
        elif not isinstance(new, cst.RemovalSentinel):
            body.append(new)
    return module.with_changes(body=body)


def check_converted(module: cst.Module, replacements: dict, path: str) -> None:
    """Raises ``Unconvertible`` when the converted file would be broken."""
    converted = converted_module(module, replacements)
    after = converted.code
    try:
        compile(after, path, "exec", dont_inherit=True)
    except SyntaxError as error:
        raise Unconvertible(f"the converted file would not compile ({error.msg}, line {error.lineno}); "
                            "please report it") from None
    missing = undefined_names(after)
    missing = sorted(missing - undefined_names(module.code)) if missing else []  # the Linen file's own are not ours
    if missing:
        raise Unconvertible(f"the converted file would not import: `{missing[0]}` would be undefined")
    new_findings = _nnx1_findings(after, path, converted)
    new_findings = new_findings - _nnx1_findings(module.code, path) if new_findings else new_findings
    if new_findings:
        code, message = sorted(new_findings)[0]
        raise Unconvertible(f"the converted code would get {code} ({message})")


def undefined_names(text: str) -> set[str]:
    """Names read somewhere in ``text`` that neither the module nor the builtins define."""
    top = symtable.symtable(text, "<converted>", "exec")
    defined = {symbol.get_name() for symbol in top.get_symbols()
               if symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace()}
    if "*" in defined:  # a star import: anything may be defined
        return set()
    read = set(_globals_read(top))
    return {name for name in read if name not in defined and not hasattr(builtins, name)
            and name not in ("__file__", "__name__", "__doc__", "__spec__", "__builtins__")}


def _globals_read(table: symtable.SymbolTable) -> Iterable[str]:
    for symbol in table.get_symbols():
        if not symbol.is_referenced():
            continue
        if table.get_type() == "module" or symbol.is_global() or (
                table.get_type() == "class" and not symbol.is_assigned() and not symbol.is_local()):
            yield symbol.get_name()
    for child in table.get_children():
        yield from _globals_read(child)


def _nnx1_findings(text: str, path: str, module: Optional[cst.Module] = None) -> set[tuple[str, str]]:
    """The NNX1xx findings of ``text``; ``module``: its tree as the conversion built it,
    on which the rules run first: where they report nothing, ``text`` is not parsed again."""
    from nnxlint.engine import check_source, reports_on  # the engine runs the rules; imported when a fix is built
    from nnxlint.registry import all_rules

    rules = [rule for code, rule in sorted(all_rules().items()) if code.startswith("NNX1")]
    if module is not None and not reports_on(module, path, rules):
        return set()
    found = Counter((finding.code, finding.message) for finding in check_source(text, path, rules).findings)
    return set(found)
