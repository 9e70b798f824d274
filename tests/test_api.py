"""The Python API (modelcrunch/api.py): one function per command, the command's options as keyword
arguments, the command's report back; the CLI's promises hold (nothing written on a miss)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import modelcrunch as mc
from modelcrunch.cli.app import app
from modelcrunch.data import load_dataset
from modelcrunch.runtime.session import make_session

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
CNN, MLP = SAMPLES / "cnn.onnx", SAMPLES / "mlp.onnx"


def test_inspect_and_quantize(tmp_path):
    report = mc.inspect(CNN, batch=1)
    assert report.to_dict()["params"] > 0
    out = tmp_path / "q.onnx"
    q = mc.quantize(CNN, out, calibration=SAMPLES / "cnn_digits_calib.npz", mode="dynamic", bench=False)
    assert q.passed and out.exists() and q.to_dict()["mode"] == "dynamic"
    make_session(out)


def test_prune_takes_data_objects_and_returns_the_cli_report(tmp_path):
    calib = load_dataset(SAMPLES / "cnn_digits_calib.npz")
    out = tmp_path / "p.onnx"
    report = mc.prune(CNN, out, structured=True, ratio=0.5, calibration=calib, measure=False)
    assert report.passed and out.exists()
    cli = CliRunner().invoke(
        app, ["prune", str(CNN), "-o", str(tmp_path / "c.onnx"), "--structured", "--ratio", "0.5",
              "--calibration", str(SAMPLES / "cnn_digits_calib.npz"), "--no-measure", "--json"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.stderr
    assert set(json.loads(cli.stdout)) == set(json.loads(json.dumps(report.to_dict(), default=str)))


def test_a_missed_target_returns_a_report_and_writes_nothing(tmp_path):
    out = tmp_path / "p.onnx"
    report = mc.prune(MLP, out, structured=True, ratio=0.7, repair=False, measure=False,
                      calibration=SAMPLES / "mlp_digits_calib.npz", min_top1_agreement=0.99)  # fmt: skip
    assert not report.passed and report.output is None and not out.exists()
    kept = mc.prune(MLP, out, structured=True, ratio=0.7, repair=False, measure=False,
                    calibration=SAMPLES / "mlp_digits_calib.npz", keep_best=True)  # fmt: skip
    assert not kept.passed and out.exists()


def test_factorize_and_bench(tmp_path):
    out = tmp_path / "f.onnx"
    report = mc.factorize(MLP, out, energy=0.99, calibration=SAMPLES / "mlp_digits_calib.npz", measure=False,
                          keep_best=True)  # fmt: skip
    assert out.exists() and report.to_dict()["layers"]
    bench = mc.bench([MLP, out], inputs=SAMPLES / "mlp_digits_test.npz", runs=5, warmup=1,
                     max_size_ratio=10.0, min_cosine=0.0)  # fmt: skip
    assert bench.passed and len(bench.gates) == 2 and bench.verdicts


def test_unknown_options_are_type_errors_and_bad_values_one_line_errors(tmp_path):
    with pytest.raises(TypeError, match="min_fl"):
        mc.prune(MLP, tmp_path / "p.onnx", structured=True, min_fl=0.9)
    with pytest.raises(mc.ModelcrunchError, match="--ratio 1.5"):
        mc.prune(MLP, tmp_path / "p.onnx", structured=True, ratio=1.5)
    assert np.isfinite(mc.inspect(MLP, shape={"input": [2, 64]}).to_dict()["macs_total"])
