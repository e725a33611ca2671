"""``nnxlint check --timings``: the CPU time of each stage, on stderr, the output unchanged."""

from __future__ import annotations

import json
import re
import time

from click.testing import CliRunner

from nnxlint import timings
from nnxlint.cli import main

LINEN = "import flax.linen as nn\n\n\nclass M(nn.Module):\n    @nn.compact\n    def __call__(self, x):\n" \
        "        return nn.Dense(3)(x)\n"


def test_timings_go_to_stderr_and_leave_the_output_alone(tmp_path):
    for number in range(3):
        (tmp_path / f"m{number}.py").write_text(LINEN)
    (tmp_path / "plain.py").write_text("x = 1\n")
    runner = CliRunner()  # click 8.2+: stdout and stderr apart
    command = ["check", str(tmp_path), "--no-cache", "--unsafe-fixes", "--output-format", "json"]  # NNX002 converts
    plain = runner.invoke(main, command)
    timed = runner.invoke(main, [*command, "--timings"])
    assert timed.exit_code == plain.exit_code == 1
    assert json.loads(timed.stdout) == json.loads(plain.stdout)
    assert timed.stderr.startswith("Timings: 4 files, ")
    stages = dict(re.findall(r"^  (\S.*?)\s+(\d+\.\d\d) s ", timed.stderr, re.MULTILINE))
    for stage in ("discovery", "LibCST parse", "rules", "NNX002 conversion", "positions and findings", "output"):
        assert stage in stages, stage


def test_inner_stages_are_not_counted_twice():
    timings.take()
    with timings.stage("outer"):
        with timings.stage("inner"):
            end = time.process_time() + 0.05
            while time.process_time() < end:
                pass
    spent = timings.take()
    assert spent["inner"] >= 0.05 and spent["outer"] < 0.02
    assert timings.take() == {}


def test_a_files_work_runs_without_the_cycle_collector_and_its_cycles_are_freed_after():
    import gc
    import weakref

    from nnxlint.workers import collecting_once

    class Node:
        pass

    assert gc.isenabled()
    with collecting_once():
        assert not gc.isenabled()
        with collecting_once():  # nested: the outer block keeps it off
            pass
        assert not gc.isenabled()
        first, second = Node(), Node()
        first.other, second.other = second, first  # a reference cycle, garbage once the names go
        watched = weakref.ref(first)
        del first, second
        assert watched() is not None  # refcounting cannot free a cycle, and the collector is off
    assert gc.isenabled()
    assert watched() is None
