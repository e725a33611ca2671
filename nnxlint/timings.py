"""Where a run's time goes (``nnxlint check --timings``): CPU seconds per stage.

Each process adds the CPU time of its stages to its own tally; a worker hands
its tally back with every file's outcome, so the totals cover the main process
and all workers.  Stages nest: time spent in an inner stage (NNX002's
conversion inside the rules) is counted there and not in the outer one.
"""

from __future__ import annotations

try:
    import resource
except ImportError:  # Windows: no rusage of children
    resource = None  # type: ignore[assignment]
import time
from contextlib import contextmanager
from typing import Iterable, Iterator

# in the order of a run
STAGES = ("discovery", "cache", "ast index", "importing LibCST", "reading", "cheap tier", "LibCST parse", "rules",
          "NNX002 conversion", "positions and findings", "fixes and the rest", "garbage collection",
          "output")

_spent: dict[str, float] = {}
_open: list[float] = []  # CPU time already counted by inner stages, one entry per open stage


def _cpu(children: bool) -> float:
    if not children or resource is None:
        return time.process_time()
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


@contextmanager
def stage(name: str, children: bool = False) -> Iterator[None]:
    """Count the CPU time of the block under ``name``; with ``children``, also that of
    the processes it started and waited for (a pool that reports no tally of its own)."""
    start = _cpu(children)
    _open.append(0.0)
    try:
        yield
    finally:
        inner = _open.pop()
        total = _cpu(children) - start
        _spent[name] = _spent.get(name, 0.0) + total - inner
        if _open:
            _open[-1] += total


def take() -> dict[str, float]:
    """This process's tally since the last ``take``."""
    found = dict(_spent)
    _spent.clear()
    return found


def add(totals: dict[str, float], more: dict[str, float]) -> None:
    for name, seconds in more.items():
        totals[name] = totals.get(name, 0.0) + seconds


def render(totals: dict[str, float], files: int, wall: float) -> str:
    """The table printed on stderr: each stage's CPU seconds and share."""
    spent = sum(totals.values())
    names: Iterable[str] = [*STAGES, *sorted(set(totals) - set(STAGES))]
    lines = [f"Timings: {files} files, {wall:.2f} s wall, {spent:.2f} s CPU in the stages "
             "(all processes)"]
    for name in names:
        if name in totals:
            seconds = totals[name]
            lines.append(f"  {name:<24} {seconds:8.2f} s  {100 * seconds / spent if spent else 0:5.1f} %")
    return "\n".join(lines)
