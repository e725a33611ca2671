"""Checking many files: per-file work, optionally in parallel processes."""

from __future__ import annotations

import difflib
import fnmatch
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence, Union

from nnxlint import output, tier, timings
from nnxlint import project
from nnxlint.cache import CACHE_DIRECTORY, Cache, content_digest
from nnxlint.project import ProjectIndex, ProjectView
from nnxlint.findings import Finding, source_error
from nnxlint.notebook import NOTEBOOK_SUFFIX, Notebook, NotebookError
from nnxlint.registry import all_rules
from nnxlint.findings import Applicability
from nnxlint import workers
from nnxlint.textio import (BOM, FileTooLarge, Source, SourceError, decode, python_lines, read_regular, resolved,
                            write_all_atomic, write_atomic)

if TYPE_CHECKING:
    from nnxlint.config import Settings

PARALLEL_THRESHOLD = 32  # below this many files a process pool costs more than it saves
# LibCST needs ~80 s and 4 GB for 5 MB of Python, and its native parser aborts the
# process on 50 MB: nobody's hand-written model code comes near this.
DEFAULT_MAX_FILE_SIZE = 2_000_000
FILE_TIME_LIMIT = 300.0


@dataclass(frozen=True)
class Job:
    """What every file of a run shares."""

    codes: frozenset[str]
    per_file_ignores: tuple[tuple[str, frozenset[str]], ...]
    root: str
    fix_level: Optional[Applicability] = None
    write: bool = False  # write fixes back (``--fix``); otherwise only diff them
    diff: bool = False
    cache_dir: Optional[str] = None  # None: no cache (``--no-cache``)
    max_file_size: Optional[int] = DEFAULT_MAX_FILE_SIZE  # bytes; larger files get NNX000
    time_limit: float = FILE_TIME_LIMIT  # seconds per file (in isolated workers); then NNX000
    # work out every fix and why a finding has none; False (plain ``check``): costly fixes
    # (NNX002's conversion) are left out, their findings marked ``fix_deferred``
    describe_fixes: bool = True

    def codes_for(self, path: str) -> frozenset[str]:
        """The codes enabled for ``path``: the run's codes less its per-file ignores."""
        return self.codes - _ignored_here(path, self)

    @property
    def cache_mode(self) -> str:
        """What a file's findings depend on besides its codes: a result of plain ``check``
        (fixes deferred) is never served to a run that works fixes out, nor the reverse."""
        return f"{self.fix_level or ''}{'' if self.describe_fixes else ':fixes deferred'}"


@dataclass
class FileOutcome:
    path: str
    findings: list[Finding] = field(default_factory=list)
    fixes_applied: int = 0
    diff: str = ""
    errors: list[str] = field(default_factory=list)  # rule crashes, unknown noqa codes: exit 2
    warnings: list[str] = field(default_factory=list)  # write failures, dropped fixes
    digest: str = ""  # of the bytes checked, for the cache
    depends: Optional[dict] = None  # what the findings depended on in other files (nnxlint.project)
    project_fix: Optional["ProjectFix"] = None  # fixes that also rewrite other files: applied by the run
    timings: dict[str, float] = field(default_factory=dict)  # CPU seconds per stage (nnxlint.timings)


@dataclass
class ProjectFix:
    """A file's fixes that rewrite other files of the run too.  The run applies them
    after every file was checked, all files or none (``_apply_project_fixes``)."""

    own: bytes  # the file's fixed content
    edits: list  # nnxlint.rule.FileEdit of the other files


def find_files(settings: "Settings", paths: Sequence[str], force_exclude: bool = False) -> list[str]:
    """The files to check under ``paths``, as the configuration selects them; unreadable
    directories are skipped with a warning on stderr."""
    from nnxlint.discovery import FileFinder, SOURCE_SUFFIXES

    def warn(message: str) -> None:
        print(f"nnxlint: warning: {message}", file=sys.stderr)

    finder = FileFinder(settings.root, [*settings.exclude, *settings.extend_exclude], settings.respect_gitignore,
                        SOURCE_SUFFIXES, warn)
    return [str(path) for path in finder.files(paths, force_exclude)]


