import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_cli():
    """Run ``nnxlint`` in a subprocess; returns the CompletedProcess."""
    import subprocess

    def run(*arguments, cwd=None, input=None):
        return subprocess.run([sys.executable, "-m", "nnxlint", *map(str, arguments)], cwd=cwd,
                              capture_output=True, text=True, input=input,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})

    return run
