"""How much does ``nnxlint check`` cost compared with just parsing the files with LibCST?

    python benchmarks/bench_check.py [--files 2000] [--repeat 3]

Generates a corpus (the realistic mix of Linen modules, NNX modules, training
loops and non-Flax utilities from bench_cache.py), then times whole processes,
alternating the commands in each round so that machine drift affects all alike:

* ``parse``: one process that reads and ``libcst.parse_module``s every file;
* ``check -j1``: ``nnxlint check --no-cache -j 1`` (one process);
* ``unsafe -j1``: the same with ``--unsafe-fixes``: NNX002's conversion of every
  Linen class (plain ``check`` leaves it out) -- what showing the fixes costs;
* ``check``: ``nnxlint check --no-cache`` (all cores);
* ``import libcst`` and ``check one file``: start-up cost of a pre-commit run.

Prints medians and the ratios that the README quotes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_cache import generate  # noqa: E402  (the shared corpus generator)

PARSE_ALL = """
import sys, pathlib, libcst
for path in sorted(pathlib.Path(sys.argv[1]).rglob('*.py')):
    libcst.parse_module(path.read_text())
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    nnxlint = [sys.executable, "-m", "nnxlint", "check", "--no-cache", "--exit-zero", "--quiet"]
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "corpus"
        root.mkdir()
        generate(root, options.files)
        files = sorted(root.rglob("*.py"))
        lines = sum(path.read_text().count("\n") for path in files)
        one = next(path for path in files if "flax" in path.read_text())
        commands = {
            "parse": [sys.executable, "-c", PARSE_ALL, str(root)],
            "check -j1": [*nnxlint, "-j", "1", str(root)],
            "unsafe -j1": [*nnxlint, "--unsafe-fixes", "-j", "1", str(root)],
            "check": [*nnxlint, str(root)],
            "import libcst": [sys.executable, "-c", "import libcst"],
            "check one file": [*nnxlint, str(one)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(options.repeat):
            for name, command in commands.items():
                times[name].append(timed(command))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"corpus: {len(files)} files, {lines} lines; {options.repeat} rounds; medians of whole processes")
    for name, value in median.items():
        print(f"  {name:<15} {value:8.2f} s")
    print(f"check -j1 / parse          = {median['check -j1'] / median['parse']:.2f}")
    print(f"check / parse              = {median['check'] / median['parse']:.2f}")
    print(f"unsafe -j1 / check -j1     = {median['unsafe -j1'] / median['check -j1']:.2f}")
    print(f"check one file / import libcst = {median['check one file'] / median['import libcst']:.2f}")


if __name__ == "__main__":
    main()
