"""The isolated process that imports the user's code.

Run as ``python -I -B -m nnxlint.verify.user_worker JOBS.json RESULTS.jsonl`` by
``nnxlint.verify.isolated.run_isolated``; it runs the jobs in order and appends
one JSON line per finished job.  A job says what to do (``compare``: ``nnxlint
verify --against``; ``transplant``: ``nnxlint transplant``).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def run(job: dict) -> dict:
    if job["task"] == "compare":
        from nnxlint.verify.against_worker import compare_class

        return compare_class(job)
    from nnxlint.verify.checkpoint_worker import transplant_checkpoint

    return transplant_checkpoint(job)


def _error_record(error: Exception) -> dict:
    from nnxlint.verify.user_code import BuildError

    if isinstance(error, BuildError):
        return {"status": "error", "error": str(error)}
    return {"status": "error", "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}


def main(argv: list[str]) -> int:
    jobs_path, results_path = Path(argv[0]), Path(argv[1])
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    from nnxlint.verify.user_code import forget_user_modules

    for job in json.loads(jobs_path.read_text(encoding="utf-8")):
        try:
            result = run(job)
        except Exception as error:
            result = _error_record(error)
        for root in job.get("roots", []):  # the next job imports its own modules afresh
            forget_user_modules(Path(root))
        with open(results_path, "a", encoding="utf-8") as results:
            results.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
