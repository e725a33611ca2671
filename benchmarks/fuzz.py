"""Fuzz ``nnxlint check --fix --unsafe-fixes`` with generated and mutated programs.

    python benchmarks/fuzz.py [--generated 2000] [--mutated 3000] [--seed 13] [--time-limit 20]

Programs: hypothesmith's grammar-generated Python with Flax imports prepended,
and mutations of the fixture programs (``fixtures/*/before.py``: lines deleted,
duplicated, swapped, truncated, a character inserted).  For each program the
oracle (``failure``) checks that nnxlint
* does not raise and no rule crashes,
* ends within the per-file time limit,
* writes no fixed text that CPython refuses to compile (when the input compiles),
* reports NNX000 as a syntax error only where CPython's parser rejects the text too,
* changes nothing on a second ``--fix`` pass.
Prints the count of programs tried and of each kind of failure, and the first
failing programs.  tests/test_fuzz.py runs a few dozen programs per CI run.
"""

from __future__ import annotations

import argparse
import ast
import random
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
PRELUDES = (
    "from flax import nnx\nimport optax\nimport jax\n",
    "import flax.linen as nn\nfrom flax import nnx\nimport jax.numpy as jnp\n",
    "from flax import nnx as fx\nfrom flax.training import train_state\n",
)


class _TimedOut(Exception):
    pass


def _compiles(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(text, "<fuzz>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _python_parses(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def failure(text: str, time_limit: float = 20.0) -> Optional[str]:
    """What is wrong with nnxlint on ``text`` (None: nothing): 'crashed', 'hung',
    'miscompiled', 'false NNX000' or 'not idempotent', with a detail."""
    from nnxlint.engine import check_source
    from nnxlint.registry import all_rules

    rules = list(all_rules().values())
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        result = check_source(text, "fuzz.py", rules, "unsafe")
        if result.crashes:
            return f"crashed: rule {result.crashes[0].code}: {result.crashes[0].detail}"
        for finding in result.findings:
            if finding.code == "NNX000" and "syntax error" in finding.message and _python_parses(text):
                return f"false NNX000: {finding.message}"
        if result.fixed_text is not None:
            if _compiles(text) and not _compiles(result.fixed_text):
                return "miscompiled: the fixed file does not compile"
            again = check_source(result.fixed_text, "fuzz.py", rules, "unsafe")
            if again.fixed_text is not None and again.fixed_text != result.fixed_text:
                return "not idempotent: a second --fix changes the file"
    except _TimedOut:
        return f"hung: more than {time_limit:g} s"
    except Exception as error:  # the oracle's whole point
        return f"crashed: {type(error).__name__}: {error}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return None


def _alarm(signum, frame):
    raise _TimedOut()


def fixture_programs() -> list[str]:
    return [path.read_text(encoding="utf-8") for path in sorted(ROOT.glob("fixtures/*/before.py"))]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True) or [""]
    kind = rng.randrange(6)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if kind == 0:
        del lines[i]
    elif kind == 1:
        lines.insert(i, lines[j])
    elif kind == 2:
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 3:
        return text[:rng.randrange(len(text) + 1)]
    elif kind == 4:
        position = rng.randrange(len(text) + 1)
        return text[:position] + rng.choice("()[]{}:,.=\\'\"#\n\t @*") + text[position:]
    else:  # indent or dedent a line
        lines[i] = ("    " + lines[i]) if rng.random() < 0.5 else lines[i].lstrip()
    return "".join(lines)


def mutated_programs(count: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    programs = fixture_programs()
    for _ in range(count):
        text = rng.choice(programs)
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        yield text


def generated_programs(count: int, seed: int) -> Iterator[str]:
    """hypothesmith programs (valid Python by construction) behind a Flax prelude."""
    import hypothesmith
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    found: list[str] = []

    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(PRELUDES), hypothesmith.from_grammar())
    def collect(prelude, program):
        found.append(prelude + program)

    collect()
    yield from found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=int, default=2000)
    parser.add_argument("--mutated", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--time-limit", type=float, default=20.0)
    arguments = parser.parse_args()
    started = time.perf_counter()
    tried, failures = 0, []
    for text in [*mutated_programs(arguments.mutated, arguments.seed),
                 *generated_programs(arguments.generated, arguments.seed)]:
        tried += 1
        problem = failure(text, arguments.time_limit)
        if problem is not None:
            failures.append((problem, text))
        if tried % 200 == 0:
            print(f"... {tried} tried, {len(failures)} failed, {time.perf_counter() - started:.0f} s", flush=True)
    kinds: dict[str, int] = {}
    for problem, _ in failures:
        kinds[problem.split(":")[0]] = kinds.get(problem.split(":")[0], 0) + 1
    print(f"{tried} programs tried in {time.perf_counter() - started:.0f} s: "
          f"{len(failures)} failed {kinds or ''}".rstrip())
    for problem, text in failures[:5]:
        print(f"--- {problem}\n{text[:2000]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
