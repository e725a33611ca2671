"""Converting the model classes of a file without its training code.

A models file (``models.py``, with ``init`` and the training loop in
``train.py``, or nowhere) converts class by class: each class the file's other
code does not use converts when it can, the others stay Linen with their reason
(``class_set.ClassSet``).  ``NAME = functools.partial(Class, field=...)`` keeps
working on the converted class and does not hold a class back.  Where Linen
classes stay, the Linen import stays and ``from flax import nnx`` joins it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Unconvertible

if TYPE_CHECKING:
    from nnxlint.conversion.file import Replacement, _Converter

_PARTIAL = ("functools.partial",)


class ModelsOnly:
    def __init__(self, converter: "_Converter") -> None:
        self.converter = converter
        self.classes = converter.classes

    def run(self, training_reason: str) -> dict[cst.CSTNode, "Replacement"]:
        converter = self.converter
        linen_classes = converter.linen_classes
        for name, line in self.used_outside().items():
            self.classes.keep_linen(name, f"the code at line {line} uses it and is not converted ({training_reason})")
        for name in linen_classes:
            if name not in self.classes.reasons:
                self.classes.try_convert(name)
        self.classes.close_over_uses()
        converted = [name for name in linen_classes if name not in self.classes.reasons]
        if not converted:
            raise Unconvertible(training_reason)
        new: dict[cst.CSTNode, Replacement] = {}
        variable_classes = converter._variable_classes()
        for statement in converter.module.body:
            if isinstance(statement, cst.ClassDef) and statement.name.value in converted:
                node = self.classes.converted[statement.name.value].node
                new[statement] = cst.FlattenSentinel([*variable_classes, node]) if variable_classes else node
                variable_classes = []
            elif not _is_import(statement):
                new[statement] = statement
        converter._convert_imports(new, keep_linen=len(converted) < len(linen_classes))
        return new

    def used_outside(self) -> dict[str, int]:
        """Linen classes of the file that its other code names (not through a
        keyword-only ``partial``), with the first line that does."""
        module = self.converter.module
        linen_classes = self.converter.linen_classes
        found: dict[str, int] = {}
        line = 1 + len(module.header)
        for statement in module.body:
            if not (isinstance(statement, cst.ClassDef) and statement.name.value in linen_classes) \
                    and not _is_import(statement) and not self._is_partial(statement):
                for name in _names_in(statement, set(linen_classes)):
                    found.setdefault(name, line + len(statement.leading_lines))
            line += module.code_for_node(statement).count("\n")
        return found

    def _is_partial(self, statement: cst.CSTNode) -> bool:
        """``ResNet18 = partial(ResNet, stage_sizes=[2, 2, 2, 2], block_cls=ResNetBlock)``."""
        if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                and isinstance(statement.body[0], cst.Assign)):
            return False
        value = statement.body[0].value
        return (isinstance(value, cst.Call) and self.converter.env.resolve(value.func) in _PARTIAL
                and len(value.args) >= 1 and value.args[0].keyword is None
                and all(arg.keyword is not None and not arg.star for arg in value.args[1:]))


def _is_import(statement: cst.CSTNode) -> bool:
    return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], (cst.Import, cst.ImportFrom)))


def _names_in(node: cst.CSTNode, candidates: set[str]) -> list[str]:
    found: list[str] = []

    class Names(cst.CSTVisitor):
        def visit_Name(self, name: cst.Name) -> None:
            if name.value in candidates and name.value not in found:
                found.append(name.value)

        def visit_Attribute(self, attribute: cst.Attribute) -> bool:
            attribute.value.visit(self)
            return False

    node.visit(Names())
    return found
