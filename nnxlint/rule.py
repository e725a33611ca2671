"""The rule interface: what a rule module defines and what the engine gives it.

A rule is a class with a ``code``, a kebab-case ``name``, a one-line ``summary``,
its documentation in the class docstring (Markdown, with the sections listed in
``DOC_SECTIONS``), examples that the test suite runs, and ``visit_<Node>`` /
``leave_<Node>`` methods that the engine calls during its single traversal of the
file.  A rule reports with ``self.report(node, message, fix=...)``.
"""

from __future__ import annotations

import inspect
from functools import cached_property
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping, Optional, Sequence, Union

import libcst as cst

from nnxlint.findings import Applicability

if TYPE_CHECKING:
    from nnxlint.context import FileContext

DOC_SECTIONS = ("## What it does", "## Why is this bad?", "## Example", "## Use instead", "## Fix safety")

Replacement = Union[cst.CSTNode, cst.FlattenSentinel, cst.RemovalSentinel]


@dataclass(frozen=True)
class Fix:
    """An edit that resolves a finding: node replacements plus imports to add.

    ``replacements`` maps nodes of the parsed module (by identity) to their new
    version; it may also be a function returning that mapping, for fixes that are
    costly to build (a whole-class conversion): the engine calls it only when the
    fix is applied, so ``nnxlint check`` without ``--fix`` never pays for it.
    ``imports`` names modules the new code refers to, such as ``"flax.nnx"``,
    which the engine imports when the file does not already.
    """

    description: str
    applicability: Applicability
    replacements: Union[Mapping[cst.CSTNode, Replacement], Callable[[], Mapping[cst.CSTNode, Replacement]]]
    imports: frozenset[str] = frozenset()
    # a project-level fix also rewrites other files of the run (``OtherFiles``, or a
    # function returning it, called only when the fix is applied): all files or none
    other_files: Union["OtherFiles", Callable[[], "OtherFiles"], None] = None

    @cached_property
    def edits(self) -> Mapping[cst.CSTNode, Replacement]:
        return self.replacements() if callable(self.replacements) else self.replacements

    @cached_property
    def project_edits(self) -> "OtherFiles":
        found = self.other_files() if callable(self.other_files) else self.other_files
        return found if found is not None else OtherFiles()


@dataclass(frozen=True)
class FileEdit:
    """The new text of another file of the run.  ``before`` is the text the edit was
    made from: it is written only while the file still has that text."""

    path: str
    before: str
    after: str


@dataclass(frozen=True)
class OtherFiles:
    """What a project-level fix does beyond the file it is reported in: the other
    files it rewrites, and notes on what it could not do there (shown as warnings)."""

    edits: tuple[FileEdit, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Valid:
    """Code on which the rule must report nothing."""

    code: str


@dataclass(frozen=True)
class Invalid:
    """Code on which the rule must report ``count`` findings.

    ``fixed`` is the exact output of ``--fix`` (with ``--unsafe-fixes`` when
    ``unsafe``); None means the rule offers no fix for this code.
    ``message`` is a substring every finding's message must contain.
    """

    code: str
    fixed: Optional[str] = None
    unsafe: bool = False
    count: int = 1
    message: Optional[str] = None


@dataclass(frozen=True)
class Needs:
    """One way a file can give a rule something to report, as the cheap tier sees it.

    ``uses``: the file refers, through its imports, to a name at or under one of
    these qualified names (``"flax.linen"`` matches ``nn.Dense`` after ``import
    flax.linen as nn``; ``"flax.nnx.Optimizer"`` only that class).  ``words``: the
    text contains one of these (a name, attribute or keyword the rule looks for).
    An empty field asks nothing.  The declaration must be necessary, never merely
    likely: a file that satisfies none of a rule's ``triggers`` must be one where
    the rule reports nothing (tests/test_tier.py checks it on every rule example
    and fixture).  A rule that learns about names from other files of the project
    is covered: for a file linked to other files through imports, the tier also
    opens the ``uses`` (and ``refers``) that those files import.  ``imports_only``:
    the rule learns about names of other files only through the file's own imports
    (re-exports), so only the files it imports, at any depth, count (not the files
    that import it).
    ``names``: the rule reports only at a name it resolves to one of these (the
    last part of the qualified name: ``"jit"`` for ``jax.jit`` and ``nnx.jit``);
    the text contains one of them, or a file it imports re-exports it under
    another name (then one of the names that file imports contains it).
    ``refers``: the rule reports only where a Name/attribute chain (or a string
    annotation) resolves to a name at or under one of these, through the file's own
    imports or a re-export of a linked file: sharper than ``uses`` (an import the
    file never reads, a name used elsewhere in it, do not count).  ``attributes``:
    the rule reports only where the file reads or writes an attribute of one of these
    names (``x.value``).  ``calls``: the rule reports only at a call whose callee
    resolves (as ``refers``) to one of these qualified names; ``constructs``: ... or a
    call, by its name, of a class of the file whose ``__init__`` takes one of these
    parameters (or any call, in a file linked to others: the class can be theirs);
    ``missing_keywords``: only calls without these keywords and without starred
    arguments count.  ``stores_containers``: the rule reports only where the file
    assigns an attribute a container (see ``nnxlint.tier.ImportSummary.containers``).
    ``imports``: the rule reports only in a file with an import statement (at any
    depth) that names one of these exactly, or, for one ending in ``.``, a name under
    it (``"flax.nnx."``: ``from flax.nnx import jit``); ``import a.b`` names ``a`` too.
    All are answered from the ``ast`` walk of the project index.
    """

    uses: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    imports_only: bool = False
    names: tuple[str, ...] = ()
    refers: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    constructs: tuple[str, ...] = ()
    missing_keywords: tuple[str, ...] = ()
    stores_containers: bool = False
    imports: tuple[str, ...] = ()


@dataclass
class Report:
    """A finding as a rule raised it, before positions are known."""

    rule: "Rule"
    node: cst.CSTNode
    message: str
    fix: Optional[Fix] = None
    fix_deferred: bool = False  # see nnxlint.findings.Finding.fix_deferred


class Rule:
    code: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]
    # The best applicability this rule's fixes can have: None (never fixes),
    # "safe" or "unsafe".  Shown by ``nnxlint rules``.
    fixable: ClassVar[Optional[Applicability]] = None
    # What a file must contain for this rule to report there (any one of them):
    # the cheap tier (nnxlint/tier.py) runs the rule only on such files.  A plain
    # string means the text contains it (``Needs(words=(string,))``).
    triggers: ClassVar[Sequence[Union[str, "Needs"]]] = ("flax",)
    valid: ClassVar[Sequence[Valid]] = ()
    invalid: ClassVar[Sequence[Invalid]] = ()

    def __init__(self, context: "FileContext") -> None:
        self.context = context
        self.reports: list[Report] = []

    def report(self, node: cst.CSTNode, message: str, fix: Optional[Fix] = None, *,
               fix_deferred: bool = False) -> None:
        """``fix_deferred``: the rule did not try to work out a fix, because it is costly and
        the run neither applies nor shows fixes (``FileContext.describe_fixes``)."""
        self.reports.append(Report(self, node, message, fix, fix_deferred))

    @classmethod
    def documentation(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

