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

``--stages`` also splits one in-process nnxlint run per tree (one process, no
pool) into its stages: discovery, the ``ast`` pass (project index and the cheap
tier's import summaries), the cheap tier's decisions, LibCST parsing, the rules
(with positions and findings) and the JSON output.
"""

from __future__ import annotations

import argparse
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
from typing import Callable, Optional

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


def timed(command: list[str], cwd: Path, env: Optional[dict[str, str]]) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds (user + system, the process and its workers)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([*command, "."], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def compare(tree: Path, repeat: int, without_tier: bool, program: list[str]) -> dict[str, dict[str, float]]:
    """For each command and for wall and CPU time: the median of its alternating
    whole-process runs and the median of its per-round ratios to ruff."""
    commands: dict[str, tuple[list[str], Optional[dict[str, str]]]] = {
        "ruff": (ruff_command(), None), "nnxlint": (nnxlint_command(program), None)}
    if without_tier:  # every rule on every file: what the cheap tier saves
        commands["nnxlint, tier off"] = (nnxlint_command(program), {**os.environ, FULL_ENVIRONMENT: "1"})
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for round_number in range(repeat):
        order = list(commands) if round_number % 2 == 0 else list(reversed(commands))
        for name in order:
            command, env = commands[name]
            times[name].append(timed(command, tree, env))
    result = {}
    for name, values in times.items():
        result[name] = {}
        for kind, index in (("wall", 0), ("cpu", 1)):
            result[name][kind] = statistics.median(value[index] for value in values)
            result[name][f"{kind} ratio"] = statistics.median(
                value[index] / max(ruff[index], 1e-6) for value, ruff in zip(values, times["ruff"]))
    return result


def stages(tree: Path) -> dict[str, float]:
    """CPU seconds per stage of one in-process nnxlint run over ``tree`` (one process);
    LibCST and the rules are split between files with findings and the others."""
    import libcst as cst

    from nnxlint import engine, output, project, runner, tier
    from nnxlint.config import load_settings
    from nnxlint.registry import all_rules

    spent: dict[str, float] = {}

    def clock(stage: str, work: Callable):  # CPU time: what load from other processes disturbs least
        start = time.process_time()
        value = work()
        spent[stage] = spent.get(stage, 0.0) + time.process_time() - start
        return value

    previous = os.getcwd()
    os.chdir(tree)
    try:
        settings = load_settings(None, Path("."))
        paths = clock("discovery", lambda: runner.find_files(settings, ["."]))
        job = runner.job_for(settings, settings.enabled_codes(), use_cache=False)
        index = clock("ast pass", lambda: project.build(paths, jobs=1))
        known = all_rules()
        findings = []
        for path in paths:
            document, _ = clock("reading", lambda: runner.load_document(path))
            rules = [known[code] for code in sorted(job.codes_for(path))]
            facts = index.by_path.get(path)
            summary = tier.ImportSummary.from_data(facts["imports"]) if facts and "imports" in facts else None
            linked = tier.is_linked(path, summary, index)
            selected = clock("cheap tier", lambda: tier.rules_for(document.python, rules, summary, linked))
            if selected == [] or engine.is_skipped(document.python):
                continue
            start = time.process_time()
            try:
                engine.parse_module(document.python)
            except cst.ParserSyntaxError:
                continue
            parsed = time.process_time()
            # the rules: a whole check of the file (through the public entry point) less its parse
            result = engine.check_source(document.python, path, selected or rules, project=project.ProjectView(
                index, path), full=True)
            checked = time.process_time()
            # what the files with findings cost is what no exact tier can save
            which = "with findings" if result.findings else "without"
            spent[f"LibCST parse, files {which}"] = spent.get(f"LibCST parse, files {which}", 0.0) + parsed - start
            spent[f"rules, files {which}"] = spent.get(f"rules, files {which}", 0.0) + max(
                0.0, (checked - parsed) - (parsed - start))
            findings += [document.locate(finding) for finding in result.findings]
        clock("output", lambda: output.render_json(findings))
    finally:
        os.chdir(previous)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, help="more trees to compare on (a google/flax checkout)")
    parser.add_argument("--files", type=int, default=1000, help="files in the generated corpus")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stages", action="store_true", help="also split one in-process run into stages")
    parser.add_argument("--without-tier", action="store_true", help="also time nnxlint with the cheap tier off")
    parser.add_argument("--nnxlint", default=f"{sys.executable} -m nnxlint",
                        help="how to run nnxlint (another checkout, say); default: %(default)s")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        corpus = Path(directory) / "corpus"
        corpus.mkdir()
        generate(corpus, options.files)
        for tree in [corpus, *(tree.resolve() for tree in options.trees)]:
            files = [p for p in tree.rglob("*") if p.suffix in (".py", ".ipynb") and ".git" not in p.parts]
            name = "generated corpus" if tree == corpus else str(tree)
            result = compare(tree, options.repeat, options.without_tier, shlex.split(options.nnxlint))
            print(f"{name}: {len(files)} files; {options.repeat} alternating rounds, medians of whole processes "
                  "(ratios: medians of the per-round ratios to ruff)")
            print(f"  {'':<18} {'wall':>8} {'':>11} {'CPU':>8}")
            for command, row in result.items():
                print(f"  {command:<18} {row['wall']:7.2f}s {row['wall ratio']:6.1f}x ruff "
                      f"{row['cpu']:7.2f}s {row['cpu ratio']:6.1f}x ruff")
            if options.stages:
                spent = stages(tree)
                total = sum(spent.values())
                print(f"  stages of one in-process run (one process, CPU time): {total:.2f} s")
                for stage, seconds in spent.items():
                    print(f"    {stage:<34} {seconds:7.2f} s  {100 * seconds / total:4.0f}%")


if __name__ == "__main__":
    main()
