"""Checking and fixing one source text: parse once, run every rule in one traversal."""

from __future__ import annotations

import ast
import functools
import io
import re
import sys
import tokenize
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import libcst as cst

from nnxlint.context import FileContext, RuleCrash, Traversal
from nnxlint.findings import SOURCE_ERROR_CODE, SOURCE_ERROR_NAME, Applicability, Finding, FixSummary
from nnxlint.imports import add_imports
from nnxlint.positions import Positions
from nnxlint.rule import FileEdit, Fix, Report, Rule
from nnxlint.syntax import parse_failure
from nnxlint.textio import python_lines
from nnxlint import tier, timings
from nnxlint.tier import ImportSummary

MAX_FIX_PASSES = 10
RECURSION_LIMIT = 30_000

_SKIP_FILE = re.compile(r"^[ \t]*#[ \t]*nnxlint:[ \t]*skip-file\b", re.MULTILINE)
_HAS_NOQA = re.compile("noqa", re.IGNORECASE)
_NOQA = re.compile(r"#[ \t]*noqa(?::[ \t]*(?P<codes>[A-Za-z]+[0-9]+(?:[ \t,]+[A-Za-z]+[0-9]+)*))?", re.IGNORECASE)


class SourceErrorRule(Rule):
    """## What it does
    Reports a file that nnxlint cannot check: it does not parse, is not valid
    in its declared encoding (UTF-8 by default), or cannot be read.

    ## Why is this bad?
    Nothing in such a file can be checked, so a migration gate that skipped it
    silently would pass code it never saw.

    ## Example
    ```python
    def f(:
        pass
    ```

    ## Use instead
    Fix the syntax error or the encoding (add a `# -*- coding: ... -*-`
    declaration or convert the file to UTF-8).

    ## Fix safety
    No fix: nnxlint never writes to a file it cannot parse.
    """

    code = SOURCE_ERROR_CODE
    name = SOURCE_ERROR_NAME
    summary = "File cannot be read, decoded or parsed"
    triggers = ()


@dataclass
class CheckResult:
    """The outcome for one source text."""

    findings: list[Finding] = field(default_factory=list)
    crashes: list[RuleCrash] = field(default_factory=list)
    fixed_text: Optional[str] = None  # set when fixes changed the text
    fixes_applied: int = 0
    dropped_fixes: list[str] = field(default_factory=list)  # fixes whose output did not parse or compile
    drop_reasons: dict[str, str] = field(default_factory=dict)  # description -> why it was dropped
    # project-level fixes: the new text of other files, written with this one or not at all
    other_files: dict[str, FileEdit] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what those fixes could not do in other files


def is_skipped(text: str) -> bool:
    return _SKIP_FILE.search(text) is not None


def active_rules(text: str, rules: Sequence[type[Rule]], imports: Optional[ImportSummary] = None,
                 linked: bool = False) -> Optional[list[type[Rule]]]:
    """The rules that can report in ``text``, by the cheap tier (nnxlint/tier.py); None
    when the text is not Python."""
    return tier.rules_for(text, rules, imports, linked)


@dataclass
class _Pass:
    module: cst.Module
    reports: list[Report]
    crashes: list[RuleCrash]
    positions: Optional[Positions]


def _run_rules(module: cst.Module, path: str, rules: Sequence[type[Rule]], project=None,
               text: Optional[str] = None, describe_fixes: bool = True) -> _Pass:
    context = FileContext(module, path, project, describe_fixes)
    instances = [rule(context) for rule in rules]
    traversal = Traversal(context, instances)
    traversal.run(module)
    reports = [report for rule in instances for report in rule.reports]
    # positions cost code generation: only for files with findings, and given the text
    # the module was parsed from, only of the top-level statements that hold them
    positions = Positions(module, text, [report.node for report in reports]) if reports else None
    return _Pass(module, reports, traversal.crashes, positions)


def _skip_validation(node: cst.CSTNode) -> None:
    pass


def parse_module(text: str) -> cst.Module:
    """``libcst.parse_module`` without validating each node as the parser builds it.

    Every node's ``__post_init__`` checks the invariants of a hand-built node (a
    third of the parse); the native parser only builds nodes from source it
    accepted, so the checks cannot fail there (LibCST's own comment in
    ``CSTNode.__post_init__`` says as much).  Nodes that rules and fixes build later
    are validated as usual."""
    validate = cst.CSTNode.__post_init__
    cst.CSTNode.__post_init__ = _skip_validation  # type: ignore[method-assign]
    try:
        return cst.parse_module(text)
    finally:
        cst.CSTNode.__post_init__ = validate  # type: ignore[method-assign]


def _noqa_codes(line_text: str) -> Optional[set[str]]:
    """None when the line has no noqa comment; an empty set for a bare ``# noqa``."""
    match = _NOQA.search(line_text)
    if match is None:
        return None
    codes = match.group("codes")
    return {code.upper() for code in re.split(r"[ \t,]+", codes.strip())} if codes else set()


