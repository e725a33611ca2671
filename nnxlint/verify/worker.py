"""Verify one fixture; run as ``python -m nnxlint.verify.worker FIXTURE_DIR RESULT_JSON``.

Each fixture gets a process of its own, so no patch, trace cache or Flax
setting of one fixture reaches another.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import jax

jax.config.update("jax_default_matmul_precision", "highest")

from nnxlint.verify.compare import Z_LIMIT, max_relative_difference, max_z_score, tolerance_for  # noqa: E402
from nnxlint.verify.manifest import Fixture, load_fixture  # noqa: E402
from nnxlint.verify.programs import ProgramError, RunOptions, RunResult, expect_failure, run_program  # noqa: E402


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    value: Optional[float] = None
    limit: Optional[float] = None


@dataclass
class FixtureResult:
    fixture: str
    rules: list[str]
    before: str
    dropout: str
    steps: int
    device: str
    tolerance: float
    status: str = "pass"  # pass | fail
    max_loss_difference: Optional[float] = None
    checks: list[Check] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)  # label -> per-step losses

    def check(self, name: str, passed: bool, detail: str, value: Optional[float] = None,
              limit: Optional[float] = None) -> None:
        if value is not None and not math.isfinite(value):  # JSON has no infinity
            detail += "; not comparable: the shapes differ, or a value is NaN or infinite"
            value = None
        self.checks.append(Check(name, passed, detail, value, limit))
        if not passed:
            self.status = "fail"


def describe_device() -> str:
    device = jax.devices()[0]
    return f"{device.platform} ({device.device_kind})"


def verify_fixture(fixture: Fixture) -> FixtureResult:
    platform = jax.devices()[0].platform
    result = FixtureResult(fixture.name, list(fixture.rules), fixture.before, fixture.dropout, fixture.steps,
                           describe_device(), tolerance_for(platform, fixture.tolerance))
    if not fixture.after_path.is_file():
        result.check("after.py", False, "after.py is missing: run `nnxlint verify --regenerate`")
        return result
    try:
        _verify(fixture, result)
    except ProgramError as error:
        result.check("runs", False, str(error))
    return result


def _verify(fixture: Fixture, result: FixtureResult) -> None:
    tolerance = result.tolerance
    baseline_label = fixture.baseline_path.name
    if fixture.before == "fails":
        how = expect_failure(fixture.before_path, fixture.steps, fixture.expected_error or "",
                             fixture.expected_message)
        result.check("before.py fails as documented", True, how)

    statistical = fixture.dropout == "statistical"
    linen_variables: list = []
    baseline = run_program(fixture.baseline_path, fixture.steps, RunOptions(
        legacy=fixture.before == "legacy", dropout_off=statistical, record_linen_init=linen_variables))
    transplanted = linen_variables[0] if linen_variables else None
    after = run_program(fixture.after_path, fixture.steps,
                        RunOptions(dropout_off=statistical, linen_variables=transplanted))
    if transplanted is not None:
        result.check("same starting weights", True, "Linen init variables loaded into the NNX model")
    suffix = " (dropout off)" if statistical else ""
    result.curves[baseline_label + suffix] = baseline.losses.tolist()
    result.curves["after.py" + suffix] = after.losses.tolist()

    loss_difference = max_relative_difference(after.losses, baseline.losses)
    result.max_loss_difference = loss_difference if math.isfinite(loss_difference) else None
    result.check(f"losses{suffix}", loss_difference <= tolerance,
                 f"after.py vs {baseline_label}, {fixture.steps} steps", loss_difference, tolerance)
    output_difference = max_relative_difference(after.outputs, baseline.outputs)
    result.check(f"eval outputs{suffix}", output_difference <= tolerance,
                 f"shapes {after.outputs.shape} vs {baseline.outputs.shape}", output_difference, tolerance)
    _check_dropout_declaration(fixture, result, [baseline, after])

    if fixture.before == "silent-bug":
        buggy = run_program(fixture.before_path, fixture.steps, RunOptions(dropout_off=statistical))
        result.curves["before.py" + suffix] = buggy.losses.tolist()
        bug = max(max_relative_difference(buggy.losses, baseline.losses),
                  max_relative_difference(buggy.outputs, baseline.outputs))
        result.check("before.py shows the bug", bug > tolerance,
                     f"before.py must train differently from {baseline_label}", bug, tolerance)

    if statistical:
        _compare_with_dropout_on(fixture, result, transplanted)


def _check_dropout_declaration(fixture: Fixture, result: FixtureResult, runs: list[RunResult]) -> None:
    drawn = sum(run.dropout_masks_drawn for run in runs)
    if fixture.dropout == "none":
        result.check("no dropout", drawn == 0, f"{drawn} dropout mask(s) drawn")
    elif fixture.dropout == "same-key":
        result.check("dropout active", drawn > 0, f"{drawn} dropout mask(s) drawn while tracing")


def _compare_with_dropout_on(fixture: Fixture, result: FixtureResult, transplanted: Optional[dict]) -> None:
    seeds = range(fixture.dropout_seeds)
    legacy = fixture.before == "legacy"
    baseline_runs = [run_program(fixture.baseline_path, fixture.steps,
                                 RunOptions(legacy=legacy, dropout_seed=seed)).losses for seed in seeds]
    after_runs = [run_program(fixture.after_path, fixture.steps,
                              RunOptions(dropout_seed=seed, linen_variables=transplanted)).losses for seed in seeds]
    result.curves[f"{fixture.baseline_path.name} (dropout on, mean of {len(seeds)} seeds)"] = \
        [float(sum(values) / len(values)) for values in zip(*baseline_runs)]
    result.curves[f"after.py (dropout on, mean of {len(seeds)} seeds)"] = \
        [float(sum(values) / len(values)) for values in zip(*after_runs)]
    z = max_z_score(after_runs, baseline_runs)
    result.check("dropout on: loss curves agree statistically", z < Z_LIMIT,
                 f"max per-step z-score over {len(seeds)} seeds", z, Z_LIMIT)


def main(argv: list[str]) -> int:
    fixture_directory, result_path = Path(argv[0]), Path(argv[1])
    try:
        result = asdict(verify_fixture(load_fixture(fixture_directory)))
    except Exception as error:  # a harness failure is reported, not a fixture verdict
        result = {"fixture": fixture_directory.name, "status": "error",
                  "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
