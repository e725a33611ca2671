import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The suite compiles a few hundred small programs with XLA on CPU, here and in the verify
# workers (they inherit the environment).  Without LLVM's optimisation passes that takes
# about half the CPU time (the fixture corpus: 10 min of CPU instead of 17), and every
# comparison is between two programs compiled alike.  `nnxlint verify` run by a user keeps
# XLA's defaults.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()


@pytest.fixture
def run_cli():
    """Run ``nnxlint`` in a subprocess; returns the CompletedProcess."""
    import subprocess

    def run(*arguments, cwd=None, input=None):
        return subprocess.run([sys.executable, "-m", "nnxlint", *map(str, arguments)], cwd=cwd,
                              capture_output=True, text=True, input=input,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})

    return run


@pytest.fixture(scope="session")
def jax_compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache for the worker processes a test starts (they inherit the
    environment): tests whose workers compile the same small programs skip most XLA compilation."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax-compilation-cache")))
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
        yield


def pytest_collection_modifyitems(config, items):
    """The heavy tests first: spread over processes, the suite then ends with the short ones."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
