"""The distill extra stays optional: no torch import by default, one line without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import modelcrunch.distill
from modelcrunch.cli.app import app

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


def test_default_import_and_cli_do_not_import_torch():
    modules = "modelcrunch, modelcrunch.cli.app, modelcrunch.distill.config"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_without_torch_distill_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(modelcrunch.distill, "torch_available", lambda: False)
    mlp = str(SAMPLES / "mlp.onnx")
    result = CliRunner().invoke(
        app, ["distill", mlp, "--teacher", mlp, "--data", str(SAMPLES / "mlp_digits_calib.npz"),
              "-o", str(tmp_path / "o.onnx")],
    )  # fmt: skip
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: distill needs PyTorch: pip install 'modelcrunch[distill]'"]


def test_bad_distill_budget_fails_before_the_rewrite_naming_its_own_option(tmp_path):
    out = tmp_path / "o.onnx"
    result = CliRunner().invoke(
        app, ["prune", str(SAMPLES / "mlp.onnx"), "-o", str(out), "--sparsity", "0.5", "--distill",
              "--distill-budget", "0", "--calibration", str(SAMPLES / "mlp_digits_calib.npz")],
    )  # fmt: skip
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--distill-budget '0'" in lines[0], lines
    assert not out.exists()
