"""Where converted training code switches the model between train and eval mode.

A Linen ``__call__`` that takes a train/eval argument (``train``, ``deterministic``)
gets it at each ``apply``; the NNX model is switched by ``model.train()`` /
``model.eval()`` instead, written before each statement whose ``apply`` calls
(directly, or through the local functions it calls) change the mode
(``ModeSwitches``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Union

import libcst as cst

from nnxlint.conversion.base import Unconvertible

if TYPE_CHECKING:
    from nnxlint.conversion.training import RoleAnalysis, TrainingConverter, TrainingPlan

FunctionNode = Union[cst.FunctionDef, cst.Module]


class ModeSwitches:
    """The ``model.train()`` / ``model.eval()`` calls, by statement (``before``)."""

    def __init__(self, analysis: "RoleAnalysis", plan: "TrainingPlan") -> None:
        self.analysis = analysis
        self.site = plan.site
        self.mode = plan.converted.mode
        self.constant_flags = plan.converted.constant_flags
        self.before: dict[int, str] = {}  # id(original statement) -> "train" / "eval"
        self._function_modes: dict[str, set[str]] = {}  # local function -> modes it runs the model in
        self._walked: set[str] = set()  # mixed-mode functions already switched inside

    def apply_mode(self, call: cst.Call) -> Optional[str]:
        """"train" or "eval" for an ``apply`` call of a model with a mode argument."""
        mode = self.mode
        if mode is None:
            return None
        for index, arg in enumerate(call.args[1:]):
            if (arg.keyword is not None and arg.keyword.value == mode.name) or (arg.keyword is None and index == mode.index):
                value = _bool_literal(arg.value)
                if value is None:
                    raise Unconvertible(f"`{mode.name}=` must be True or False at each `apply`")
                return "eval" if value == mode.eval_value else "train"
        if mode.default is None:
            raise Unconvertible(f"`apply` without `{mode.name}`")
        return "eval" if mode.default == mode.eval_value else "train"

    def plan(self, converter: "TrainingConverter") -> None:
        """Where ``model.train()`` / ``model.eval()`` go: before each statement whose
        ``apply`` calls (directly or through the local functions it calls) switch
        the mode.  The walk starts at the module body and at every function that
        nothing in the file calls (``train()``, called by its user), and descends
        into loops and into the functions that both train and evaluate."""
        if self.mode is None:
            return
        analysis = self.analysis
        own: dict[str, set[str]] = {name: set() for name in analysis.functions}
        calls: dict[str, set[str]] = {name: set() for name in analysis.functions}
        definitions = {id(function.node.name) for function in analysis.functions.values()}  # ``def f``: not a use
        outer = self

        class Collect(References):
            def visit_Call(inner, node: cst.Call) -> None:
                owner = analysis.owners.get(id(node))
                if owner is not None and analysis.is_apply(node):
                    own[owner.node.name.value].add(outer.apply_mode(node))  # type: ignore[arg-type]

            def visit_Name(inner, node: cst.Name) -> None:
                name = analysis.aliases.get(node.value, node.value)
                owner = analysis.owners.get(id(node))
                if name in analysis.functions and id(node) not in definitions and owner is not None:
                    calls[owner.node.name.value].add(name)

        converter.module.visit(Collect())
        modes = {name: set(found) for name, found in own.items()}
        for _ in range(len(modes)):
            for name in modes:
                for callee in calls[name]:
                    modes[name] |= modes.get(callee, set())
        self._function_modes = modes
        builder = converter.parents.get(id(self.site.statement))
        roots: list[FunctionNode] = [converter.module] + [
            analysis.functions[name].node for name in sorted(analysis.entry_points())]
        for root in roots:
            # NNX layers start in train mode where the model is built; elsewhere the mode is unknown
            self._walk(statements_of(root), "train" if root is builder else None)
        if self.before and self.constant_flags:
            raise Unconvertible("a layer has a constant `deterministic`/`use_running_average`, which "
                                "`model.train()`/`model.eval()` would override")

    def _statement_modes(self, statement: cst.CSTNode) -> tuple[set[str], set[str]]:
        """The modes a statement runs the model in, and the local functions it calls."""
        found: set[str] = set()
        called: set[str] = set()
        outer = self

        class Collect(References):
            def visit_FunctionDef(inner, node: cst.FunctionDef) -> bool:
                return False

            def visit_Call(inner, node: cst.Call) -> None:
                if outer.analysis.is_apply(node):
                    found.add(outer.apply_mode(node))  # type: ignore[arg-type]

            def visit_Name(inner, node: cst.Name) -> None:
                name = outer.analysis.aliases.get(node.value, node.value)
                if name in outer._function_modes:
                    called.add(name)
                    found.update(outer._function_modes[name])

        statement.visit(Collect())
        return found, called

    def _walk(self, body: Sequence[cst.BaseStatement], current: Optional[str]) -> Optional[str]:
        for statement in body:
            if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
                continue
            modes, called = self._statement_modes(statement)
            if len(modes) == 1:
                mode = next(iter(modes))
                if mode != current:
                    self.before[id(statement)] = mode
                current = mode
            elif len(modes) > 1:
                current = self._walk_inside(statement, called, current)
        return current

    def _walk_inside(self, statement: cst.BaseStatement, called: set[str], current: Optional[str]) -> Optional[str]:
        """A statement that both trains and evaluates: switch inside it."""
        if isinstance(statement, (cst.For, cst.While)) and statement.orelse is None:
            # the next iteration starts in the mode the body ended in
            return self._walk(statement.body.body, None)  # type: ignore[attr-defined]
        if isinstance(statement, cst.If) and statement.orelse is None:
            return self._walk(statement.body.body, current)  # type: ignore[attr-defined]
        mixed = [name for name in called if len(self._function_modes[name]) > 1]
        if isinstance(statement, cst.SimpleStatementLine) and len(mixed) == 1 and mixed[0] not in self._walked:
            self._walked.add(mixed[0])
            return self._walk(statements_of(self.analysis.functions[mixed[0]].node), current)
        raise Unconvertible("one statement trains and evaluates: split it to convert")


def statements_of(owner: Optional[FunctionNode]) -> Sequence[cst.BaseStatement]:
    """The statements of a function's body, or of the module."""
    if isinstance(owner, cst.Module):
        return owner.body
    if isinstance(owner, cst.FunctionDef) and isinstance(owner.body, cst.IndentedBlock):
        return owner.body.body
    return ()


def _bool_literal(node: cst.BaseExpression) -> Optional[bool]:
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return node.value == "True"
    return None


class References(cst.CSTVisitor):
    """Visits the names code reads: not keyword or attribute names, nor the
    names inside classes (the Linen modules, converted on their own)."""

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        node.value.visit(self)
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)
        return False

    @staticmethod
    def count_reads(node: cst.CSTNode, name: str) -> int:
        """How often ``name`` is read in ``node`` (assignment targets excluded)."""
        count = 0

        class Count(References):
            def visit_AssignTarget(inner, target: cst.AssignTarget) -> bool:
                return False

            def visit_Name(inner, found: cst.Name) -> None:
                nonlocal count
                count += found.value == name

        node.visit(Count())
        return count
