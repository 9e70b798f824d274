"""Normalisations and activations built from primitive ops stay float under static int8."""

from __future__ import annotations

import onnx
from models import assert_same_signature, save_proto
from models_quantize import hand_layernorm_proto, stacked_data

from modelcrunch.passes.quantize import Mode, QuantizeOptions, quantize_model
from modelcrunch.passes.quantize.config import STATIC_OP_TYPES
from modelcrunch.passes.quantize.primitives import hand_built_math

LAYERNORM = {"fc1_bias", "ln_square", "ln_eps", "ln_gamma", "ln_beta"}


def test_hand_built_layernorm_found_and_plain_arithmetic_left_alone():
    kept = hand_built_math(hand_layernorm_proto(), STATIC_OP_TYPES)
    # The LayerNorm's Mul/Add (and the bias Add feeding it) are found; the SiLU product and the
    # residual Add sit between MatMuls and a Sigmoid, in a region of plain Mul/Add, and keep int8.
    assert set(kept) == LAYERNORM
    assert all("Sqrt" in reason and "ReduceMean" in reason for reason in kept.values())
    assert hand_built_math(hand_layernorm_proto(), ("Conv", "MatMul")) == {}


def _quantize(tmp_path, **kw):
    model = hand_layernorm_proto()
    src = save_proto(model, tmp_path / "ln.onnx")
    calib = stacked_data(model, tmp_path / "calib.npz", n=32)
    options = QuantizeOptions(mode=Mode.STATIC, bench=False, sensitivity=False, **kw)
    return src, quantize_model(src, tmp_path / f"q{len(kw)}.onnx", options, calibration=calib)


def test_static_keeps_hand_built_layernorm_float(tmp_path):
    src, report = _quantize(tmp_path)
    out = onnx.load(str(report.output))
    onnx.checker.check_model(out, full_check=True)
    assert_same_signature(src, report.output)
    reasons = {n.name: n.reason for n in report.nodes_excluded}
    assert set(reasons) >= LAYERNORM and "built from primitive ops" in reasons["ln_gamma"]
    quantized = {n.input[0] for n in out.graph.node if n.op_type == "QuantizeLinear"}
    # The LayerNorm's values stay float (ORT had given each Mul/Add output a Quantize/Dequantize
    # pair); only its result is quantized, as the next MatMul's input.
    assert not quantized & {"h", "square", "var_eps", "scaled"}
    assert "ln" in quantized and "res" in quantized
    assert {"fc1", "fc2", "fc3"} <= set(report.nodes_quantized)
    assert report.fidelity["worst_cosine"] >= 0.99


def test_explicit_op_types_override_the_rule(tmp_path):
    _, report = _quantize(tmp_path, op_types=("MatMul", "Mul", "Add"))
    assert not any("primitive ops" in n.reason for n in report.nodes_excluded)
