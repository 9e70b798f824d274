"""Every bad input gives one clear line on stderr and a documented exit code — never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from models import mlp_proto, save_proto
from typer.testing import CliRunner

from modelcrunch.cli.app import app

runner = CliRunner()


def _bad_models(tmp_path: Path) -> dict[str, Path]:
    good = save_proto(mlp_proto(), tmp_path / "good.onnx")
    cases = {
        "missing": tmp_path / "missing.onnx",
        "empty": tmp_path / "empty.onnx",
        "text": tmp_path / "text.onnx",
        "corrupt": tmp_path / "corrupt.onnx",
        "truncated": tmp_path / "truncated.onnx",
    }
    cases["empty"].write_bytes(b"")
    cases["text"].write_text("hello, I am not a model\n" * 20)
    cases["corrupt"].write_bytes(bytes(range(256)) * 16)
    cases["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    sub = tmp_path / "escape"
    sub.mkdir()
    escaping = sub / "escaping.onnx"
    onnx.save(mlp_proto(), str(escaping), save_as_external_data=True, location="w.bin", size_threshold=0)
    proto = onnx.load(str(escaping), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../etc/passwd"
    onnx.save(proto, str(escaping))
    cases["escaping-external-data"] = escaping
    return cases


@pytest.mark.parametrize(
    "case", ["missing", "empty", "text", "corrupt", "truncated", "escaping-external-data"]
)
def test_bad_model_is_one_line_and_exit_2(tmp_path, case):
    path = _bad_models(tmp_path)[case]
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_json_mode_errors_keep_stdout_empty(tmp_path):
    path = _bad_models(tmp_path)["corrupt"]
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 2 and result.stdout == ""


def test_debug_shows_the_exception(tmp_path):
    path = _bad_models(tmp_path)["text"]
    result = runner.invoke(app, ["inspect", str(path), "--debug"])
    assert result.exit_code != 0 and result.exception is not None


def test_unknown_option_is_usage_error_exit_2(tmp_path):
    path = save_proto(mlp_proto(), tmp_path / "m.onnx")
    result = runner.invoke(app, ["inspect", str(path), "--no-such-option"])
    assert result.exit_code == 2


def test_python_dash_m_entry_point(tmp_path):
    """`python -m modelcrunch` works and keeps errors on stderr with exit code 2."""
    path = _bad_models(tmp_path)["truncated"]
    proc = subprocess.run(
        [sys.executable, "-m", "modelcrunch", "inspect", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "modelcrunch", "--version"], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0 and ok.stdout.startswith("modelcrunch ")


def test_bad_repair_target_is_one_line_and_exit_2(tmp_path):
    path = save_proto(mlp_proto(), tmp_path / "m.onnx")
    result = runner.invoke(
        app, ["prune", str(path), "-o", str(tmp_path / "p.onnx"), "--structured", "--repair-target", "blok"]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: --repair-target blok: choose block or layer"], result.stderr
    assert not (tmp_path / "p.onnx").exists()
