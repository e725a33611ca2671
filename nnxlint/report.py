"""``nnxlint report``: how far the Linen -> NNX migration has come, in total and per directory."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import click
import libcst as cst

from nnxlint.config import ConfigError, load_settings
from nnxlint.context import FileContext, Traversal
from nnxlint.findings import Finding
from nnxlint.flax_api import MODULE_CLASSES, is_linen, nnx_member
from nnxlint.registry import all_rules
from nnxlint.rule import Rule
from nnxlint.rules.nnx001_linen_import import LinenUsage
from nnxlint.runner import SourceError, check_files, find_files, job_for, load_document

EXIT_ERROR = 2


class _ModuleCensus(Rule):
    """Counts the classes that subclass a Linen or an NNX module (not a registered rule).

    A base is Linen when it is a class of ``flax.linen`` (``nn.Module``,
    ``nn.Dense``...), NNX when it is one of ``flax.nnx``'s module classes, and
    either when it is a class of the same file already counted as such.
    """

    code = "census"
    name = "module-census"
    summary = "Linen and NNX module classes"
    triggers = ("flax",)

    def __init__(self, context: FileContext) -> None:
        super().__init__(context)
        self.linen: set[str] = set()
        self.nnx: set[str] = set()
        self.linen_classes = self.nnx_classes = 0

    def _kind(self, base: cst.BaseExpression) -> Optional[str]:
        qualified = self.context.resolve(base)
        if is_linen(qualified) and qualified.rpartition(".")[2][:1].isupper():  # type: ignore[union-attr]
            return "linen"
        if nnx_member(qualified) in MODULE_CLASSES:
            return "nnx"
        if isinstance(base, cst.Name):
            return "linen" if base.value in self.linen else "nnx" if base.value in self.nnx else None
        return None

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        kinds = {self._kind(base.value) for base in node.bases}
        if "linen" in kinds:
            self.linen.add(node.name.value)
            self.linen_classes += 1
        elif "nnx" in kinds:
            self.nnx.add(node.name.value)
            self.nnx_classes += 1


@dataclass
class Tally:
    files: int = 0
    linen_files: int = 0  # files that still import or use flax.linen
    linen_classes: int = 0
    nnx_classes: int = 0
    findings: Counter = field(default_factory=Counter)  # per rule code
    safe_fixes: int = 0
    unsafe_fixes: int = 0

    @property
    def progress(self) -> Optional[float]:
        """The share of module classes that are NNX; None when there are none."""
        total = self.linen_classes + self.nnx_classes
        return self.nnx_classes / total if total else None

    def add(self, other: "Tally") -> None:
        self.files += other.files
        self.linen_files += other.linen_files
        self.linen_classes += other.linen_classes
        self.nnx_classes += other.nnx_classes
        self.findings.update(other.findings)
        self.safe_fixes += other.safe_fixes
        self.unsafe_fixes += other.unsafe_fixes

    def as_dict(self) -> dict:
        return {"files": self.files, "linen_files": self.linen_files, "linen_classes": self.linen_classes,
                "nnx_classes": self.nnx_classes,
                "progress": None if self.progress is None else round(self.progress, 4),
                "findings": sum(self.findings.values()), "safe_fixes": self.safe_fixes,
                "unsafe_fixes": self.unsafe_fixes}


def census(path: str) -> Tally:
    """Module classes and Linen usage of one file (findings are counted separately)."""
    tally = Tally(files=1)
    try:
        document, _ = load_document(path)
    except SourceError:
        return tally
    if "flax" not in document.python:
        return tally
    try:
        module = cst.parse_module(document.python)
    except cst.ParserSyntaxError:
        return tally  # reported as NNX000 by the check
    context = FileContext(module, path)
    classes, linen = _ModuleCensus(context), LinenUsage(context)
    Traversal(context, [classes, linen]).run(module)
    tally.linen_classes, tally.nnx_classes = classes.linen_classes, classes.nnx_classes
    tally.linen_files = int(bool(linen.reports))
    return tally


def _directory(path: str) -> str:
    return Path(path).parent.as_posix()


def build(files: Sequence[str], findings: Sequence[Finding]) -> tuple[Tally, dict[str, Tally]]:
    directories: dict[str, Tally] = {}
    for path in files:
        directories.setdefault(_directory(path), Tally()).add(census(path))
    for finding in findings:
        tally = directories.setdefault(_directory(finding.path), Tally())
        tally.findings[finding.code] += 1
        if finding.fix is not None:
            if finding.fix.applicability == "safe":
                tally.safe_fixes += 1
            else:
                tally.unsafe_fixes += 1
    total = Tally()
    for tally in directories.values():
        total.add(tally)
    return total, dict(sorted(directories.items()))


def _rule_rows(findings: Sequence[Finding]) -> list[dict]:
    rules = all_rules()
    counts = Counter(finding.code for finding in findings)
    fixes = Counter((finding.code, finding.fix.applicability) for finding in findings if finding.fix)
    return [{"code": code, "name": rules[code].name if code in rules else "", "findings": count,
             "safe_fixes": fixes[(code, "safe")], "unsafe_fixes": fixes[(code, "unsafe")]}
            for code, count in sorted(counts.items())]


def _percent(progress: Optional[float]) -> str:
    return "-" if progress is None else f"{progress:.0%}"


DIRECTORY_COLUMNS = ("directory", "files", "linen files", "linen classes", "nnx classes", "nnx share",
                     "findings", "safe fixes", "unsafe fixes")
RULE_COLUMNS = ("rule", "name", "findings", "safe fixes", "unsafe fixes")


def _directory_rows(total: Tally, directories: dict[str, Tally]) -> list[list[str]]:
    def row(name: str, tally: Tally) -> list[str]:
        return [name, str(tally.files), str(tally.linen_files), str(tally.linen_classes), str(tally.nnx_classes),
                _percent(tally.progress), str(sum(tally.findings.values())), str(tally.safe_fixes),
                str(tally.unsafe_fixes)]

    return [row(name, tally) for name, tally in directories.items()] + [row("TOTAL", total)]


def _headline(total: Tally) -> list[str]:
    classes = total.linen_classes + total.nnx_classes
    return [f"NNX module classes: {total.nnx_classes} of {classes} ({_percent(total.progress)})",
            f"Files still using flax.linen: {total.linen_files} of {total.files}",
            f"Findings: {sum(total.findings.values())} ({total.safe_fixes} safe fixes, "
            f"{total.unsafe_fixes} unsafe fixes available)"]


def _text_table(columns: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """Columns aligned, the first ``text_columns`` to the left and the numbers to the right."""
    widths = [max(len(str(value)) for value in column) for column in zip(columns, *rows)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) if index < text_columns else value.rjust(width)
                         for index, (value, width) in enumerate(zip(values, widths))).rstrip()

    return "\n".join([line(columns), line(["-" * width for width in widths]), *map(line, rows)])


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join([":---"] * text_columns + ["---:"] * (len(columns) - text_columns)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rule_table_rows(rules: Sequence[dict]) -> list[list[str]]:
    return [[row["code"], row["name"], str(row["findings"]), str(row["safe_fixes"]), str(row["unsafe_fixes"])]
            for row in rules]


def render_text(total: Tally, directories: dict[str, Tally], rules: Sequence[dict]) -> str:
    parts = ["\n".join(_headline(total)), _text_table(DIRECTORY_COLUMNS, _directory_rows(total, directories))]
    if rules:
        parts.append(_text_table(RULE_COLUMNS, _rule_table_rows(rules), text_columns=2))
    return "\n\n".join(parts)


def render_markdown(total: Tally, directories: dict[str, Tally], rules: Sequence[dict]) -> str:
    rows = _directory_rows(total, directories)
    rows = [[f"`{row[0]}`", *row[1:]] for row in rows[:-1]] + [[f"**{value}**" for value in rows[-1]]]
    parts = ["## nnxlint migration report", "\n".join(f"- {line}" for line in _headline(total)),
             _markdown_table(DIRECTORY_COLUMNS, rows)]
    if rules:
        parts.append(_markdown_table(RULE_COLUMNS, [[f"`{row[0]}`", *row[1:]] for row in _rule_table_rows(rules)],
                                     text_columns=2))
    return "\n\n".join(parts)


def render_json(total: Tally, directories: dict[str, Tally], rules: Sequence[dict]) -> str:
    return json.dumps({"total": total.as_dict(),
                       "directories": {name: tally.as_dict() for name, tally in directories.items()},
                       "rules": list(rules)}, indent=2)


def draw_chart(directories: dict[str, Tally], total: Tally, path: Path) -> None:
    """Stacked horizontal bars of NNX and Linen module classes per directory (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    names = [name for name, tally in directories.items() if tally.linen_classes + tally.nnx_classes]
    nnx = [directories[name].nnx_classes for name in names]
    linen = [directories[name].linen_classes for name in names]
    figure, axes = pyplot.subplots(figsize=(8, 1.5 + 0.4 * len(names)))
    axes.barh(names, nnx, color="#2a9d8f", label="NNX module classes")
    axes.barh(names, linen, left=nnx, color="#e76f51", label="Linen module classes")
    axes.invert_yaxis()
    axes.set_xlabel("module classes")
    axes.set_title(f"Linen -> NNX migration: {_percent(total.progress)} of module classes are NNX")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / (1 + len(names))), ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown}


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--output-format", type=click.Choice(sorted(RENDERERS)), default="text", show_default=True,
              help="markdown suits a pull-request comment.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw module classes per directory into this PNG (needs matplotlib).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Use this pyproject.toml / nnxlint.toml instead of discovering one.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache.")
def report(paths, output_format, chart, config_file, no_cache):
    """Report migration progress for PATHS: Linen vs NNX module classes, files still
    using flax.linen, findings per rule and how many are auto-fixable."""
    paths = list(paths) or ["."]
    try:
        settings = load_settings(config_file, Path(paths[0]))
        job = job_for(settings, settings.enabled_codes(), use_cache=not no_cache)
    except ConfigError as error:
        click.echo(f"nnxlint: error: {error}", err=True)
        raise click.exceptions.Exit(EXIT_ERROR)
    files = find_files(settings, paths)
    outcomes = check_files(files, job)
    findings = [finding for outcome in outcomes for finding in outcome.findings]
    total, directories = build(files, findings)
    click.echo(RENDERERS[output_format](total, directories, _rule_rows(findings)))
    if chart is not None:
        try:
            draw_chart(directories, total, chart)
        except ImportError:
            click.echo("nnxlint: error: --chart needs matplotlib (pip install matplotlib)", err=True)
            raise click.exceptions.Exit(EXIT_ERROR)
