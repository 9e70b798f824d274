"""Every command with defaults on every corpus model (opt-in: ``pytest -m real_models``).

Issue 17's bar: exit 0 with a valid model, or a one-line refusal; never a traceback. Runs the
CLI as a user would (``benchmarks/corpus_table.py``, one subprocess per command, under ``nice``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".real_models"
sys.path.insert(0, str(ROOT / "benchmarks"))

import corpus_table  # noqa: E402

pytestmark = pytest.mark.real_models
TIMEOUT = float(os.environ.get("MODELCRUNCH_CORPUS_TIMEOUT", "900"))
MODELS = corpus_table.corpus(REAL) if (REAL / "manifest.json").exists() else []


@pytest.mark.parametrize("command", corpus_table.COMMANDS)
@pytest.mark.parametrize("entry", MODELS, ids=[m[0] for m in MODELS])
def test_command_on_corpus_model(entry, command, tmp_path):
    name, model, calib, test = entry
    run = corpus_table.run_one(name, command, model, calib, test, tmp_path, TIMEOUT)
    assert run.exit is not None, f"{command} {name}: still running after {TIMEOUT:.0f} s"
    assert not run.traceback, f"{command} {name}: traceback"
    if run.exit == 0 and command not in ("inspect", "bench"):
        assert run.valid_model, f"{command} {name}: exit 0 without a model ONNX Runtime loads"
    if run.exit != 0:
        assert run.message.startswith(("error:", "WARNING", "gate", "FAILED")) or run.exit == 3, run.message