def noqa_comments(text: str) -> dict[int, set[str]]:
    """The noqa comments of ``text`` by line (Python's lines): only real comments count,
    never ``# noqa`` inside a string.  An empty set is a bare ``# noqa``."""
    if not _HAS_NOQA.search(text):
        return {}
    found: dict[int, set[str]] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text, newline="").readline):
            if token.type == tokenize.COMMENT:
                codes = _noqa_codes(token.string)
                if codes is not None:
                    found[token.start[0]] = codes
    except (tokenize.TokenError, SyntaxError):  # LibCST parsed it: a tokenizer corner case; go by lines
        found = {number: codes for number, line in enumerate(python_lines(text), start=1)
                 if (codes := _noqa_codes(line)) is not None}
    return found


def _suppressed(code: str, noqa: dict[int, set[str]], first: int, last: int) -> bool:
    for number in {first, last}:
        codes = noqa.get(number)
        if codes is not None and (not codes or code in codes):
            return True
    return False


def _findings(path: str, current: _Pass, noqa: dict[int, set[str]]) -> list[tuple[Finding, Report]]:
    found: list[tuple[Finding, Report]] = []
    if current.positions is None:
        return found
    for report in current.reports:
        position = current.positions[report.node]
        start, end = position.start, position.end
        if _suppressed(report.rule.code, noqa, start.line, end.line):
            continue
        summary = FixSummary(report.fix.applicability, report.fix.description) if report.fix else None
        found.append((Finding(path, report.rule.code, report.rule.name, report.message, start.line,
                              start.column + 1, end.line, end.column + 1, summary,
                              fix_deferred=report.fix_deferred), report))
    found.sort(key=lambda pair: (pair[0].line, pair[0].column, pair[0].code))
    return found


class _Replacer(cst.CSTTransformer):
    def __init__(self, replacements: dict[int, object]) -> None:
        super().__init__()
        self.replacements = replacements

    def on_leave(self, original_node, updated_node):  # type: ignore[override]
        return self.replacements.get(id(original_node), updated_node)


def _span(fix: Fix, positions: Positions) -> Optional[list[tuple]]:
    spans = []
    for node in fix.edits:
        position = positions.get(node)
        if position is None:
            return None
        spans.append(((position.start.line, position.start.column), (position.end.line, position.end.column)))
    return spans


def _overlaps(spans: list[tuple], taken: list[tuple]) -> bool:
    return any(start < other_end and other_start < end
               for start, end in spans for other_start, other_end in taken)


def _compile_error(code: str) -> Optional[str]:
    """Why CPython refuses to compile ``code`` (LibCST's re-parse accepts repeated
    keywords and duplicate parameters), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(code, "<nnxlint fix>", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as error:
        return f"{error.msg} (line {error.lineno})"
    except (ValueError, RecursionError, MemoryError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _apply(module: cst.Module, fixes: Sequence[Fix], before: str) -> tuple[Optional[str], str]:
    """The new source with ``fixes`` applied to ``module`` (whose text is ``before``),
    or None and the reason when it would not parse or not compile."""
    replacements: dict[int, object] = {}
    imports: set[str] = set()
    for fix in fixes:
        replacements.update({id(node): new for node, new in fix.edits.items()})
        imports |= fix.imports
    try:
        new_module = module.visit(_Replacer(replacements))
        new_module = add_imports(new_module, imports)
        code = new_module.code
        cst.parse_module(code)
    except cst.ParserSyntaxError:
        return None, "its output did not parse"
    except RecursionError:
        return None, "the file is nested too deeply to rewrite"
    refused = _compile_error(code)
    if refused is not None and _compile_error(before) is None:  # the fix broke it, not the user
        return None, f"its output would not compile: {refused}"
    return code, ""


def _other_files_refusal(fix: Fix, path: str, pending: dict[str, FileEdit]) -> Optional[str]:
    """Why a project-level fix cannot be applied with the fixes taken so far: one of its
    other files would not parse or compile, or another fix already rewrites it."""
    for edit in fix.project_edits.edits:
        if edit.path == path or edit.path in pending:
            return f"another fix already rewrites {edit.path} (run --fix again)"
        try:
            cst.parse_module(edit.after)
        except cst.ParserSyntaxError:
            return f"its edit of {edit.path} did not parse"
        except RecursionError:
            return f"{edit.path} is nested too deeply to rewrite"
        refused = _compile_error(edit.after)
        if refused is not None and _compile_error(edit.before) is None:
            return f"its edit of {edit.path} would not compile: {refused}"
    return None


def _choose_fixes(candidates: Iterable[Report], positions: Positions) -> list[tuple[Fix, int]]:
    """Fixes that touch disjoint parts of the file, each with the number of findings
    it resolves (one fix may serve several); the others wait for the next pass."""
    chosen: dict[int, list] = {}
    taken: list[tuple] = []
    for report in candidates:
        fix = report.fix
        assert fix is not None
        if id(fix) in chosen:
            chosen[id(fix)][1] += 1
            continue
        spans = _span(fix, positions)
        if spans is None or _overlaps(spans, taken):
            continue
        chosen[id(fix)] = [fix, 1]
        taken.extend(spans)
    return [(fix, count) for fix, count in chosen.values()]


def _deep_recursion(function):
    """LibCST's code generation and visitors recurse once per nesting level (an
    ``if`` with a thousand ``elif`` is a thousand levels): allow what CPython itself
    compiles.  Python 3.11+ does not use the C stack for these calls."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, RECURSION_LIMIT))
        try:
            return function(*args, **kwargs)
        finally:
            sys.setrecursionlimit(limit)
    return wrapper


