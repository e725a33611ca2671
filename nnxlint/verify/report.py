"""Presenting verification results: the terminal table, JSON, and the Markdown report with plots."""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence

from nnxlint.verify.compare import ACCELERATOR_TOLERANCE_FACTOR, SCALE_FLOOR, Z_LIMIT

Result = dict[str, Any]
COLUMNS = ("fixture", "rules", "device", "steps", "max loss diff", "status")


def format_difference(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.1e}"


def _row(result: Result) -> tuple[str, ...]:
    return (result["fixture"], ",".join(result.get("rules", [])), result.get("device", "-"),
            str(result.get("steps", "-")), format_difference(result.get("max_loss_difference")),
            result["status"])


def failure_details(result: Result) -> list[str]:
    """Why a fixture did not pass, one line per reason."""
    if result["status"] == "error":
        return [result["error"]]
    if result["status"] == "skipped":
        return [result["reason"]]
    return [f"{check['name']}: {check['detail']}" + _measured(check)
            for check in result.get("checks", []) if not check["passed"]]


def _measured(check: dict) -> str:
    if check.get("value") is None:
        return ""
    return f" ({format_difference(check['value'])} > limit {format_difference(check['limit'])})"


def progress_line(index: int, total: int, result: Result, seconds: float) -> str:
    width = len(str(total))
    line = (f"[{index:>{width}}/{total}] {result['fixture']:<40} {result['status']:<7} "
            f"max loss diff {format_difference(result.get('max_loss_difference'))}  {seconds:5.1f}s")
    return "\n".join([line] + [f"    {detail}" for detail in failure_details(result)])


def table(results: Sequence[Result]) -> str:
    rows = [COLUMNS] + [_row(result) for result in results]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def summary(results: Sequence[Result]) -> dict[str, int]:
    counts = {"pass": 0, "fail": 0, "error": 0, "skipped": 0}
    for result in results:
        counts[result["status"]] += 1
    return counts


def summary_line(results: Sequence[Result]) -> str:
    counts = summary(results)
    return f"{len(results)} fixtures: " + ", ".join(f"{count} {status}" for status, count in counts.items() if count)


def render_json(results: Sequence[Result]) -> str:
    return json.dumps({"summary": summary(results), "fixtures": list(results)}, indent=2)


def _versions() -> str:
    found = []
    for package in ("jax", "jaxlib", "flax", "optax"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _plot(result: Result, path: Path) -> bool:
    """A PNG of the fixture's loss curves; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return False
    figure, axes = pyplot.subplots(figsize=(6, 3.5))
    styles = iter(["-", "--", ":", "-.", "-", "--"])
    for label, losses in result["curves"].items():
        axes.plot(range(1, len(losses) + 1), losses, next(styles), label=label, linewidth=1.5)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(result["fixture"])
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    pyplot.close(figure)
    return True


def write_markdown(results: Sequence[Result], path: Path) -> None:
    devices = sorted({result["device"] for result in results if "device" in result})
    statistical = [result["fixture"] for result in results if result.get("dropout") == "statistical"]
    plots_directory = path.parent / f"{path.stem}_plots"
    lines = [
        "# nnxlint verify report", "",
        f"- device: {', '.join(devices) or '-'}",
        f"- packages: {_versions()}",
        f"- {summary_line(results)}",
        "- comparison: per-step training losses and final eval-mode outputs on a held-out batch; "
        "difference = max |a - b| / max(|a|, |b|, "
        f"{SCALE_FLOOR:g} * max|b|); limit = the fixture's tolerance on CPU (float32, matmul precision "
        f"\"highest\"), {ACCELERATOR_TOLERANCE_FACTOR:g}x that on an accelerator",
        "- fixtures compared with dropout off, then statistically with dropout on over several seeds "
        f"(max per-step z-score < {Z_LIMIT:g}): {', '.join(statistical) or 'none'}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in _row(result)) + " |" for result in results]
    for result in results:
        lines += ["", f"## {result['fixture']}", ""]
        if result["status"] in ("error", "skipped"):
            lines.append(f"{result['status']}: {failure_details(result)[0]}")
            continue
        lines.append(f"before.py runs: `{result['before']}`; dropout: `{result['dropout']}`; "
                     f"tolerance {format_difference(result['tolerance'])}")
        lines.append("")
        for check in result["checks"]:
            mark = "pass" if check["passed"] else "FAIL"
            value = "" if check["value"] is None else (
                f" — {format_difference(check['value'])} (limit {format_difference(check['limit'])})")
            lines.append(f"- {mark}: {check['name']}{value}; {check['detail']}")
        if result.get("curves"):
            image = plots_directory / f"{result['fixture']}.png"
            if _plot(result, image):
                lines += ["", f"![loss curves of {result['fixture']}]({image.relative_to(path.parent).as_posix()})"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
