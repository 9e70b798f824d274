"""modelcrunch factorize: rewrites checker-valid, same signature, exact at full rank, bounded below."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from models import assert_close_on_ort, assert_same_signature, run_ort, save_proto
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from modelcrunch.cli.app import app
from modelcrunch.data import Dataset
from modelcrunch.io import load_model, save_model
from modelcrunch.passes.factorize import FactorizeConfig, RankPolicy, factorize
from modelcrunch.passes.factorize.conv_channel import ConvChannel
from modelcrunch.passes.factorize.conv_spatial import ConvSpatial
from modelcrunch.passes.factorize.conv_tucker import ConvTucker
from modelcrunch.passes.factorize.layers import find_layers
from modelcrunch.passes.factorize.linear import LinearSvd
from modelcrunch.passes.factorize.lowrank import NameScope, replace_layer

RNG = np.random.default_rng(42)
FULL_RANK_RTOL, FULL_RANK_ATOL = 1e-4, 1e-4


def _graph_model(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def matmul3d_proto(k: int = 48, n: int = 40) -> onnx.ModelProto:
    """x[b, s, K] · W[K, N] + bias (a transformer projection)."""
    return _graph_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"], name="proj"),
            helper.make_node("Add", ["m", "b"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 5, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 5, n])],
        {"w": _f(k, n), "b": _f(n)},
    )


def gemm_proto(trans_a: int = 0, trans_b: int = 1) -> onnx.ModelProto:
    k, n = 36, 28
    x_shape = ["batch", k] if not trans_a else [k, "batch"]
    w = _f(n, k) if trans_b else _f(k, n)
    return _graph_model(
        [
            helper.make_node(
                "Gemm", ["x", "w", "c"], ["y"], name="fc", alpha=0.7, beta=1.3, transA=trans_a, transB=trans_b
            )
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        {"w": w, "c": _f(n)},
    )


def conv_proto(*, group: int = 1, auto_pad: str | None = None, c: int = 8, o: int = 12) -> onnx.ModelProto:
    attrs = {"strides": [2, 1], "dilations": [1, 2], "kernel_shape": [3, 3], "group": group}
    attrs.update({"auto_pad": auto_pad} if auto_pad else {"pads": [1, 2, 0, 1]})
    if auto_pad and auto_pad.startswith("SAME"):
        attrs["dilations"] = [1, 1]  # ONNX Runtime rejects dilation with SAME_* padding
    w = _f(o, c // group, 3, 3)
    return _graph_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **attrs)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c, 11, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", o, "h", "w"])],
        {"w": w, "b": _f(o)},
    )


def constant_weight_proto() -> onnx.ModelProto:
    w = _f(32, 24)
    return _graph_model(
        [
            helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "w")),
            helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 24])],
        {},
    )


def shared_weight_proto() -> onnx.ModelProto:
    return _graph_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="first"),
            helper.make_node("MatMul", ["x", "w"], ["g"], name="second"),
            helper.make_node("Add", ["h", "g"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 32])],
        {"w": _f(32, 32)},
    )


def _rewrite_full_rank(src, dst, cls) -> int:
    """Apply ``cls`` at full rank to every factorizable layer; returns how many were rewritten."""
    model = load_model(src)
    layers, _ = find_layers(model)
    names = NameScope(model)
    for layer in layers:
        decomp = cls(layer) if layer.kind == "conv" else LinearSvd(layer)
        replace_layer(layer, decomp.emit(decomp.factors(decomp.max_ranks, data_aware=False), names))
    save_model(model, dst)
    return len(layers)


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize(
    "proto, feed",
    [
        (matmul3d_proto(), {"x": _f(3, 5, 48)}),
        (gemm_proto(0, 1), {"x": _f(4, 36)}),
        (gemm_proto(1, 0), {"x": _f(36, 4)}),
    ],
)
def test_linear_exact_at_full_rank(tmp_path, proto, feed):
    src = save_proto(proto, tmp_path / "in.onnx")
    assert _rewrite_full_rank(src, tmp_path / "out.onnx", None) == 1
    assert_same_signature(src, tmp_path / "out.onnx")
    assert_close_on_ort(src, tmp_path / "out.onnx", feed, rtol=FULL_RANK_RTOL, atol=FULL_RANK_ATOL)
    assert _ops(tmp_path / "out.onnx").count("MatMul") >= 1 and len(_ops(tmp_path / "out.onnx")) > len(
        proto.graph.node
    )


@pytest.mark.parametrize("cls, n_convs", [(ConvChannel, 2), (ConvSpatial, 2), (ConvTucker, 3)])
@pytest.mark.parametrize("auto_pad", [None, "SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_exact_at_full_rank(tmp_path, cls, n_convs, auto_pad):
    src = save_proto(conv_proto(auto_pad=auto_pad), tmp_path / "in.onnx")
    _rewrite_full_rank(src, tmp_path / "out.onnx", cls)
    assert _ops(tmp_path / "out.onnx").count("Conv") == n_convs
    assert_same_signature(src, tmp_path / "out.onnx")
    assert_close_on_ort(
        src, tmp_path / "out.onnx", {"x": _f(2, 8, 11, 10)}, rtol=FULL_RANK_RTOL, atol=FULL_RANK_ATOL
    )


def test_linear_reduced_rank_error_bound(tmp_path):
    """‖ΔY‖_F ≤ ‖X‖_F·σ_{r+1}(W): the output error of a linear layer is bounded by the dropped spectrum."""
    proto = matmul3d_proto()
    src = save_proto(proto, tmp_path / "in.onnx")
    model = load_model(src)
    report = factorize(model, FactorizeConfig(policy=RankPolicy("ratio", 0.25)))
    save_model(model, tmp_path / "out.onnx")
    (layer,) = report.factorized
    w = numpy_helper.to_array(proto.graph.initializer[0])
    sigma = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    r = layer.rank[0]
    assert layer.weight_error == pytest.approx(np.sqrt((sigma[r:] ** 2).sum() / (sigma**2).sum()), rel=1e-6)
    x = _f(4, 5, 48)
    (ref,), (got,) = run_ort(src, {"x": x}), run_ort(tmp_path / "out.onnx", {"x": x})
    assert np.linalg.norm(got - ref) <= np.linalg.norm(x) * sigma[r] * (1 + 1e-4) + 1e-4
    assert layer.params_after == r * (48 + 40) < layer.params_before
    assert _ops(tmp_path / "out.onnx").count("MatMul") == 2


@pytest.mark.parametrize("method", ["channel", "spatial", "tucker"])
def test_conv_reduced_rank_through_pass(tmp_path, method):
    src = save_proto(conv_proto(c=16, o=16), tmp_path / "in.onnx")
    model = load_model(src)
    report = factorize(model, FactorizeConfig(policy=RankPolicy("ratio", 0.25), method=method))
    save_model(model, tmp_path / "out.onnx")
    (layer,) = report.factorized
    assert layer.method == method and 0 < layer.weight_error < 1
    x = _f(2, 16, 11, 10)
    (ref,), (got,) = run_ort(src, {"x": x}), run_ort(tmp_path / "out.onnx", {"x": x})
    bias = numpy_helper.to_array(next(i for i in onnx.load(str(src)).graph.initializer if i.name == "b"))
    # The conv is linear in its kernel: output error relative to the bias-free output tracks the weight error.
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref - bias[None, :, None, None])
    assert rel < 1.5 * layer.weight_error + 1e-3


def test_depthwise_and_grouped_are_skipped_with_reason(tmp_path):
    for group, word in ((8, "depthwise"), (2, "grouped")):
        model = load_model(save_proto(conv_proto(group=group, c=8, o=8), tmp_path / f"g{group}.onnx"))
        report = factorize(model, FactorizeConfig(policy=RankPolicy("ratio", 0.25)))
        (layer,) = report.skipped
        assert word in layer.reason and not report.factorized


def test_no_saving_rank_is_skipped(tmp_path):
    model = load_model(save_proto(matmul3d_proto(), tmp_path / "in.onnx"))
    report = factorize(model, FactorizeConfig(policy=RankPolicy("ratio", 1.0)))
    (layer,) = report.skipped
    assert layer.reason.startswith("no saving") and "≥" in layer.reason
    assert [n.op_type for n in model.graph] == ["MatMul", "Add"]


def test_min_size_and_exclude(tmp_path):
    src = save_proto(matmul3d_proto(), tmp_path / "in.onnx")
    for config in (
        FactorizeConfig(min_size=10**6),
        FactorizeConfig(exclude=("MatMul",)),
        FactorizeConfig(exclude=("pro*",)),
    ):
        report = factorize(load_model(src), config)
        assert not report.factorized and report.skipped[0].reason


def test_constant_weight_is_factorized(tmp_path):
    src = save_proto(constant_weight_proto(), tmp_path / "in.onnx")
    model = load_model(src)
    report = factorize(model, FactorizeConfig(policy=RankPolicy("ratio", 0.25)))
    assert len(report.factorized) == 1
    save_model(model, tmp_path / "out.onnx")
    assert "Constant" not in _ops(tmp_path / "out.onnx")
    assert_same_signature(src, tmp_path / "out.onnx")


def test_shared_weight_is_skipped_and_other_user_intact(tmp_path):
    src = save_proto(shared_weight_proto(), tmp_path / "in.onnx")
    model = load_model(src)
    report = factorize(model, FactorizeConfig(policy=RankPolicy("ratio", 0.25)))
    assert not report.factorized and all("shared" in x.reason for x in report.skipped)
    save_model(model, tmp_path / "out.onnx")
    assert_close_on_ort(src, tmp_path / "out.onnx", {"x": _f(3, 32)}, rtol=0, atol=0)


def test_subgraph_weights(tmp_path):
    from models import if_proto

    src = save_proto(if_proto(), tmp_path / "in.onnx")
    model = load_model(src)
    layers, skipped = find_layers(model)
    assert len(layers) == 2  # the then-branch initializer and the else-branch Constant
    names = NameScope(model)
    for layer in layers:
        d = LinearSvd(layer)
        replace_layer(layer, d.emit(d.factors(d.max_ranks, False), names))
    save_model(model, tmp_path / "out.onnx")
    for cond in (True, False):
        assert_close_on_ort(
            src,
            tmp_path / "out.onnx",
            {"x": _f(2, 4), "cond": np.array(cond)},
            rtol=FULL_RANK_RTOL,
            atol=FULL_RANK_ATOL,
        )


def _correlated(n: int, k: int) -> np.ndarray:
    mix = RNG.standard_normal((k, k)) * np.logspace(0, -3, k)[None, :]
    return (RNG.standard_normal((n, k)) @ mix.T).astype(np.float32)


def test_data_aware_beats_plain_svd_on_correlated_inputs(tmp_path):
    k, n = 48, 40
    proto = _graph_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", n])],
        {"w": _f(k, n)},
    )
    src = save_proto(proto, tmp_path / "in.onnx")
    x = _correlated(256, k)
    calib = Dataset([{"x": x[i : i + 1]} for i in range(128)])
    config = FactorizeConfig(policy=RankPolicy("ratio", 0.25))
    errors = {}
    for label, data in (("plain", None), ("data", calib)):
        model = load_model(src)
        report = factorize(model, config, data)
        save_model(model, tmp_path / f"{label}.onnx")
        (ref,), (got,) = run_ort(src, {"x": x[128:]}), run_ort(tmp_path / f"{label}.onnx", {"x": x[128:]})
        errors[label] = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    (layer,) = report.factorized
    assert layer.data_aware and layer.output_error_data_aware < layer.output_error_plain
    assert errors["data"] < 0.5 * errors["plain"]


def test_global_budget_meets_target(tmp_path):
    src = save_proto(matmul3d_proto(64, 64), tmp_path / "in.onnx")
    report = factorize(load_model(src), FactorizeConfig(policy=RankPolicy("params", 0.5, round_to=8)))
    totals = report.totals()
    assert totals["params_after"] <= 0.5 * totals["params_before"]
    assert all(x.rank[0] % 8 == 0 for x in report.factorized)


def test_cli_json_is_one_document_and_bad_option_exits_2(tmp_path):
    src = save_proto(matmul3d_proto(), tmp_path / "in.onnx")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "factorize",
            str(src),
            "-o",
            str(tmp_path / "out.onnx"),
            "--rank-ratio",
            "0.25",
            "--json",
            "--no-measure",
            "--keep-best",
        ],
    )
    # rank 1/4 of a random matrix misses the default target: exit 3, the report still one document
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "modelcrunch.factorize/1" and doc["totals"]["layers_factorized"] == 1
    assert doc["passed"] is False and (tmp_path / "out.onnx").exists()  # --keep-best wrote it
    for bad in (["--energy", "1.5"], ["--method", "cp"], ["--rank-ratio", "0.5", "--energy", "0.9"]):
        result = runner.invoke(app, ["factorize", str(src), "-o", str(tmp_path / "o2.onnx"), *bad])
        assert result.exit_code == 2, (bad, result.output)


def _dynamic_conv_proto() -> onnx.ModelProto:
    """A 3×3 conv 8→12, stride 1, pad 1, on an input whose height and width are symbolic."""
    return _graph_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 12, "h", "w"])],
        {"w": _f(12, 8, 3, 3)},
    )


def test_macs_use_shape_overrides_and_say_when_dims_are_unknown(tmp_path):
    path = save_proto(_dynamic_conv_proto(), tmp_path / "dyn.onnx")
    config = FactorizeConfig(policy=RankPolicy("ratio", 0.25))
    unknown = factorize(load_model(path), config)
    assert any("--shape" in note for note in unknown.notes)
    fixed = factorize(load_model(path), config, shapes={"x": [1, 8, 16, 20]})
    assert not any("--shape" in note for note in fixed.notes)
    layer = fixed.to_dict()["layers"][0]
    assert layer["macs_before"] == 12 * 8 * 9 * 16 * 20