def job_for(settings: "Settings", codes: Iterable[str], fix_level: Optional[Applicability] = None,
            write: bool = False, diff: bool = False, use_cache: bool = True, describe_fixes: bool = True) -> Job:
    """The run's Job; raises ConfigError for unknown codes in per-file-ignores."""
    per_file = tuple((pattern, frozenset(codes)) for pattern, codes in settings.per_file_ignore_codes())
    cache_dir = str(settings.root / (settings.cache_dir or CACHE_DIRECTORY)) if use_cache else None
    return Job(frozenset(codes), per_file, str(settings.root), fix_level, write, diff, cache_dir,
               settings.max_file_size if settings.max_file_size is not None else DEFAULT_MAX_FILE_SIZE,
               describe_fixes=describe_fixes)


def _ignored_here(path: str, job: Job) -> frozenset[str]:
    if not job.per_file_ignores:  # no path to resolve (a realpath per file costs on a warm run)
        return frozenset()
    try:
        relative = resolved(path).relative_to(job.root).as_posix()
    except ValueError:
        relative = Path(path).as_posix()
    ignored: set[str] = set()
    for pattern, codes in job.per_file_ignores:
        if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(Path(path).name, pattern):
            ignored |= codes
    return frozenset(ignored)


class _PythonFile:
    """A .py/.pyi file seen through the interface notebooks also offer."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.text = self.python = source.text

    def locate(self, finding: Finding) -> Finding:
        return finding

    def with_python(self, fixed: str) -> Optional[str]:
        return fixed

    def encode(self, text: str) -> bytes:
        return self.source.encode(text)


class _NotebookFile(Notebook):
    def __init__(self, text: str, bom: bool) -> None:
        super().__init__(text)
        self.bom = bom

    def encode(self, text: str) -> bytes:
        return (BOM if self.bom else b"") + text.encode("utf-8")


def load_document(path: str, max_size: Optional[int] = None) -> tuple[Union[_PythonFile, _NotebookFile], str]:
    """The file as something to check, and the digest of its bytes."""
    try:
        data = read_regular(path, max_size)
    except OSError as error:
        raise SourceError(f"cannot read file: {error.strerror or error}") from None
    except FileTooLarge as error:
        raise SourceError(f"file too large to check ({error.size:,} bytes; the limit, max-file-size, "
                          f"is {max_size:,})") from None
    digest = content_digest(data)
    if not path.endswith(NOTEBOOK_SUFFIX):
        return _PythonFile(decode(data)), digest
    try:
        return _NotebookFile(data.decode("utf-8-sig"), data.startswith(BOM)), digest
    except UnicodeDecodeError:
        raise SourceError("notebook is not valid UTF-8") from None
    except NotebookError as error:
        raise SourceError(str(error)) from None


def check_file(path: str, job: Job) -> FileOutcome:
    with workers.collecting_once(), timings.stage("fixes and the rest"):
        outcome = _check_file(path, job)  # "the rest": what the inner stages leave (fixes, notebooks, noqa)
    outcome.timings = timings.take()  # back to the main process with the outcome
    return outcome


def _check_file(path: str, job: Job) -> FileOutcome:
    outcome = FileOutcome(path)
    try:
        with timings.stage("reading"):
            document, outcome.digest = load_document(path, job.max_file_size)
    except SourceError as error:
        outcome.findings.append(source_error(path, str(error)))
        return outcome
    with timings.stage("importing LibCST"):
        from nnxlint.engine import check_source, unknown_noqa_codes  # the parser: only on a cache miss

    known = all_rules()
    rules = [known[code] for code in sorted(job.codes_for(path))]
    index = _project()
    view = ProjectView(index, path) if index is not None else None
    imports, linked = _tier_inputs(path, document.python, outcome.digest, view)
    result = check_source(document.python, path, rules, job.fix_level, view, imports=imports, linked=linked,
                          full=os.environ.get(tier.FULL_ENVIRONMENT) == "1", describe_fixes=job.describe_fixes)
    outcome.depends = view.dependencies() if view is not None else None
    if "noqa" in document.python:
        for line, code in unknown_noqa_codes(document.python, set(known)):
            where = output.location(document.locate(source_error(path, "", line)))
            outcome.errors.append(f"{where}: unknown rule code {code} in a noqa comment")
    outcome.findings = [document.locate(finding) for finding in result.findings]
    outcome.errors += [f"{path}: rule {crash.code} crashed: {crash.detail}" for crash in result.crashes]
    outcome.warnings += [f"{path}: fix dropped because {result.drop_reasons.get(description, 'its output did not parse')}: "
                         f"{description}" for description in result.dropped_fixes]
    outcome.warnings += [f"{path}: {note}" for note in result.notes]
    if result.fixed_text is None:
        return outcome
    fixed_text = document.with_python(result.fixed_text)
    if fixed_text is None:
        outcome.warnings.append(f"{path}: fixes not applied: they would remove an IPython magic or shell line")
        return _unfixed(outcome, document, path, rules)
    if job.diff:
        outcome.diff = "".join(difflib.unified_diff(
            python_lines(document.text, keepends=True), python_lines(fixed_text, keepends=True),
            fromfile=f"a/{path}", tofile=f"b/{path}"))
    if result.other_files and (job.write or job.diff):  # the run writes or shows every file of it, after the others
        outcome.project_fix = ProjectFix(document.encode(fixed_text), list(result.other_files.values()))
        outcome.fixes_applied = result.fixes_applied
        return outcome
    if job.write:
        if not workers.parent_alive():  # the run was killed: never write behind its back
            os._exit(1)
        try:
            with workers.writing():
                write_atomic(path, document.encode(fixed_text))
        except OSError as error:
            outcome.warnings.append(f"{path}: fixes not written: {error.strerror or error}")
            return _unfixed(outcome, document, path, rules)
    outcome.fixes_applied = result.fixes_applied
    return outcome


def _tier_inputs(path: str, text: str, digest: str,
                 view: Optional[ProjectView]) -> tuple[Optional[tier.ImportSummary], Union[bool, tier.Links]]:
    """What the cheap tier can take from the project index: the file's import summary
    (so it is not parsed twice) and whether other files can tell its rules about names
    (asked through the file's ``view``, which records what the answers read)."""
    index = _project()
    if index is None:
        return None, False
    facts = index.by_path.get(path)
    imports = None
    if facts is not None and "imports" in facts and facts.get("digest") == digest:
        imports = tier.ImportSummary.from_data(facts["imports"])
    elif path.endswith(NOTEBOOK_SUFFIX):  # not in the index: its imports decide whether it is linked
        imports = tier.parse_summary(text)
    return imports, tier.is_linked(path, imports, index, view)


def _unfixed(outcome: FileOutcome, document, path: str, rules) -> FileOutcome:
    """``outcome`` with the findings of the file as it still is, fixes not applied."""
    from nnxlint.engine import check_source

    index = _project()
    view = ProjectView(index, path) if index is not None else None
    imports, linked = _tier_inputs(path, document.python, outcome.digest, view)
    result = check_source(document.python, path, rules, project=view, imports=imports, linked=linked,
                          full=os.environ.get(tier.FULL_ENVIRONMENT) == "1")
    outcome.findings = [document.locate(finding) for finding in result.findings]
    return outcome


def _check_one(arguments: tuple[str, Job]) -> FileOutcome:
    return check_file(*arguments)


# The project index of the run: built before the files are checked in worker processes,
# so that the forked workers inherit it instead of receiving it with every file; for a
# few files checked here, built when one first needs it (a file over the size limit
# does not), so a warm run that re-checks only such files never builds it.
_PROJECT: Optional[ProjectIndex] = None
_PROJECT_RUN: Optional["_RunState"] = None


def _project() -> Optional[ProjectIndex]:
    global _PROJECT
    if _PROJECT is None and _PROJECT_RUN is not None:
        _PROJECT = _PROJECT_RUN.index()
    return _PROJECT


class _RunState:
    """What cache validation needs to know about the run, computed on demand: the
    content digest of a file, of the whole run, and the project index."""

    def __init__(self, paths: Sequence[str], jobs: Optional[int]) -> None:
        self.paths = paths
        self.jobs = jobs
        self._digests: dict[str, Optional[str]] = {}
        self._run: Optional[str] = None
        self._index: Optional[ProjectIndex] = None

    def digest_of(self, path: str) -> Optional[str]:
        if path not in self._digests:
            try:
                self._digests[path] = content_digest(read_regular(path))
            except OSError:
                self._digests[path] = None
        return self._digests[path]

    def run_digest(self) -> str:
        """The files of the run with their sizes and modification times (a stat each, not
        a read: a touched file only costs a recheck)."""
        if self._run is None:
            self._run = project.facts_digest(sorted((path, *_stat(path)) for path in self.paths))
        return self._run

    def index(self) -> ProjectIndex:
        if self._index is None:
            with timings.stage("ast index", children=True):  # its pool's workers included
                self._index = project.build(self.paths, self.jobs)
            self._index.run_id = self.run_digest()
        return self._index

    def dependencies_hold(self, record: object) -> bool:
        return project.dependencies_hold(record, self.digest_of, self.run_digest, self.index)


def _stat(path: str) -> tuple[int, int]:
    try:
        status = os.stat(path)
    except OSError:
        return -1, -1
    return status.st_size, status.st_mtime_ns


def check_files(paths: Sequence[str], job: Job, jobs: Optional[int] = None) -> list[FileOutcome]:
    """Outcomes in the order of ``paths``; cached results where the file, the config and
    what the findings depended on in other files are unchanged."""
    global _PROJECT, _PROJECT_RUN
    cache = Cache(Path(job.cache_dir)) if job.cache_dir else None
    run = _RunState(paths, jobs)
    outcomes: dict[str, FileOutcome] = {}
    if cache is not None:
        with timings.stage("cache"):
            for path in paths:
                findings = cache.load(path, job.codes_for(path), job.cache_mode, run.dependencies_hold)
                if findings is not None:
                    outcomes[path] = FileOutcome(path, findings)
    missing = [path for path in paths if path not in outcomes]
    _PROJECT_RUN = run
    if len(missing) >= PARALLEL_THRESHOLD:
        _PROJECT = run.index()
    try:
        computed = _compute(missing, job, jobs)
    finally:
        _PROJECT, _PROJECT_RUN = None, None
    for outcome in computed:
        outcomes[outcome.path] = outcome
        # only a result that is the file's own, complete and final is worth keeping
        if (cache is not None and outcome.digest and not outcome.fixes_applied and not outcome.diff
                and not outcome.errors and not outcome.warnings):
            cache.store(outcome.path, job.codes_for(outcome.path), job.cache_mode, outcome.digest,
                        outcome.findings, outcome.depends)
    if any(outcome.project_fix is not None for outcome in computed):
        _apply_project_fixes(outcomes, job, jobs)
    return [outcomes[path] for path in paths]


MAX_PROJECT_ROUNDS = 10  # a rewritten file checked again may have a project-level fix of its own


def _apply_project_fixes(outcomes: dict[str, FileOutcome], job: Job, jobs: Optional[int]) -> None:
    """Writes (``--fix``) or shows (``--diff``) the fixes that rewrite several files, each
    one all files or none, and only while every file still has the text the fix was made
    from.  With ``--fix``, a fix whose files another fix of the run has rewritten since
    is made again from their new text (its file is checked again, once); with
    ``--diff`` it waits for the next run (one diff per file).  The other files a fix
    rewrote are checked again: their findings are those of their new text, and their
    own fixes apply to it."""
    shown = set() if job.write else {path for path, outcome in outcomes.items()
                                     if outcome.fixes_applied and outcome.project_fix is None}
    queue = sorted(path for path, outcome in outcomes.items() if outcome.project_fix is not None)
    retried: set[str] = set()
    for _ in range(MAX_PROJECT_ROUNDS):
        checked: list[str] = []
        remade: set[str] = set()  # files whose fix is made again from the new text
        for path in queue:
            outcome = outcomes[path]
            fix, outcome.project_fix = outcome.project_fix, None
            assert fix is not None
            files = _project_files(path, outcome, fix, shown)
            if isinstance(files, _Stale) and job.write and path not in retried:
                retried.add(path)
                remade.add(path)
                checked.append(path)
                continue
            if isinstance(files, str):
                _keep_unfixed(outcomes, path, job, jobs, f"{path}: fixes not applied: {files}")
                continue
            if job.write:
                try:
                    with workers.writing():
                        write_all_atomic(files)
                except OSError as error:
                    _keep_unfixed(outcomes, path, job, jobs, f"{path}: fixes not written (nor any file they "
                                  f"rewrite): {getattr(error, 'filename', None) or ''}: {error.strerror or error}")
                    continue
                checked += [edit.path for edit in fix.edits]
            else:
                for edit in fix.edits:
                    other = outcomes.setdefault(edit.path, FileOutcome(edit.path))
                    other.diff += "".join(difflib.unified_diff(
                        python_lines(edit.before, keepends=True), python_lines(edit.after, keepends=True),
                        fromfile=f"a/{edit.path}", tofile=f"b/{edit.path}"))
                shown |= set(files)
        checked = list(dict.fromkeys(checked))
        if not checked:
            return
        for path, outcome in zip(checked, _recheck(checked, list(outcomes), job, jobs)):
            if path not in remade:  # the fixes that rewrote it count too: its own, and the findings they resolved
                previous = outcomes[path]
                outcome.fixes_applied += previous.fixes_applied + max(0, len(previous.findings) - len(outcome.findings))
            outcomes[path] = outcome
        queue = [path for path in checked if outcomes[path].project_fix is not None]


class _Stale(str):
    """Why a project-level fix cannot be applied: a file no longer has the text it was made from."""


def _project_files(path: str, outcome: FileOutcome, fix: ProjectFix, shown: set[str]) -> Union[dict[str, bytes], str]:
    """The new content of every file of the fix, or why the fix cannot be applied now."""
    files = {path: fix.own}
    for other in [path, *(edit.path for edit in fix.edits)]:
        if other in shown:
            return f"the diff of {other} shows other fixes (run --diff again after --fix)"
    try:
        _, digest = load_document(path)
    except SourceError as error:
        return str(error)
    if digest != outcome.digest:
        return _Stale(f"{path} changed during the run")
    for edit in fix.edits:
        try:
            document, _ = load_document(edit.path)
        except SourceError as error:
            return f"{edit.path}: {error}"
        if not isinstance(document, _PythonFile) or document.text != edit.before:
            return _Stale(f"{edit.path} changed during the run (run --fix again)")
        files[edit.path] = document.encode(edit.after)
    return files


def _recheck(paths: Sequence[str], run_paths: Sequence[str], job: Job, jobs: Optional[int]) -> list[FileOutcome]:
    """``check_file`` of ``paths``, which the run has rewritten, against an index of the
    run's files as they are now."""
    global _PROJECT, _PROJECT_RUN
    _PROJECT, _PROJECT_RUN = None, _RunState(run_paths, jobs)
    try:
        return [check_file(path, job) for path in paths]
    finally:
        _PROJECT, _PROJECT_RUN = None, None


def _keep_unfixed(outcomes: dict[str, FileOutcome], path: str, job: Job, jobs: Optional[int], warning: str) -> None:
    """The file's outcome as it still is: its findings, no fix, and why."""
    outcome = _recheck([path], list(outcomes), replace(job, fix_level=None, write=False, diff=False), jobs)[0]
    outcome.warnings.append(warning)
    outcomes[path] = outcome


def _failed(path: str, why: str) -> FileOutcome:
    """The outcome of a file whose worker died or overran the time limit."""
    from nnxlint.syntax import python_syntax_error

    try:
        rejected = python_syntax_error(decode(read_regular(path)).text)
    except (OSError, SourceError):
        rejected = None
    if rejected is not None:  # CPython says why: nothing else needs saying
        message, line, column = rejected
        return FileOutcome(path, [source_error(path, f"syntax error: {message}", line, column)])
    return FileOutcome(path, [source_error(path, f"nnxlint {why}; the file was not checked")])


def _compute(paths: Sequence[str], job: Job, jobs: Optional[int]) -> list[FileOutcome]:
    workers_wanted = jobs or os.cpu_count() or 1
    if not paths:
        return []
    if workers.can_isolate():  # one file's native abort or hang must not cost the others
        count = workers_wanted if len(paths) >= PARALLEL_THRESHOLD else 1
        if count > 1:  # imported once here, not once in every forked worker
            with timings.stage("importing LibCST"):
                import nnxlint.engine  # noqa: F401
        return workers.run_isolated(paths, lambda path: check_file(path, job), count, job.time_limit, _failed)
    if workers_wanted <= 1 or len(paths) < PARALLEL_THRESHOLD:
        return [check_file(path, job) for path in paths]
    import multiprocessing

    # no fork (Windows): a plain pool, without isolation
    with ProcessPoolExecutor(workers_wanted, mp_context=multiprocessing.get_context("spawn")) as pool:
        chunk = max(1, min(64, len(paths) // (workers_wanted * 8)))
        return list(pool.map(_check_one, [(path, job) for path in paths], chunksize=chunk))
