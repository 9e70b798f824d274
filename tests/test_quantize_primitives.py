"""Static int8 keeps float by rule: normalisations and activations built from primitive ops, and
quantizable ops with no quantized layer beside them."""

from __future__ import annotations

import numpy as np
import onnx
from models import assert_same_signature, save_proto
from models_quantize import hand_layernorm_proto, stacked_data

from modelcrunch.passes.quantize import Mode, QuantizeOptions, quantize_model
from modelcrunch.passes.quantize.config import STATIC_OP_TYPES
from modelcrunch.passes.quantize.primitives import float_islands, hand_built_math

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


def _head_proto() -> onnx.ModelProto:
    """Conv → Relu → ConvTranspose → Add(bias) → Relu → Sigmoid: PP-OCR det's head, in small."""
    from onnx import helper

    rng = np.random.default_rng(0)
    inits = {
        "w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
        "wt": rng.standard_normal((8, 1, 2, 2)).astype(np.float32) * 0.3,
        "bt": rng.standard_normal((1, 1, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ConvTranspose", ["r", "wt"], ["t"], strides=[2, 2], name="up"),
        helper.make_node("Add", ["t", "bt"], ["tb"], name="up_bias"),
        helper.make_node("Relu", ["tb"], ["tr"], name="up_relu"),
        helper.make_node("Sigmoid", ["tr"], ["y"], name="prob"),
    ]
    return _small_model(nodes, inits, [1, 16, 16])


def _small_model(nodes: list, inits: dict[str, np.ndarray], out_shape: list[int]) -> onnx.ModelProto:
    """x[n, 3, 8, 8] → ``nodes`` → y[n, *out_shape], opset 13."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", *out_shape])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_ops_with_no_quantized_layer_beside_them_stay_float(tmp_path):
    model = _head_proto()
    assert set(float_islands(model, STATIC_OP_TYPES)) == {"up_bias", "up_relu", "prob"}
    src = save_proto(model, tmp_path / "head.onnx")
    calib = stacked_data(model, tmp_path / "calib.npz", n=16)
    options = QuantizeOptions(mode=Mode.STATIC, bench=False, sensitivity=False)
    report = quantize_model(src, tmp_path / "q.onnx", options, calibration=calib)
    out = onnx.load(str(report.output))
    quantized = {n.input[0] for n in out.graph.node if n.op_type == "QuantizeLinear"}
    assert "c" in quantized or "r" in quantized  # the Conv's side is int8
    assert not quantized & {"t", "tb", "tr", "y"}  # the head after the float ConvTranspose is not
    assert report.nodes_quantized == ["conv"]
    assert report.fidelity["worst_cosine"] >= 0.999


def test_report_groups_nodes_kept_float_for_one_reason(tmp_path):
    from rich.console import Console

    from modelcrunch.render.quantize import render_quantize

    _, report = _quantize(tmp_path)
    console = Console(record=True, width=240)
    render_quantize(report, console)
    text = console.export_text()
    # Five LayerNorm nodes share one reason: one row, with the op counts and a pointer to --json.
    assert "... and 4 more (see --json)" in text and "Add ×3, Mul ×2" in text
    assert text.count("built from primitive ops") == 1
    assert "(target ≥ 0.99)" in text and "quality target" in text


def test_excluding_a_layer_leaves_no_island_behind(tmp_path):
    """--exclude (or the sensitivity analysis) making the only Conv float turns the Add and Mul after
    it into an island: no Quantize/Dequantize pairs around them."""
    from onnx import helper

    rng = np.random.default_rng(1)
    inits = {
        "w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
        "shift": rng.standard_normal((1, 8, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Add", ["c", "shift"], ["a"], name="add"),
        helper.make_node("Mul", ["a", "c"], ["y"], name="mul"),
    ]
    model = _small_model(nodes, inits, [8, 8, 8])
    src = save_proto(model, tmp_path / "m.onnx")
    calib = stacked_data(model, tmp_path / "calib.npz", n=16)

    def quantize(exclude: tuple[str, ...]) -> onnx.ModelProto:
        options = QuantizeOptions(mode=Mode.STATIC, bench=False, sensitivity=False, exclude=exclude)
        return onnx.load(str(quantize_model(src, tmp_path / "q.onnx", options, calibration=calib).output))

    assert [n for n in quantize(()).graph.node if n.op_type == "QuantizeLinear"]
    assert not [n for n in quantize(("conv",)).graph.node if n.op_type == "QuantizeLinear"]
