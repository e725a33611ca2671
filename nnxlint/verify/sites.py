"""What ``nnxlint verify --against REV`` verifies: the Linen classes converted since REV, and how to build each.

This runs in nnxlint's own process and never imports the user's code: it reads
REV's sources through git and re-analyses them with the conversion (the init
site it used, the example input's shape, the ``__call__`` train/eval argument).
The result is one ``ModelSpec`` per model to build, which the isolated worker
evaluates (``nnxlint.verify.user_code``).
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import libcst as cst

from nnxlint import names

_EXAMPLE = re.compile(r"(?P<path>.+?\.pyi?)(?::(?P<constructor>.+))?", re.DOTALL)
_CALL_ARGUMENTS_TAKEN = ("rngs", "mutable", "capture_intermediates")  # init's own options, not __call__'s


class SiteError(Exception):
    """A model or revision that cannot be set up; the reason, for the user."""


@dataclass
class ModelSpec:
    """How to build one model class in the worker."""

    relative: str  # the file, relative to the repository root (POSIX)
    class_name: str
    constructor: str  # ``Classifier(hidden=16)``, evaluated in the file's namespace
    origin: str  # where the constructor comes from, for messages
    inputs: list[str] = field(default_factory=list)  # example inputs' source text
    static_shapes: list[Optional[list[Optional[int]]]] = field(default_factory=list)  # the conversion's view
    input_shapes: Optional[list[list[int]]] = None  # given on the command line
    input_dtypes: list[str] = field(default_factory=list)
    call_keywords: dict[str, str] = field(default_factory=dict)  # other __call__ arguments (source)
    mode: Optional[dict] = None  # {"name": ..., "eval_value": ...}: the Linen train/eval argument
    covers: list[str] = field(default_factory=list)  # converted classes built inside this one


@dataclass
class Example:
    """``--example 'models.py:ResNet(stage_sizes=[1, 1])' --input-shape 1,16,16,3``."""

    path: str
    constructor: Optional[str]  # None: the file's init site
    input_shapes: Optional[list[list[int]]] = None
    input_dtypes: list[str] = field(default_factory=list)

    @property
    def class_name(self) -> Optional[str]:
        if self.constructor is None:
            return None
        return re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", self.constructor).group(1)  # type: ignore[union-attr]


def parse_example(text: str) -> Example:
    match = _EXAMPLE.fullmatch(text.strip())
    if not match:
        raise SiteError(f"--example {text!r}: expected FILE.py:Class(arguments), e.g. 'models.py:MLP(hidden=32)'")
    constructor = match["constructor"]
    if constructor is not None:
        try:
            tree = cst.parse_expression(constructor.strip())
        except cst.ParserSyntaxError:
            raise SiteError(f"--example {text!r}: `{constructor}` is not a Python expression") from None
        if not (isinstance(tree, cst.Name) or (isinstance(tree, cst.Call) and isinstance(tree.func, cst.Name))):
            raise SiteError(f"--example {text!r}: expected a class name or a call such as `MLP(hidden=32)`")
    return Example(match["path"], constructor.strip() if constructor else None)


def parse_shapes(text: str) -> list[list[int]]:
    """``1,16,16,3`` (one input) or ``2,10;2,5`` (one shape per input)."""
    try:
        shapes = [[int(size) for size in part.split(",") if size.strip()] for part in text.split(";")]
    except ValueError:
        raise SiteError(f"--input-shape {text!r}: expected sizes such as 1,16,16,3 (';' between inputs)") from None
    if not all(shapes) or any(size <= 0 for shape in shapes for size in shape):
        raise SiteError(f"--input-shape {text!r}: expected positive sizes such as 1,16,16,3")
    return shapes


def parse_dtypes(text: str, count: int) -> list[str]:
    import numpy as np  # the verify extra, checked before this runs

    dtypes = [part.strip() for part in text.split(";")]
    if len(dtypes) == 1:
        dtypes *= count
    if len(dtypes) != count:
        raise SiteError(f"--input-dtype {text!r}: {len(dtypes)} dtypes for {count} inputs")
    for dtype in dtypes:
        try:
            np.dtype(dtype)
        except TypeError:
            raise SiteError(f"--input-dtype: unknown dtype {dtype!r}") from None
    return dtypes


# -- git ------------------------------------------------------------------------
def _git(root: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    if binary:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True)
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, encoding="utf-8", errors="replace")


@dataclass
class Repository:
    root: Path
    revision: str  # as given
    commit: str

    @classmethod
    def open(cls, start: Path, revision: str) -> "Repository":
        try:
            top = _git(start, "rev-parse", "--show-toplevel")
        except FileNotFoundError:
            raise SiteError("git is not installed: --against compares with a git revision") from None
        if top.returncode:
            raise SiteError(f"{start} is not inside a git repository: --against compares with a git revision")
        root = Path(top.stdout.strip())
        commit = _git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        if commit.returncode:
            raise SiteError(f"unknown git revision {revision!r}")
        return cls(root, revision, commit.stdout.strip())

    def relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            raise SiteError(f"{path} is outside the git repository {self.root}") from None

    def source_at_revision(self, relative: str) -> Optional[str]:
        shown = _git(self.root, "show", f"{self.commit}:{relative}")
        return shown.stdout if shown.returncode == 0 else None

    def python_files(self, relatives: Sequence[str]) -> list[str]:
        """REV's Python files under the given files or directories ('.' for all of them)."""
        listed = _git(self.root, "ls-tree", "-r", "--name-only", self.commit, "--", *relatives)
        return [name for name in listed.stdout.splitlines() if name.endswith(".py")]

    def changed_python_files(self) -> list[str]:
        changed = _git(self.root, "diff", "--name-only", self.commit, "--", "*.py")
        return [name for name in changed.stdout.splitlines() if (self.root / name).is_file()]

    def export_python(self, destination: Path) -> None:
        """REV's Python files, as the worker imports them."""
        archive = _git(self.root, "archive", "--format=tar", self.commit, "--", ":(glob)**/*.py", binary=True)
        if archive.returncode:
            raise SiteError(f"git archive {self.revision} failed: {archive.stderr.decode(errors='replace').strip()}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(destination, filter="data")


# -- the classes converted, and their init site -----------------------------------
def _parse(source: str, relative: str) -> tuple[cst.Module, names.Scope]:
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        raise SiteError(f"{relative} does not parse: {error.message}") from None
    return module, names.collect_scope(module, None)


def converted_classes(revision_source: str, current_source: str, relative: str) -> list[str]:
    """Linen Module classes at REV that the working tree defines as non-Linen classes."""
    from nnxlint.conversion.file import linen_module_classes

    linen_before = linen_module_classes(*_parse(revision_source, f"{relative} at the revision"))
    current, scope = _parse(current_source, relative)
    linen_now = linen_module_classes(current, scope)
    defined_now = {statement.name.value for statement in current.body if isinstance(statement, cst.ClassDef)}
    return [name for name in linen_before if name in defined_now and name not in linen_now]


class _Analysis:
    """REV's file as the conversion sees it (read only: nothing is converted or written)."""

    def __init__(self, source: str, relative: str) -> None:
        # the conversion's own set-up of a file (its environment and class set), so that the
        # analysis here is the one the fix ran; it reads the file and writes nothing
        from nnxlint.conversion.file import FileConverter
        from nnxlint.conversion.training import TrainingConverter

        self.relative = relative
        self.module, scope = _parse(source, relative)
        converter = FileConverter(self.module, scope, relative)
        self.classes = converter.classes
        self.training = TrainingConverter(converter.env, self.module)

    def convert(self, class_name: str, shapes: list) -> object:
        from nnxlint.conversion.base import Unconvertible

        if class_name not in self.classes.env.linen_classes:
            raise SiteError(f"{self.relative} defines no Linen class `{class_name}` at the revision")
        try:
            return self.classes.convert(class_name, shapes)
        except Unconvertible as error:
            raise SiteError(f"{self.relative}: the conversion cannot analyse `{class_name}`: {error}") from None

    def covered(self, class_name: str) -> list[str]:
        return [name for name in self.classes.converted if name != class_name]

    def line_of(self, node: cst.CSTNode) -> int:
        wrapper = cst.metadata.MetadataWrapper(self.module, unsafe_skip_copy=True)
        return wrapper.resolve(cst.metadata.PositionProvider)[node].start.line

    def init_site_spec(self) -> ModelSpec:
        from nnxlint.conversion.base import Unconvertible

        try:
            site = self.training.find_init_site()
            shapes = self.training.input_shapes(site)
        except Unconvertible as error:
            raise SiteError(f"{self.relative}: no init site to build the model from ({error}); pass "
                            f"--example '{self.relative}:Model(arguments)' --input-shape N,...") from None
        top = self.convert(site.class_name, shapes)
        mode = top.mode  # type: ignore[attr-defined]
        code = self.module.code_for_node
        positional = [arg for arg in site.call.args[1:] if arg.keyword is None]
        if any(arg.star for arg in site.call.args):
            raise SiteError(f"{self.relative}: `init` with *args/**kwargs; pass --example and --input-shape")
        inputs = positional[:mode.index] if mode is not None else positional
        if mode is not None and len(positional) > mode.index + 1:
            raise SiteError(f"{self.relative}: `init` passes arguments after `{mode.name}` positionally; "
                            "pass --example and --input-shape")
        keywords = {}
        for arg in site.call.args:
            name = arg.keyword.value if arg.keyword is not None else None
            if name == "method":
                raise SiteError(f"{self.relative}: `init(..., method=...)` initialises another method; "
                                "only `__call__` is compared")
            if name is not None and name not in _CALL_ARGUMENTS_TAKEN and (mode is None or name != mode.name):
                keywords[name] = code(arg.value)
        return ModelSpec(
            self.relative, site.class_name, code(site.construction),
            f"the init site at {self.relative}:{self.line_of(site.statement if site.helper else site.call)}",
            inputs=[code(arg.value) for arg in inputs],
            static_shapes=[_plain_shape(shape) for shape in shapes[:len(inputs)]],
            call_keywords=keywords, mode=_mode(mode), covers=self.covered(site.class_name))

    def example_spec(self, example: Example) -> ModelSpec:
        if example.constructor is None:
            return self.init_site_spec()
        class_name = example.class_name or ""
        if example.input_shapes is None:
            site = self.init_site_spec()
            if site.class_name != class_name:
                raise SiteError(f"--example {example.path}:{example.constructor}: give its --input-shape "
                                f"(the init site builds `{site.class_name}`)")
            site.constructor, site.origin = example.constructor, "--example"
            return site
        from nnxlint.conversion.shapes import Size

        shapes = [(None, *(Size.number(size) for size in shape[1:])) for shape in example.input_shapes]
        top = self.convert(class_name, shapes)
        return ModelSpec(self.relative, class_name, example.constructor, "--example",
                         input_shapes=example.input_shapes, input_dtypes=example.input_dtypes,
                         mode=_mode(top.mode), covers=self.covered(class_name))  # type: ignore[attr-defined]


def _plain_shape(shape) -> Optional[list[Optional[int]]]:
    if shape is None:
        return None
    return [axis.value if axis is not None else None for axis in shape]


def _mode(mode) -> Optional[dict]:
    return None if mode is None else {"name": mode.name, "eval_value": mode.eval_value}


def init_site_spec(revision_source: str, relative: str) -> ModelSpec:
    return _Analysis(revision_source, relative).init_site_spec()


def example_spec(revision_source: str, relative: str, example: Example) -> ModelSpec:
    return _Analysis(revision_source, relative).example_spec(example)