@_deep_recursion
def reports_on(module: cst.Module, path: str, rules: Sequence[type[Rule]]) -> list[Report]:
    """What ``rules`` report on a module as it is, built rather than parsed (no tier, no
    noqa): a quick test that a converted file leaves them nothing to report."""
    return _run_rules(module, path, rules).reports


@_deep_recursion
def check_source(text: str, path: str, rules: Sequence[type[Rule]],
                 fix_level: Optional[Applicability] = None, project=None, *,
                 imports: Optional[ImportSummary] = None, linked: bool = False, full: bool = False,
                 describe_fixes: bool = True) -> CheckResult:
    """Check ``text``; with ``fix_level``, also apply fixes up to that applicability.
    ``describe_fixes`` False (plain ``check``, nothing fixed) lets rules leave costly fixes
    unworked (``Finding.fix_deferred``).
    ``project`` (a ``nnxlint.project.ProjectView``) lets rules see the other files.
    The cheap tier picks the rules that can report (``imports``: the file's import
    summary when the project index has it; ``linked``: other files can tell its rules
    about names); ``full`` runs every rule on every file instead (the reference the
    tier is tested against)."""
    result = CheckResult()
    if is_skipped(text) or not rules:
        return result
    allowed = {"safe"} if fix_level == "safe" else {"safe", "unsafe"} if fix_level == "unsafe" else set()
    current_text = text
    dropped: set[str] = set()
    for _ in range(MAX_FIX_PASSES):
        # each pass asks again: a fix (a whole Linen conversion) can give other rules work
        with timings.stage("cheap tier"):
            running = rules if full else active_rules(current_text, rules,
                                                      imports if current_text is text else None, linked)
        if running == []:  # Python, and no rule can report in it
            result.findings, result.crashes = [], []
            break
        try:
            with timings.stage("LibCST parse"):
                module = parse_module(current_text)
        except (cst.ParserSyntaxError, RecursionError, MemoryError) as error:
            result.findings = [parse_failure(current_text, path, error)]
            return result
        with timings.stage("rules"):
            current = _run_rules(module, path, running or rules, project, current_text,
                                 describe_fixes or fix_level is not None)
        with timings.stage("positions and findings"):
            pairs = _findings(path, current, noqa_comments(current_text) if current.reports else {})
        result.crashes = current.crashes
        result.findings = [finding for finding, _ in pairs]
        fixable = [report for finding, report in pairs
                   if report.fix is not None and report.fix.applicability in allowed
                   and report.fix.description not in dropped]
        if not fixable:
            break
        assert current.positions is not None  # there are findings
        chosen = _choose_fixes(fixable, current.positions)
        taken: dict[str, FileEdit] = dict(result.other_files)
        kept = []
        for fix, count in chosen:  # a project-level fix: every file it writes, or none
            refused = _other_files_refusal(fix, path, taken) if fix.other_files is not None else None
            if refused is not None:
                dropped.add(fix.description)
                result.drop_reasons[fix.description] = refused
                continue
            if fix.other_files is not None:
                taken.update((edit.path, edit) for edit in fix.project_edits.edits)
            kept.append((fix, count))
        chosen = kept
        if not chosen:  # the others wait for the next pass
            continue
        new_text, _ = _apply(module, [fix for fix, _ in chosen], current_text)
        if new_text is None:  # find the culprits one by one and drop them
            new_text, applied = current_text, []
            for fix, count in chosen:
                attempt, reason = _apply(module, [f for f, _ in applied] + [fix], current_text)
                if attempt is None:
                    dropped.add(fix.description)
                    result.drop_reasons[fix.description] = reason
                else:
                    applied.append((fix, count))
                    new_text = attempt
            chosen = applied
        if not chosen or new_text == current_text:
            break
        result.fixes_applied += sum(count for _, count in chosen)
        for fix, _ in chosen:
            if fix.other_files is not None:
                result.other_files.update((edit.path, edit) for edit in fix.project_edits.edits)
                result.notes += fix.project_edits.notes
        current_text = new_text
    if current_text != text:
        result.fixed_text = current_text
    result.dropped_fixes = sorted(dropped)
    return result


def unknown_noqa_codes(text: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, code) for every nnxlint-style code in a noqa comment that no rule has."""
    unknown = []
    for number, codes in sorted(noqa_comments(text).items()):
        for code in sorted(codes):
            if code.startswith("NNX") and code not in known:
                unknown.append((number, code))
    return unknown
