"""Already-optimized input models (QDQ, QOperator, dynamic int8, MatMulNBits, float16) in every
command: a valid model or a one-line refusal, never a traceback, never a second quantization."""

from __future__ import annotations

import json

import onnx_ir as ir
import pytest
from models_quantized import data_for, float_models, quantized_models
from typer.testing import CliRunner

from modelcrunch.analysis.quantized import float_weighted_layers, optimized_layers
from modelcrunch.cli.app import app


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantized")
    return folder, quantized_models(folder)


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def test_forms_are_recognised(models):
    _, paths = models
    forms = {name: {layer.form for layer in optimized_layers(ir.load(path))} for name, path in paths.items()}
    assert forms == {
        "conv_qdq": {"QDQ"},
        "conv_qop": {"QOperator"},
        "mlp_qdq": {"QDQ"},
        "mlp_dynamic": {"dynamic"},
    }
    assert all(not float_weighted_layers(ir.load(path)) for path in paths.values())


@pytest.mark.parametrize("name", ["conv_qdq", "conv_qop", "mlp_qdq", "mlp_dynamic"])
def test_quantize_does_not_stack(models, name):
    folder, paths = models
    out = folder / f"{name}_again.onnx"
    result = run("quantize", paths[name], "-o", out, "--calibration", data_for(name, folder), "--no-bench",
                 "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["mode"] == "none" and "already quantized" in doc["mode_reason"]
    before = [n.op_type for n in ir.load(paths[name]).graph]
    assert [n.op_type for n in ir.load(out).graph] == before  # nothing stacked


@pytest.mark.parametrize("name", ["mlp_qdq", "mlp_dynamic", "conv_qdq"])
def test_prune_and_factorize_skip_quantized_layers_with_a_reason(models, name):
    folder, paths = models
    data = data_for(name, folder)
    result = run(
        "prune",
        paths[name],
        "-o",
        folder / "p.onnx",
        "--structured",
        "--calibration",
        data,
        "--json",
        "--no-measure",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert any("already quantized" in s["reason"] for s in doc["skipped_groups"]), doc["skipped_groups"]
    # 50 % of a random toy's weights zeroed misses any task target: judged by nothing here (--task
    # generic --min-cosine 0), this checks which tensors were touched
    unjudged = ("--task", "generic", "--min-cosine", "0")
    result = run("prune", paths[name], "-o", folder / "s.onnx", "--sparsity", "0.5", "--all-weights",
                 "--calibration", data, "--json", "--no-measure", *unjudged)  # fmt: skip
    assert result.exit_code == 0, result.output
    touched = {layer["name"] for layer in json.loads(result.stdout)["sparsity"]}
    model = ir.load(paths[name])
    quant_params = {
        v.name for n in model.graph if "Quant" in n.op_type or "Integer" in n.op_type for v in n.inputs if v
    }
    assert not touched & quant_params  # no scale or zero point was pruned
    result = run("factorize", paths[name], "-o", folder / "f.onnx", "--calibration", data, "--no-measure")
    assert result.exit_code in (0, 3), result.output
    for command in (["inspect"], ["bench", "--runs", "5", "--warmup", "1"]):
        assert run(*command, paths[name]).exit_code == 0


def test_mixed_model_quantizes_only_float_layers(tmp_path):
    folder = tmp_path
    floats = float_models(folder)
    nbits = folder / "nbits.onnx"
    data = data_for("mlp", folder)
    result = run("quantize", floats["mlp"], "-o", nbits, "--mode", "weight-only", "--calibration", data,
                 "--no-bench", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {layer.form for layer in optimized_layers(ir.load(nbits))} == {"4-bit"}
    result = run("quantize", nbits, "-o", folder / "x.onnx", "--mode", "static", "--no-bench", "-q")
    assert result.exit_code == 2 and "second time" in result.output
    result = run("quantize", nbits, "-o", folder / "y.onnx", "--calibration", data, "--no-bench", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] in ("storage", "weight-only")


def test_float16_model_prunes_with_repair(tmp_path):
    floats = float_models(tmp_path)
    half = tmp_path / "half.onnx"
    data = data_for("mlp", tmp_path)
    assert run("quantize", floats["mlp"], "-o", half, "--mode", "fp16", "--no-bench", "-q").exit_code == 0
    result = run("prune", half, "-o", tmp_path / "p.onnx", "--structured", "--calibration", data, "--json")
    assert result.exit_code == 0, result.output
