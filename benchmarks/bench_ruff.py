"""Cold ``nnxlint check`` against ``ruff check`` (its default rules) on the same trees.

    python benchmarks/bench_ruff.py [TREE ...] [--files 1000] [--repeat 5] [--stages]

Times whole processes on the generated corpus (bench_cache.py's mix of Linen
modules, NNX modules, training loops and plain utilities) and on every TREE given
(a checkout of google/flax, say): ``nnxlint check --no-cache`` and ``ruff check
--isolated --no-cache`` (default rules, no configuration of the tree), alternating
the two in every round and swapping which goes first, so that load from other
processes falls on both alike.  Prints the median of each and the median of the
per-round ratios nnxlint/ruff: on a shared machine only ratios taken in the same
run mean anything.

``--stages`` also splits one in-process nnxlint run per tree (one process, no
pool) into its stages: discovery, the ``ast`` pass (project index and the cheap
tier's import summaries), the cheap tier's decisions, LibCST parsing, the rules
(with positions and findings) and the JSON output.
"""

from __future__ import annotations

import argparse
import os
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


def timed(command: list[str], cwd: Path, env: Optional[dict[str, str]]) -> float:
    start = time.perf_counter()
    subprocess.run([*command, "."], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return time.perf_counter() - start


def compare(tree: Path, repeat: int, without_tier: bool, program: list[str]) -> dict[str, tuple[float, float]]:
    """For each command: the median of its alternating whole-process runs and the
    median of its per-round ratios to ruff."""
    commands: dict[str, tuple[list[str], Optional[dict[str, str]]]] = {
        "ruff": (ruff_command(), None), "nnxlint": (nnxlint_command(program), None)}
    if without_tier:  # every rule on every file: what the cheap tier saves
        commands["nnxlint, tier off"] = (nnxlint_command(program), {**os.environ, FULL_ENVIRONMENT: "1"})
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_number in range(repeat):
        order = list(commands) if round_number % 2 == 0 else list(reversed(commands))
        for name in order:
            command, env = commands[name]
            times[name].append(timed(command, tree, env))
    return {name: (statistics.median(values), statistics.median(v / r for v, r in zip(values, times["ruff"])))
            for name, values in times.items()}


def stages(tree: Path) -> dict[str, float]:
    """Seconds per stage of one in-process nnxlint run over ``tree`` (one process)."""
    import libcst as cst

    from nnxlint import engine, output, project, runner, tier
    from nnxlint.config import load_settings
    from nnxlint.registry import all_rules

    spent: dict[str, float] = {}

    def clock(stage: str, work: Callable):
        start = time.perf_counter()
        value = work()
        spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - start
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
            document, digest = runner.load_document(path)
            rules = [known[code] for code in sorted(job.codes_for(path))]
            facts = index.by_path.get(path)
            summary = tier.ImportSummary.from_data(facts["imports"]) if facts and "imports" in facts else None
            linked = tier.is_linked(path, summary, index)
            selected = clock("cheap tier", lambda: tier.rules_for(document.python, rules, summary, linked))
            if selected == [] or engine.is_skipped(document.python):
                continue
            try:
                module = clock("LibCST parse", lambda: cst.parse_module(document.python))
            except cst.ParserSyntaxError:
                continue
            view = project.ProjectView(index, path)
            lines = document.python.splitlines()
            current = clock("rules", lambda: engine._run_rules(module, path, selected or rules, view))
            findings += [document.locate(f) for f, _ in clock("rules", lambda: engine._findings(path, current, lines))]
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
                  "(ratio: median of the per-round ratios to ruff)")
            for command, (seconds, ratio) in result.items():
                print(f"  {command:<18} {seconds:7.2f} s  {ratio:5.1f}x ruff")
            if options.stages:
                spent = stages(tree)
                total = sum(spent.values())
                print(f"  stages of one in-process run (one process): {total:.2f} s")
                for stage, seconds in spent.items():
                    print(f"    {stage:<13} {seconds:7.2f} s  {100 * seconds / total:4.0f}%")


if __name__ == "__main__":
    main()
