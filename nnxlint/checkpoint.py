"""``nnxlint transplant``: a trained Linen checkpoint becomes an orbax checkpoint of the converted NNX model.

The last step of a migration (convert, ``verify --against``, transplant): the
checkpoint (orbax, or ``flax.serialization`` msgpack) is read, every array is
mapped onto the NNX model's state by ``nnxlint.transplant`` (the names the
conversion gave), and only when every path and shape fits is the NNX state
written with orbax.  Building the model imports the user's code, in the same
isolated worker as ``verify --against``.  Exit codes: 0 written; 1 the
checkpoint does not fit the model (every problem listed, nothing written); 2 the
model or the checkpoint cannot be read.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any, Optional

import click

from nnxlint.verify.isolated import DEFAULT_TIMEOUT_S, run_isolated
from nnxlint.verify.sites import ModelSpec, SiteError, parse_dtypes, parse_example, parse_shapes

PACKAGES = ("jax", "flax", "orbax.checkpoint")


def _fail(message: str) -> click.exceptions.Exit:
    click.echo(f"nnxlint: error: {message}", err=True)
    return click.exceptions.Exit(2)


def _project_root(file: Path) -> Path:
    """The git work tree holding ``file`` (its modules may import the project's others), else its directory."""
    try:
        top = subprocess.run(["git", "-C", str(file.parent), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True)
    except FileNotFoundError:
        return file.parent
    return Path(top.stdout.strip()) if top.returncode == 0 else file.parent


def model_spec(example: str, input_shape: Optional[str], input_dtype: Optional[str]) -> tuple[Path, ModelSpec]:
    parsed = parse_example(example)
    if parsed.constructor is None:
        raise SiteError(f"--example {example!r}: name the NNX model class and its arguments, "
                        "e.g. 'models.py:ResNet(stage_sizes=[1, 1])'")
    file = Path(parsed.path).resolve()
    if not file.is_file():
        raise SiteError(f"{parsed.path}: no such file")
    root = _project_root(file)
    shapes = parse_shapes(input_shape) if input_shape else None
    dtypes = parse_dtypes(input_dtype, len(shapes)) if shapes and input_dtype else []
    relative = file.relative_to(root.resolve()).as_posix()
    return root, ModelSpec(relative, parsed.class_name or "", parsed.constructor, "--example",
                           input_shapes=shapes or [], input_dtypes=dtypes)


def render_text(result: dict[str, Any]) -> str:
    lines = [f"{result.get('file', '?')}:{result.get('class_name', '?')} <- {result.get('checkpoint', '?')}"]
    if result["status"] == "error":
        return "\n".join(lines + [f"  error: {result['error']}"])
    counts: dict[str, int] = {}
    for entry in result["mapped"]:
        counts[entry["collection"]] = counts.get(entry["collection"], 0) + 1
    lines.append("  mapped: " + (", ".join(f"{count} {name} array(s)" for name, count in counts.items()) or "nothing"))
    if result["ignored"]:
        lines.append(f"  left out (not model variables): {', '.join(result['ignored'])}")
    if result["problems"]:
        lines.append(f"  {len(result['problems'])} problem(s); nothing written:")
        lines += [f"    - {problem}" for problem in result["problems"]]
    else:
        lines.append(f"  written: {result['output']} (orbax; restore into nnx.state of the model)")
    return "\n".join(lines)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--example", required=True, metavar="FILE:Class(args)",
              help="The converted model class and its arguments as the Linen code passed them (the input "
                   "sizes come from --input-shape, rngs is added), e.g. "
                   "'models.py:ResNet(stage_sizes=[1, 1], num_classes=5)'.")
@click.option("--input-shape", metavar="N,...[;N,...]",
              help="An example input shape: it gives the input sizes the converted __init__ takes first "
                   "(in_features, ...).")
@click.option("--input-dtype", metavar="DTYPE[;DTYPE]", help="Its dtype(s) (default float32).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The orbax checkpoint directory to write (must not exist).")
@click.option("--subtree", metavar="KEY/KEY", help="Where the Linen variables are inside the checkpoint's tree.")
@click.option("--step", type=click.IntRange(min=0), help="The step of an orbax CheckpointManager directory "
                                                           "(default: the latest).")
@click.option("--output-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT_S,
              show_default=True, help="Seconds allowed to build the model and convert the checkpoint.")
def transplant(checkpoint: Path, example: str, input_shape: Optional[str], input_dtype: Optional[str],
               output: Path, subtree: Optional[str], step: Optional[int], output_format: str,
               timeout: float) -> None:
    """Write a trained Linen CHECKPOINT (orbax directory or flax msgpack file) as an orbax
    checkpoint of the converted NNX model's state, checking every path and shape."""
    absent = [name for name in PACKAGES if importlib.util.find_spec(name.split(".")[0]) is None]
    if absent:
        raise _fail(f"`nnxlint transplant` needs {', '.join(absent)}: pip install 'nnxlint[verify]'")
    if output.exists():
        raise _fail(f"{output} already exists: choose a new --output directory")
    try:
        root, spec = model_spec(example, input_shape, input_dtype)
    except SiteError as error:
        raise _fail(str(error))
    job = {"task": "transplant", "spec": spec.__dict__, "root": str(root), "roots": [str(root)],
           "checkpoint": str(checkpoint.resolve()), "output": str(output.resolve()), "subtree": subtree,
           "step": step}
    (result,) = run_isolated([job], timeout)
    result.setdefault("file", spec.relative)
    result.setdefault("class_name", spec.class_name)
    click.echo(json.dumps(result, indent=2) if output_format == "json" else render_text(result))
    raise click.exceptions.Exit({"pass": 0, "fail": 1}.get(result["status"], 2))
