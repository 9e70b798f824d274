"""``modelcrunch bench``: the command end to end on tiny models (few runs, no timing asserts)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import typer
from models_bench import write_mlp_trio
from typer.testing import CliRunner

from modelcrunch.cli.bench import bench_cmd

FAST = ["--runs", "3", "--warmup", "1", "--quiet"]


@pytest.fixture(scope="module")
def cli():
    # The bench command alone (other commands may not be importable while they are being written).
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """test app"""

    app.command("bench")(bench_cmd)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["bench", *map(str, args)])

    return invoke


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    return write_mlp_trio(tmp_path_factory.mktemp("bench"))


def test_identical_copy_is_exact(cli, trio):
    base, same, _ = trio
    result = cli(base, same, *FAST, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # exactly one JSON document
    assert doc["schema"] == "modelcrunch.bench/1"
    models = doc["results"][0]["models"]
    assert models[1]["ratios"]["latency"] > 0 and models[1]["ratios"]["size"] == pytest.approx(1.0)
    candidate = doc["fidelity"]["candidates"][0]
    assert candidate["exact"] and candidate["outputs"][0]["max_abs"] == 0.0
    assert candidate["outputs"][0]["cosine"] == 1.0
    assert doc["passed"] and doc["gates"] == []


def test_degraded_copy_trips_the_gate(cli, trio):
    base, _, noisy = trio
    result = cli(base, noisy, *FAST, "--min-cosine", "0.9999", "--max-size-ratio", "2")
    assert result.exit_code == 3
    assert "gate failed: cosine" in result.stderr and "< 0.9999" in result.stderr
    assert "mlp_noisy.onnx" in result.stderr
    assert "size ratio" not in result.stderr  # that gate passed


def test_json_report_is_printed_before_exit_3(cli, trio):
    base, _, noisy = trio
    result = cli(base, noisy, *FAST, "--json", "--min-cosine", "0.9999", "--max-latency-ratio", "1000")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    gates = {g["gate"]: g for g in doc["gates"]}
    assert not gates["cosine"]["passed"] and gates["cosine"]["limit"] == 0.9999
    assert gates["latency ratio"]["passed"]
    assert doc["passed"] is False


def test_csv_and_markdown(cli, trio):
    base, same, _ = trio
    result = cli(base, same, *FAST, "--csv", "--batch", "1,4")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["model"], r["batch"]) for r in rows] == [
        ("mlp.onnx", "1"),
        ("mlp_copy.onnx", "1"),
        ("mlp.onnx", "4"),
        ("mlp_copy.onnx", "4"),
    ]
    assert rows[1]["cosine"] == "1.000000"
    result = cli(base, same, *FAST, "--markdown")
    assert result.exit_code == 0
    assert result.stdout.startswith("| model | batch |")
    assert "mlp_copy.onnx" in result.stdout


def test_rich_tables_by_default(cli, trio):
    base, same, _ = trio
    result = cli(base, same, *FAST)
    assert result.exit_code == 0, result.output
    assert "Latency (ms)" in result.stdout and "Fidelity vs the first model" in result.stdout


def test_inputs_labels_and_accuracy_gate(cli, trio, tmp_path):
    base, _, noisy = trio
    x = np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32)
    from models import run_ort

    labels = run_ort(base, {"input": x})[0].argmax(-1)
    np.savez(tmp_path / "d.npz", input=x, label=labels)
    result = cli(base, noisy, *FAST, "--inputs", tmp_path / "d.npz", "--json", "--max-accuracy-drop", "1")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["fidelity"]["samples"] == 12 and doc["fidelity"]["accuracy"][0] == 1.0


def test_bad_inputs_are_one_line_exit_2(cli, trio, tmp_path):
    base, same, _ = trio
    np.savez(tmp_path / "bad.npz", input=np.zeros((2, 16), np.float64))
    for args, expected in [
        ((tmp_path / "missing.onnx", same), "no such file"),
        ((base, same, "--inputs", tmp_path / "bad.npz"), "is float64, the model expects float32"),
        ((base, "--inputs", tmp_path / "nope.npz"), "no such file"),
        ((base, "--provider", "tpu"), "unknown provider"),
        ((base, "--batch", "0"), "positive"),
        ((base, "--max-latency-ratio", "1"), "give a baseline and a candidate"),
        ((base, same, "--json", "--csv"), "choose one of"),
    ]:
        result = cli(*args, *FAST)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_cuda_is_a_clear_error(cli, trio, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    result = cli(trio[0], "--provider", "cuda", *FAST)
    assert result.exit_code == 2
    assert "onnxruntime-gpu" in result.stderr and "installed providers: CPUExecutionProvider" in result.stderr
