"""The ``--against`` options of ``nnxlint verify`` and their command-line handling."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional, Sequence

import click

from nnxlint.verify import against
from nnxlint.verify.isolated import DEFAULT_TIMEOUT_S
from nnxlint.verify.manifest import DEFAULT_TOLERANCE
from nnxlint.verify.sites import Example, SiteError, parse_dtypes, parse_example, parse_shapes

VERIFY_PACKAGES = ("jax", "flax", "optax", "numpy")


def against_options(function):
    """The options of ``verify --against``, added to the verify command."""
    options = [
        click.option("--against", "revision", metavar="REV",
                     help="Compare the Linen classes of git revision REV with their NNX conversion in the "
                          "working tree (PATHS: files or directories; default: the files changed since REV)."),
        click.option("--example", "examples", multiple=True, metavar="FILE:Class(args)",
                     help="With --against: build this class with these constructor arguments instead of the "
                          "file's init site, e.g. 'models.py:ResNet(stage_sizes=[1, 1])'. Repeatable."),
        click.option("--input-shape", "input_shapes", multiple=True, metavar="N,...[;N,...]",
                     help="The example input shape of the matching --example (';' between several inputs)."),
        click.option("--input-dtype", "input_dtypes", multiple=True, metavar="DTYPE[;DTYPE]",
                     help="Its dtype(s) (default float32), e.g. int32 for token ids."),
        click.option("--steps", type=click.IntRange(min=0), default=0, show_default=True,
                     help="With --against: also compare this many plain SGD steps on random data."),
        click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-2,
                     show_default=True, help="The SGD learning rate of --steps."),
        click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TOLERANCE,
                     show_default=True, help="Max relative difference on CPU (ten times this on an accelerator)."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT_S,
                     show_default=True, help="Seconds allowed to build and compare each class (the first one "
                                                "also starts JAX)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def parse_examples(examples: Sequence[str], shapes: Sequence[str], dtypes: Sequence[str]) -> list[Example]:
    """Each --example with the --input-shape/--input-dtype given in the same position."""
    if len(shapes) > len(examples) or len(dtypes) > len(shapes):
        raise SiteError("each --input-shape belongs to an --example, and each --input-dtype to an --input-shape "
                        "(give them in the same order)")
    parsed = []
    for index, text in enumerate(examples):
        example = parse_example(text)
        if index < len(shapes):
            example.input_shapes = parse_shapes(shapes[index])
            if index < len(dtypes):
                example.input_dtypes = parse_dtypes(dtypes[index], len(example.input_shapes))
        parsed.append(example)
    return parsed


def _fail(message: str) -> click.exceptions.Exit:
    click.echo(f"nnxlint: error: {message}", err=True)
    return click.exceptions.Exit(2)


def run_against_command(targets: Sequence[Path], output_format: str, report_path: Optional[Path], *,
                        revision: str, examples: Sequence[str], input_shapes: Sequence[str],
                        input_dtypes: Sequence[str], steps: int, learning_rate: float, tolerance: float,
                        timeout: float) -> None:
    absent = [name for name in VERIFY_PACKAGES if importlib.util.find_spec(name) is None]
    if absent:
        raise _fail(f"`nnxlint verify --against` needs {', '.join(absent)}: pip install 'nnxlint[verify]'")
    for target in targets:
        if not target.exists():
            raise _fail(f"{target}: no such file or directory")

    try:
        repository, results = against.run_against(
            revision, targets, parse_examples(examples, input_shapes, input_dtypes), steps=steps,
            learning_rate=learning_rate, tolerance=tolerance, timeout=timeout)
    except SiteError as error:
        raise _fail(str(error))
    if output_format == "json":
        click.echo(against.render_json(results, revision, repository.commit))
    else:
        click.echo(against.render_text(results, revision))
    if report_path is not None:
        against.write_markdown(results, revision, report_path)
        click.echo(f"report written to {report_path}", err=True)
    raise click.exceptions.Exit(against.exit_code(results))
