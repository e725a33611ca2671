"""Without the `verify` extra, `nnxlint verify` says what to install (no traceback)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from click.testing import CliRunner

from nnxlint.cli import main


def test_the_command_loads_without_jax_or_numpy():
    blocked = "import sys\nfor name in ('numpy', 'jax', 'flax', 'optax'):\n    sys.modules[name] = None\n"
    subprocess.run([sys.executable, "-c", blocked + "import nnxlint.verify.command"], check=True)


def test_missing_extra_is_a_clear_usage_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in ("jax", "flax", "optax") else real(name, *args))
    result = CliRunner().invoke(main, ["verify", "fixtures"])
    assert result.exit_code == 2
    assert "pip install 'nnxlint[verify]'" in result.output and "Traceback" not in result.output
