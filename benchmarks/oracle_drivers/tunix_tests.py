"""Run some of google/tunix's unit tests with pytest (a driver for
benchmarks/nnx109_recall.py: run it with the tunix checkout as working directory).
The third-party modules its test helpers import but these tests never call are stand-ins."""

import os
import sys
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tunix_packages import skip_package_inits

skip_package_inits(os.getcwd())
for name in ("qwix", "tenacity", "huggingface_hub", "sentencepiece", "metrax", "metrax.logging"):
    sys.modules[name] = mock.MagicMock()

import pytest

targets = sys.argv[1:] or ["tests/distillation/feature_extraction/sowed_module_test.py", "tests/models/gemma3"]
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *targets]))
