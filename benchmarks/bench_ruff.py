"""Cold ``nnxlint check`` against ``ruff check`` (its default rules) on the same trees.

    python benchmarks/bench_ruff.py [TREE ...] [--files 1000] [--repeat 5] [--stages]

Times whole processes on the generated corpus (bench_cache.py's mix of Linen
modules, NNX modules, training loops and plain utilities) and on every TREE given
(a checkout of google/flax, say): ``nnxlint check --no-cache`` and ``ruff check
--isolated --no-cache`` (default rules, no configuration of the tree), alternating
the two in every round and swapping which goes first, so that load from other
processes falls on both alike.  Prints the median of each and the median of the
per-round ratios nnxlint/ruff, for wall-clock time and for CPU time (user + system
of the process and its workers): on a shared machine only ratios taken in the same
run mean anything, and the CPU ratio is the one that load from others disturbs least.

``--stages`` also prints the stages of one cold nnxlint run per tree in one
process (``nnxlint check --timings -j 1``): discovery, the ``ast`` index, the cheap
tier, LibCST parsing, the rules, NNX002's conversion, positions, output.
``--compare-with COMMAND`` times another nnxlint (an older checkout, say) in the
same alternation, so that its ratio to ruff is taken in the same rounds.
``--check-exact`` also compares the JSON findings on each tree with the cheap tier
and with every rule on every file (``NNXLINT_NO_TIER=1``): they must be the same.
``--perfect-tier`` also times nnxlint on only the files that have a finding (named on
its command line, so that nothing else is parsed or indexed), against ruff on the
whole tree: what a first tier that never kept a file without findings would cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).parent))
from bench_cache import generate  # noqa: E402  (the shared corpus generator)

FULL_ENVIRONMENT = "NNXLINT_NO_TIER"  # nnxlint.tier.FULL_ENVIRONMENT: every rule on every file


def ruff_command() -> list[str]:
    found = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(found).exists():
        raise SystemExit("ruff not found: pip install -e '.[dev]'")
    return [found, "check", "--isolated", "--no-cache", "--exit-zero", "--quiet"]


def nnxlint_command(program: list[str]) -> list[str]:
    return [*program, "check", "--no-cache", "--exit-zero", "--quiet"]


def timed(command: list[str], cwd: Path, env: Optional[dict[str, str]],
          targets: tuple[str, ...] = (".",)) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds (user + system, the process and its workers)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([*command, *targets], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def files_with_findings(tree: Path, program: list[str]) -> tuple[str, ...]:
    """The files of ``tree`` where ``nnxlint check`` reports something, relative to it."""
    command = [*program, "check", "--no-cache", "--exit-zero", "--output-format", "json", "."]
    done = subprocess.run(command, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          check=False)
    return tuple(sorted({finding["path"] for finding in json.loads(done.stdout)}))


def compare(tree: Path, repeat: int, without_tier: bool, program: list[str],
            other: Optional[list[str]] = None, perfect_tier: bool = False) -> dict[str, dict[str, float]]:
    """For each command and for wall and CPU time: the median of its alternating
    whole-process runs and the median of its per-round ratios to ruff."""
    Command = tuple[list[str], Optional[dict[str, str]], tuple[str, ...]]
    commands: dict[str, Command] = {
        "ruff": (ruff_command(), None, (".",)), "nnxlint": (nnxlint_command(program), None, (".",))}
    if other:
        commands["nnxlint, compared"] = (nnxlint_command(other), None, (".",))
    if without_tier:  # every rule on every file: what the cheap tier saves
        commands["nnxlint, tier off"] = (nnxlint_command(program), {**os.environ, FULL_ENVIRONMENT: "1"}, (".",))
    if perfect_tier:
        found = files_with_findings(tree, program)
        commands[f"nnxlint, {len(found)} files"] = (nnxlint_command(program), None, found)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for round_number in range(repeat):
        order = list(commands) if round_number % 2 == 0 else list(reversed(commands))
        for name in order:
            command, env, targets = commands[name]
            times[name].append(timed(command, tree, env, targets))
    result = {}
    for name, values in times.items():
        result[name] = {}
        for kind, index in (("wall", 0), ("cpu", 1)):
            result[name][kind] = statistics.median(value[index] for value in values)
            result[name][f"{kind} ratio"] = statistics.median(
                value[index] / max(ruff[index], 1e-6) for value, ruff in zip(values, times["ruff"]))
    return result


def stages(tree: Path, program: list[str]) -> str:
    """The per-stage CPU split of one cold single-process run over ``tree``, as
    ``nnxlint check --timings`` prints it."""
    done = subprocess.run([*nnxlint_command(program), "--timings", "-j", "1", "."], cwd=tree,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    return "\n".join(line for line in done.stderr.splitlines() if line.startswith(("Timings:", "  ")))


def tier_is_exact(tree: Path, program: list[str]) -> bool:
    """Whether ``check --output-format json`` on ``tree`` is the same with the cheap tier
    as with every rule on every file (prints the first difference when it is not)."""
    def findings(env: Optional[dict[str, str]]) -> str:
        command = [*program, "check", "--no-cache", "--exit-zero", "--output-format", "json", "."]
        return subprocess.run(command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, check=False).stdout

    with_tier, without = findings(None), findings({**os.environ, FULL_ENVIRONMENT: "1"})
    if not with_tier.lstrip().startswith("["):  # no JSON: nnxlint failed, nothing was compared
        print(f"  no JSON from nnxlint: {with_tier[:200]!r}")
        return False
    if with_tier != without:
        for line, (tiered, full) in enumerate(zip(with_tier.splitlines(), without.splitlines()), 1):
            if tiered != full:
                print(f"  tier differs at line {line} of the JSON: {tiered.strip()!r} != {full.strip()!r}")
                break
    return with_tier == without


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, help="more trees to compare on (a google/flax checkout)")
    parser.add_argument("--files", type=int, default=1000, help="files in the generated corpus")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stages", action="store_true", help="also split one in-process run into stages")
    parser.add_argument("--without-tier", action="store_true", help="also time nnxlint with the cheap tier off")
    parser.add_argument("--check-exact", action="store_true",
                        help="also compare the JSON findings with the tier and without it (NNXLINT_NO_TIER=1)")
    parser.add_argument("--nnxlint", default=f"{sys.executable} -m nnxlint",
                        help="how to run nnxlint (another checkout, say); default: %(default)s")
    parser.add_argument("--compare-with", metavar="COMMAND",
                        help="another nnxlint to time in the same rounds (env PYTHONPATH=/old/checkout python -m "
                             "nnxlint, say)")
    parser.add_argument("--perfect-tier", action="store_true",
                        help="also time nnxlint on only the files that have a finding (the bound of a perfect tier)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        corpus = Path(directory) / "corpus"
        corpus.mkdir()
        generate(corpus, options.files)
        for tree in [corpus, *(tree.resolve() for tree in options.trees)]:
            files = [p for p in tree.rglob("*") if p.suffix in (".py", ".ipynb") and ".git" not in p.parts]
            name = "generated corpus" if tree == corpus else str(tree)
            other = shlex.split(options.compare_with) if options.compare_with else None
            result = compare(tree, options.repeat, options.without_tier, shlex.split(options.nnxlint), other,
                             options.perfect_tier)
            print(f"{name}: {len(files)} files; {options.repeat} alternating rounds, medians of whole processes "
                  "(ratios: medians of the per-round ratios to ruff)")
            print(f"  {'':<20} {'wall':>8} {'':>11} {'CPU':>8}")
            for command, row in result.items():
                print(f"  {command:<20} {row['wall']:7.2f}s {row['wall ratio']:6.1f}x ruff "
                      f"{row['cpu']:7.2f}s {row['cpu ratio']:6.1f}x ruff")
            if options.stages:
                print(stages(tree, shlex.split(options.nnxlint)))
            if options.check_exact:
                exact = tier_is_exact(tree, shlex.split(options.nnxlint))
                print(f"  findings with the tier {'identical to' if exact else 'DIFFER from'} every rule on every file")


if __name__ == "__main__":
    main()
