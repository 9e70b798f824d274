"""fp16 (compute, If/Loop/Scan bodies included) and bf16 (storage): checker-valid, same signature,
runs in ONNX Runtime's CPU provider, close to the original."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import typer
from models import assert_close_on_ort, assert_same_signature, run_ort, save_proto
from models_quantize import (
    cnn_proto,
    einsum_proto,
    if_captured_proto,
    loop_matmul_proto,
    matmul_proto,
    stacked_data,
)  # fmt: skip
from typer.testing import CliRunner

from modelcrunch.cli.quantize import quantize_cmd
from modelcrunch.io import canonicalize
from modelcrunch.passes.quantize import Mode, QuantizeOptions, quantize_model
from modelcrunch.passes.quantize.fp16 import BFLOAT16, FLOAT16, convert_half

FAST = {"bench": False, "max_calibration_samples": 16, "max_eval_samples": 16}
#: bf16 keeps 8 significant bits (weight error <= 2^-9 relative), fp16 11: a few stacked layers
#: stay well within these.
BF16_TOL = {"rtol": 2e-2, "atol": 2e-2}
FP16_TOL = {"rtol": 5e-3, "atol": 5e-3}
X = np.random.default_rng(1).random((2, 64)).astype(np.float32)


def converted(proto: onnx.ModelProto, dtype: ir.DataType, **kwargs) -> tuple[onnx.ModelProto, dict[str, str]]:
    model = canonicalize(ir.serde.deserialize_model(proto))
    keep = convert_half(model, dtype=dtype, **kwargs)
    result = ir.to_proto(model)
    onnx.checker.check_model(result, full_check=True)
    return result, keep


def initializer_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Initializer name → data type, in every graph (subgraph bodies included)."""
    types: dict[str, int] = {}

    def walk(graph: onnx.GraphProto) -> None:
        types.update({t.name: t.data_type for t in graph.initializer})
        for node in graph.node:
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(sub)

    walk(proto.graph)
    return types


def test_bf16_stores_weights_and_runs_on_cpu(tmp_path):
    model = matmul_proto()
    src, calib = save_proto(model, tmp_path / "mm.onnx"), stacked_data(model, tmp_path / "c.npz")
    out = tmp_path / "q.onnx"
    report = quantize_model(src, out, QuantizeOptions(mode=Mode.BF16, **FAST), calibration=calib)
    onnx.checker.check_model(str(out), full_check=True)
    assert_same_signature(src, out)
    assert_close_on_ort(src, out, {"input": X}, **BF16_TOL)
    types = initializer_types(onnx.load(str(out)))
    assert types["w1"] == types["w2"] == onnx.TensorProto.BFLOAT16  # 64x64: stored as bf16
    assert types["b2"] == types["w3"] == onnx.TensorProto.FLOAT  # < 1024 elements: exact
    assert report.mode == "bf16" and report.size_after < 0.6 * report.size_before
    assert report.fidelity["worst_cosine"] > 0.9999
    assert any("bfloat16" in note for note in report.preprocessing)


def test_bf16_keeps_small_and_precision_sensitive_weights_fp32():
    proto = einsum_proto()
    result, keep = converted(proto, BFLOAT16)
    assert_close_on_ort(proto, result, {"input": X}, **BF16_TOL)
    types = initializer_types(result)
    assert types["w"] == onnx.TensorProto.BFLOAT16
    assert types["e"] == types["b"] == onnx.TensorProto.FLOAT
    assert "precision-sensitive" in keep["einsum"] and "mm" not in keep
    _, keep = converted(cnn_proto(), BFLOAT16)
    assert "under 1024 elements" in keep["conv1"] and "conv2" not in keep


@pytest.mark.parametrize("cond", [True, False])
def test_fp16_converts_if_branches_with_captured_weights(tmp_path, cond):
    src = save_proto(if_captured_proto(), tmp_path / "if.onnx")
    out = tmp_path / "q.onnx"
    report = quantize_model(src, out, QuantizeOptions(mode=Mode.FP16, **FAST))
    onnx.checker.check_model(str(out), full_check=True)
    assert_same_signature(src, out)
    assert_close_on_ort(src, out, {"input": X, "cond": np.array(cond)}, **FP16_TOL)
    types = initializer_types(onnx.load(str(out)))
    for name in ("w_in", "w_shared", "b_shared", "b_then", "w_else"):  # captured and branch-local
        assert types[name] == onnx.TensorProto.FLOAT16, name
    assert {"mm_in", "then_mm", "else_mm"} <= set(report.nodes_quantized)
    reasons = {n.name: n.reason for n in report.nodes_excluded}
    assert set(reasons) == {"else_softmax"} and "fp16" in reasons["else_softmax"]


def test_fp16_loop_body_keeps_loop_carried_types():
    proto = loop_matmul_proto()
    result, keep = converted(proto, FLOAT16)
    assert keep == {}
    for ref, got in zip(run_ort(proto, {"input": X}), run_ort(result, {"input": X}), strict=True):
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, **FP16_TOL)
    types = initializer_types(result)
    assert types["w"] == types["b"] == onnx.TensorProto.FLOAT16  # captured and body-local
    body = next(a.g for a in result.graph.node[0].attribute if a.name == "body")
    floats = [v.type.tensor_type.elem_type for v in [*body.input[2:], *body.output[1:]]]
    assert floats == [onnx.TensorProto.FLOAT] * 3  # carried in, carried out, scan output


def test_excluding_an_if_keeps_its_bodies_fp32():
    proto = if_captured_proto()
    result, keep = converted(proto, FLOAT16, exclude=frozenset({"branch"}))
    for cond in (True, False):
        assert_close_on_ort(proto, result, {"input": X, "cond": np.array(cond)}, **FP16_TOL)
    types = initializer_types(result)
    assert types["w_in"] == onnx.TensorProto.FLOAT16
    assert types["w_shared"] == types["w_else"] == types["b_then"] == onnx.TensorProto.FLOAT
    assert keep["branch"] == "excluded by the user" and "inside 'branch'" in keep["then_mm"]


def test_cli_bf16_json(tmp_path):
    model = matmul_proto()
    src, calib = save_proto(model, tmp_path / "mm.onnx"), stacked_data(model, tmp_path / "c.npz")
    out = tmp_path / "q.onnx"
    app = typer.Typer(add_completion=False)
    app.command()(quantize_cmd)
    args = [src, "-o", out, "--mode", "bf16", "--calibration", calib, "--no-bench", "--json"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["mode"] == "bf16" and document["target"]["met"]
    assert document["size"]["ratio"] < 0.6 and document["fidelity"]["worst_cosine"] > 0.9999
    assert Path(document["output"]).is_file()
