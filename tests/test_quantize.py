"""quantize: every mode gives a checker-valid, same-signature model that runs in ORT and stays close."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import typer
from models import assert_same_signature, mlp_proto, run_ort, save_proto
from models_quantize import (
    cnn_proto,
    conv_bn_proto,
    embedding_layernorm_proto,
    embedding_proto,
    if_matmul_proto,
    matmul_proto,
    mixed_range_proto,
    near_tie_proto,
    outlier_token_proto,
    softmax_overflow_proto,
    stacked_data,
)  # fmt: skip
from typer.testing import CliRunner

from modelcrunch.cli.quantize import quantize_cmd
from modelcrunch.errors import EXIT_BAD_INPUT, EXIT_GATE, ModelcrunchError
from modelcrunch.passes.quantize import Mode, QuantizeOptions, quantize_model
from modelcrunch.passes.quantize.per_token import per_token_rewrite
from modelcrunch.passes.quantize.report import SCHEMA
from modelcrunch.passes.quantize.sensitivity import Score, guard
from modelcrunch.runtime.fidelity import Fidelity, OutputFidelity

#: The toy models' random outputs are judged element-wise (``--task generic``): a random MatMul's
#: near-tied "logits" would otherwise get the default top-1 target on a handful of held-out samples.
#: Tests of the inferred kinds use INFERRED.
FAST = {
    "bench": False,
    "max_calibration_samples": 16,
    "max_eval_samples": 16,
    "output_kinds": (("*", "generic"),),
}
INFERRED = {**FAST, "output_kinds": ()}


def ops(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def check(original: Path, quantized: Path, feeds: dict[str, np.ndarray], *, min_cosine: float) -> None:
    onnx.checker.check_model(str(quantized))
    assert_same_signature(original, quantized)
    for ref, got in zip(run_ort(original, feeds), run_ort(quantized, feeds), strict=True):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        cosine = float(np.dot(ref.ravel(), got.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(got)))
        assert cosine >= min_cosine


@pytest.fixture()
def cnn(tmp_path: Path) -> tuple[Path, Path]:
    model = cnn_proto()
    return save_proto(model, tmp_path / "cnn.onnx"), stacked_data(model, tmp_path / "cnn_calib.npz")


@pytest.fixture()
def mm(tmp_path: Path) -> tuple[Path, Path]:
    model = matmul_proto()
    return save_proto(model, tmp_path / "mm.onnx"), stacked_data(model, tmp_path / "mm_calib.npz")


FEED_CNN = {"input": np.random.default_rng(1).random((2, 3, 16, 16)).astype(np.float32)}
FEED_MM = {"input": np.random.default_rng(1).random((2, 64)).astype(np.float32)}


def test_static_qdq_per_channel(cnn, tmp_path):
    src, calib = cnn
    out = tmp_path / "out" / "q.onnx"
    report = quantize_model(src, out, QuantizeOptions(mode=Mode.STATIC, **FAST), calibration=calib)
    check(src, out, FEED_CNN, min_cosine=0.98)
    counts = ops(out)
    assert counts["QuantizeLinear"] >= 3 and counts["DequantizeLinear"] >= 6  # activations + weights
    assert {"conv1", "conv2", "fc"} <= set(report.nodes_quantized)
    assert report.size_after < report.size_before
    axes = [
        a.i for n in onnx.load(str(out)).graph.node if n.op_type == "DequantizeLinear" for a in n.attribute
    ]
    assert axes, "per-channel weights carry a DequantizeLinear axis"
    assert sorted(os.listdir(out.parent)) == ["q.onnx"]
    assert not onnx.load(str(out)).graph.value_info, "pre-processing's shape annotations are not saved"


@pytest.mark.parametrize("reduce_range", [True, False])
def test_static_reduce_range_uses_7_bit_weights(cnn, tmp_path, reduce_range):
    src, calib = cnn
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(mode=Mode.STATIC, reduce_range=reduce_range, sensitivity=False, **FAST)
    quantize_model(src, out, options, calibration=calib)
    check(src, out, FEED_CNN, min_cosine=0.98)
    model = onnx.load(str(out))
    weights = [
        onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    widest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights if w.ndim == 4)
    assert widest <= 64 if reduce_range else widest == 127


def test_stacked_measurement_matches_one_at_a_time(cnn, monkeypatch):
    import onnxruntime as ort

    from modelcrunch.passes.quantize import calibration
    from modelcrunch.passes.quantize.calibration import batched, stack

    monkeypatch.setattr(calibration, "STACK_BELOW_S", 60.0)  # a loaded machine must not change the answer

    src, _ = cnn
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    samples = [{"input": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(5)]
    size = batched(session, samples)
    assert size == 5
    stacked = np.concatenate([session.run(None, f)[0] for f in stack(samples, size)])
    single = np.concatenate([session.run(None, f)[0] for f in samples])
    np.testing.assert_allclose(stacked, single, rtol=1e-5, atol=1e-5)
    assert stack(samples, 1) == samples


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_static_calibration_methods_and_s8s8(cnn, tmp_path, method):
    src, calib = cnn
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(mode=Mode.STATIC, calibration_method=method, precision="s8s8", **FAST)
    quantize_model(src, out, options, calibration=calib)
    check(src, out, FEED_CNN, min_cosine=0.95)


def test_dynamic(mm, tmp_path):
    src, calib = mm
    out = tmp_path / "q.onnx"
    report = quantize_model(src, out, QuantizeOptions(mode=Mode.DYNAMIC, **FAST), calibration=calib)
    check(src, out, FEED_MM, min_cosine=0.99)
    assert ops(out).get("MatMulInteger", 0) + ops(out).get("DynamicQuantizeMatMul", 0) == 3
    assert report.op_counts.get("DynamicQuantizeLinear", 0) >= 1


@pytest.mark.parametrize("compact", [True, False])
def test_dynamic_stores_the_embedding_int8_unless_asked_not_to(tmp_path, compact):
    src = save_proto(embedding_proto(), tmp_path / "emb.onnx")
    rng = np.random.default_rng(0)
    data = tmp_path / "ids.npz"
    np.savez(data, ids=rng.integers(0, 512, (16, 8)).astype(np.int64))
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(mode=Mode.DYNAMIC, compact=compact, **FAST)
    report = quantize_model(src, out, options, calibration=data)
    check(src, out, {"ids": rng.integers(0, 512, (2, 8)).astype(np.int64)}, min_cosine=0.99)
    inits = {t.name: t.data_type for t in onnx.load(str(out)).graph.initializer}
    assert (inits["table"] == onnx.TensorProto.INT8) is compact  # stored int8 under its own name
    assert inits.get("b") == onnx.TensorProto.FLOAT  # biases are never stored int8
    assert ("embed" in report.nodes_quantized) is compact


def ids_data(path: Path, n: int = 16, seed: int = 0) -> Path:
    np.savez(path, ids=np.random.default_rng(seed).integers(0, 512, (n, 8)).astype(np.int64))
    return path


def test_storage_gathers_embedding_rows_as_int8(tmp_path):
    """Only the gathered rows are dequantized (at run time): no fp32 copy of the table exists."""
    src = save_proto(embedding_proto(), tmp_path / "emb.onnx")
    out = tmp_path / "q.onnx"
    quantize_model(
        src, out, QuantizeOptions(mode=Mode.STORAGE, **FAST), calibration=ids_data(tmp_path / "i.npz")
    )
    model = onnx.load(str(out))
    gather = next(n for n in model.graph.node if n.op_type == "Gather")
    assert gather.input[0] == "table"
    assert {t.name: t.data_type for t in model.graph.initializer}["table"] == onnx.TensorProto.INT8
    consumer = next(n for n in model.graph.node if gather.output[0] in n.input)
    assert consumer.op_type == "Cast"
    feed = {"ids": np.random.default_rng(3).integers(0, 512, (2, 8)).astype(np.int64)}
    check(src, out, feed, min_cosine=0.9999)


@pytest.mark.parametrize("opset", [17, 18])
def test_per_token_rewrite_is_close_and_keeps_the_name(tmp_path, opset):
    proto = outlier_token_proto(opset=opset)
    src = save_proto(proto, tmp_path / "src.onnx")
    assert per_token_rewrite(proto, ["mm"]) == ["mm"]
    onnx.checker.check_model(proto, full_check=True)
    dst = save_proto(proto, tmp_path / "pt.onnx")
    assert {n.name: n.op_type for n in proto.graph.node}["mm"] == "MatMulInteger"
    assert "w" not in {t.name for t in proto.graph.initializer}
    feed = {"x": np.random.default_rng(2).random((3, 8, 64)).astype(np.float32)}
    check(src, dst, feed, min_cosine=0.9999)


def test_dynamic_sensitive_layer_gets_per_token_before_float(tmp_path):
    """Per-tensor int8 destroys the small tokens (cosine << 0.99); the guard gives the MatMul
    per-token activations (still int8). With --no-per-token it can only keep it float, and a model
    with every layer float is not quantized: the gate fails and nothing is written."""
    proto = outlier_token_proto()
    src = save_proto(proto, tmp_path / "src.onnx")
    calib = stacked_data(proto, tmp_path / "c.npz")
    plain_options = QuantizeOptions(mode=Mode.DYNAMIC, sensitivity=False, **FAST)
    plain = quantize_model(src, tmp_path / "plain.onnx", plain_options, calibration=calib)
    assert plain.fidelity["worst_cosine"] < 0.99
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(mode=Mode.DYNAMIC, min_cosine=0.999, **FAST)
    report = quantize_model(src, out, options, calibration=calib)
    assert report.target["met"] and "mm" in report.nodes_quantized and ops(out).get("MatMulInteger") == 1
    assert any("per-token" in note for note in report.preprocessing)
    check(src, out, {"x": np.random.default_rng(2).random((2, 8, 64)).astype(np.float32)}, min_cosine=0.999)
    missed = quantize_model(src, tmp_path / "f.onnx", replace(options, per_token=False), calibration=calib)
    assert not missed.passed and missed.output is None
    assert not (tmp_path / "f.onnx").exists()


def _score(loss: float) -> Score:
    output = OutputFidelity("y", 0.0, 0.0, 1.0 - loss, 0.0, None)
    return Score(Fidelity(samples=1, outputs=[output]), 0.0)


def test_guard_keeps_the_fewest_layers_float(tmp_path):
    """Additive per-layer losses: the bisection finds the smallest count that meets the target."""
    losses = {f"n{i}": 0.001 * (i + 1) for i in range(20)}  # n19 worst
    built: list[tuple[str, ...]] = []

    def build(only, exclude):
        built.append(tuple(exclude))
        path = tmp_path / f"{len(built)}.onnx"
        path.write_text(",".join(only or [n for n in losses if n not in exclude]))
        return path

    def measure(path):
        names = [n for n in path.read_text().split(",") if n]
        return _score(sum(losses[n] for n in names))

    result = guard(list(losses), build, measure, measure, lambda s: s.loss <= 0.12, target="loss <= 0.12")
    # total 0.21; dropping the k worst (0.020, 0.019, ...) meets 0.12 first at k = 5 (0.21 - 0.09)
    assert result.met and sorted(result.excluded) == sorted(f"n{i}" for i in range(15, 20))


def test_weight_only_raises_opset_properly_for_4_bit_gather(tmp_path):
    """ORT's quantizer only relabels an opset-14 model as 21, which breaks ReduceMean's axes."""
    src = save_proto(embedding_layernorm_proto(), tmp_path / "src.onnx")
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(mode=Mode.WEIGHT_ONLY, sensitivity=False, **FAST)
    report = quantize_model(src, out, options, calibration=ids_data(tmp_path / "i.npz"))
    assert "GatherBlockQuantized" in ops(out)
    assert any("opset raised from 14 to 21" in note for note in report.preprocessing)
    feed = {"ids": np.random.default_rng(3).integers(0, 512, (2, 8)).astype(np.int64)}
    check(src, out, feed, min_cosine=0.98)


def test_weight_only_int4(mm, tmp_path):
    src, calib = mm
    out = tmp_path / "q.onnx"
    # written whatever the judge's verdict (keep_best): the random MLP's weights depend on the order
    # the tests draw them in, and int4 sits near the generic 0.99 channel-group target on some draws
    options = QuantizeOptions(mode=Mode.WEIGHT_ONLY, keep_best=True, **FAST)
    report = quantize_model(src, out, options, calibration=calib)
    check(src, out, FEED_MM, min_cosine=0.98)
    assert ops(out)["MatMulNBits"] >= 2
    assert report.mode == "weight-only"


def test_storage_int8_is_4x_smaller_and_nearly_exact(cnn, tmp_path):
    src, calib = cnn
    out = tmp_path / "q.onnx"
    report = quantize_model(src, out, QuantizeOptions(mode=Mode.STORAGE, **FAST), calibration=calib)
    check(src, out, FEED_CNN, min_cosine=0.9999)
    model = onnx.load(str(out))
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    assert "c2w" not in inits and producer["c2w"].op_type == "Mul"  # conv2 still reads c2w, dequantized
    assert inits[producer[producer["c2w"].input[0]].input[0]].data_type == onnx.TensorProto.INT8
    assert any(n.reason.startswith("weight under") for n in report.nodes_excluded)  # the fc weight is tiny


def test_storage_folds_batchnorm_first(tmp_path):
    """Storage works on the pre-processed graph: BatchNormalization is folded into the Conv (no
    float BN parameters left), the opset-11 model is raised to 13, the I/O signature is unchanged."""
    model = conv_bn_proto()
    src = save_proto(model, tmp_path / "m.onnx")
    out = tmp_path / "q.onnx"
    quantize_model(
        src,
        out,
        QuantizeOptions(mode=Mode.STORAGE, **FAST),
        calibration=stacked_data(model, tmp_path / "c.npz"),
    )
    feed = {"input": np.random.default_rng(4).random((2, 3, 16, 16)).astype(np.float32)}
    check(src, out, feed, min_cosine=0.9999)
    saved = onnx.load(str(out))
    assert "BatchNormalization" not in ops(out)
    sizes = {t.name: (t.data_type, int(np.prod(t.dims))) for t in saved.graph.initializer}
    assert (onnx.TensorProto.INT8, 32 * 27) in sizes.values()  # the folded Conv weight
    assert all(n <= 32 for kind, n in sizes.values() if kind == onnx.TensorProto.FLOAT)  # bias, scales


def test_fp16_keeps_io_types_and_overflowing_ops_fp32(tmp_path):
    model = softmax_overflow_proto()
    src = save_proto(model, tmp_path / "m.onnx")
    calib = stacked_data(model, tmp_path / "c.npz")
    out = tmp_path / "q.onnx"
    report = quantize_model(src, out, QuantizeOptions(mode=Mode.FP16, **FAST), calibration=calib)
    check(src, out, FEED_MM, min_cosine=0.999)
    saved = onnx.load(str(out))
    assert {t.name: t.data_type for t in saved.graph.initializer}["w"] == onnx.TensorProto.FLOAT16
    kept = {n.name: n.reason for n in report.nodes_excluded}
    assert "softmax" in kept and "scale_up" in kept  # op list; magnitude 1e5 > 65504/16
    assert report.target["met"]


def test_constant_weights_are_lifted(tmp_path):
    src = save_proto(mlp_proto(constants=True), tmp_path / "const.onnx")
    out = tmp_path / "q.onnx"
    quantize_model(src, out, QuantizeOptions(mode=Mode.STATIC, **FAST))
    check(src, out, {"input": np.random.default_rng(0).random((2, 16)).astype(np.float32)}, min_cosine=0.98)
    assert ops(out).get("QuantizeLinear", 0) >= 1


@pytest.mark.parametrize("mode", [Mode.DYNAMIC, Mode.STATIC, Mode.STORAGE])
def test_if_subgraph_weights_quantized_or_reported(tmp_path, mode):
    src = save_proto(if_matmul_proto(), tmp_path / "if.onnx")
    out = tmp_path / "q.onnx"
    report = quantize_model(src, out, QuantizeOptions(mode=mode, **FAST))
    feeds = {"input": np.random.default_rng(0).random((2, 64)).astype(np.float32), "cond": np.array(True)}
    check(src, out, feeds, min_cosine=0.99)
    check(src, out, {**feeds, "cond": np.array(False)}, min_cosine=0.99)
    names = set(report.nodes_quantized) | {n.name for n in report.nodes_excluded}
    assert {"then_mm", "else_mm"} <= names
    for node in report.nodes_excluded:
        assert "subgraph" in node.reason


def test_per_channel_on_opset_11_gives_loadable_file(tmp_path):
    model = cnn_proto(opset=11)
    src = save_proto(model, tmp_path / "old.onnx")
    out = tmp_path / "q.onnx"
    report = quantize_model(
        src,
        out,
        QuantizeOptions(mode=Mode.STATIC, **FAST),
        calibration=stacked_data(model, tmp_path / "c.npz"),
    )
    check(src, out, FEED_CNN, min_cosine=0.98)
    assert any("opset raised from 11 to 13" in note for note in report.preprocessing)


def test_sensitivity_keeps_range_mixing_head_float(tmp_path):
    model = mixed_range_proto()
    src = save_proto(model, tmp_path / "head.onnx")
    calib = stacked_data(model, tmp_path / "c.npz")
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(
        mode=Mode.STATIC, min_cosine=0.999, per_channel=False, reduce_range=False, **FAST
    )
    report = quantize_model(src, out, options, calibration=calib)
    assert report.target["met"]
    assert any("sensitivity rank" in n.reason for n in report.nodes_excluded)
    assert report.nodes_quantized, "the insensitive trunk stays quantized"


def test_channel_error_gate_catches_what_cosine_hides(tmp_path):
    model = mixed_range_proto(box_scale=30.0, cls_scale=0.1)  # boxes ~300, scores ~0.5: one tensor
    src = save_proto(model, tmp_path / "det.onnx")
    calib = stacked_data(model, tmp_path / "c.npz")
    options = QuantizeOptions(mode=Mode.STATIC, per_channel=False, **FAST)
    plain_options = replace(options, sensitivity=False, holdout=0.0)
    plain = quantize_model(src, tmp_path / "a.onnx", plain_options, calibration=calib)
    assert plain.fidelity["worst_cosine"] > 0.999 and plain.fidelity["worst_channel_error"] > 0.2
    # the judge's scale-aware cosine sees the collapsed score channels that the global cosine hides
    group = next(f for f in plain.verdict["figures"] if f["figure"] == "cosine")
    assert group["details"]["grouped_by_scale"] and group["value"] < 0.99 and not plain.passed
    by_default = quantize_model(src, tmp_path / "d.onnx", options, calibration=calib)
    assert by_default.passed and by_default.fidelity["worst_channel_error"] < 0.2
    guarded = quantize_model(
        src, tmp_path / "b.onnx", replace(options, max_channel_error=0.1), calibration=calib
    )
    assert guarded.target["met"] and guarded.fidelity["worst_channel_error"] <= 0.1
    assert any("sensitivity rank" in n.reason for n in guarded.nodes_excluded)


def test_unmet_fidelity_gate_fails_and_writes_nothing_unless_keep_best(mm, tmp_path):
    src, calib = mm
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(mode=Mode.WEIGHT_ONLY, min_cosine=1.0, sensitivity=False, **FAST)
    report = quantize_model(src, out, options, calibration=calib)
    assert not report.passed and report.output is None and not out.exists()
    kept = quantize_model(src, out, replace(options, keep_best=True), calibration=calib)
    assert not kept.passed and kept.output == str(out) and out.exists()
    assert "MISSED" in kept.target["task"]


def test_synthetic_calibration_warns_and_no_temp_files(cnn, tmp_path, monkeypatch):
    src, _ = cnn
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "out" / "q.onnx"
    report = quantize_model(src, out, QuantizeOptions(mode=Mode.STATIC, **FAST))
    assert report.calibration["synthetic"]
    assert any("UNKNOWN" in w for w in report.warnings)
    assert os.listdir(work) == []
    assert os.listdir(out.parent) == ["q.onnx"]


def test_auto_picks_a_candidate_and_explains(mm, tmp_path):
    src, calib = mm
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(bench_seconds=0.3, max_calibration_samples=16, max_eval_samples=16)
    report = quantize_model(src, out, options, calibration=calib)
    assert len(report.candidates) >= 3 and report.mode in {c.mode for c in report.candidates}
    assert report.mode_reason and report.latency is not None
    check(src, out, FEED_MM, min_cosine=0.98)


# ---- CLI ----------------------------------------------------------------------------------------


def cli(*args: str):
    app = typer.Typer(add_completion=False)
    app.command()(quantize_cmd)
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_json(mm, tmp_path):
    src, calib = mm
    out = tmp_path / "q.onnx"
    result = cli(
        src,
        "-o",
        out,
        "--mode",
        "dynamic",
        "--calibration",
        calib,
        "--eval",
        calib,
        "--json",
        "--bench-seconds",
        "0.3",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == SCHEMA and document["mode"] == "dynamic"
    assert document["size"]["after_bytes"] < document["size"]["before_bytes"]
    assert document["latency"]["ratio"] > 0 and document["fidelity"]["worst_cosine"] > 0.99


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_cli_json_stays_parseable_with_histogram_calibration(mm, tmp_path, method):
    """ORT's histogram calibrators print progress; stdout must still be one JSON document."""
    src, calib = mm
    args = ["-o", tmp_path / "q.onnx", "--mode", "static", "--method", method, "--calibration", calib]
    result = cli(src, *args, "--json", "--no-bench", "--no-sensitivity", "--task", "generic")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "static"


@pytest.mark.parametrize(
    "bad",
    [
        ["--mode", "int3"],
        ["--bits", "3"],
        ["--min-cosine", "2"],
        ["--block-size", "24"],
        ["--method", "median"],
        ["--max-drop", "-1"],
        ["--min-top1-agreement", "1.5"],
        ["--min-mask-iou", "-0.5"],
    ],
)
def test_cli_bad_options_exit_2(mm, tmp_path, bad):
    src, _ = mm
    result = cli(src, "-o", tmp_path / "q.onnx", "--no-bench", *bad)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert not (tmp_path / "q.onnx").exists()


def test_cli_top1_gate_without_class_outputs_is_one_line_exit_2(tmp_path):
    model = conv_bn_proto()  # output [batch, 32, 1, 1]: no classes on the last axis
    src = save_proto(model, tmp_path / "m.onnx")
    calib = stacked_data(model, tmp_path / "c.npz")
    result = cli(
        src, "-o", tmp_path / "q.onnx", "--calibration", calib, "--no-bench", "--min-top1-agreement", "0.9"
    )
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "min-top1-agreement" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "q.onnx").exists()


def test_cli_mask_gate_without_probability_outputs_is_one_line_exit_2(tmp_path):
    model = conv_bn_proto()  # Conv + BatchNorm: values outside [0, 1], no probabilities
    src = save_proto(model, tmp_path / "m.onnx")
    calib = stacked_data(model, tmp_path / "c.npz")
    args = ["--calibration", calib, "--no-bench", "--min-mask-iou", "0.9"]
    result = cli(src, "-o", tmp_path / "q.onnx", *args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "min-mask-iou" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "q.onnx").exists()


def test_cli_require_faster_fails_with_exit_3(mm, tmp_path, monkeypatch):
    from modelcrunch.passes.quantize import pipeline

    class Slow:  # a benchmark result where every candidate is 1.3x slower
        def __init__(self, n):
            lat = type("L", (), {"p50_ms": 1.0})
            self.models = [type("M", (), {"latency": lat})] * n
            self.ratios = [type("R", (), {"latency": 1.0})] + [type("R", (), {"latency": 1.3})] * (n - 1)

    monkeypatch.setattr(pipeline, "_bench", lambda ref, paths, *a: Slow(len(paths) + 1))
    src, calib = mm
    result = cli(
        src, "-o", tmp_path / "q.onnx", "--mode", "dynamic", "--require-faster", "--calibration", calib
    )
    assert result.exit_code == EXIT_GATE, result.output
    assert not (tmp_path / "q.onnx").exists()


def test_sample_cnn_static_keeps_accuracy(samples_dir, tmp_path):
    src = samples_dir / "cnn.onnx"
    if not src.exists():
        pytest.skip("sample models not built")
    out = tmp_path / "q.onnx"
    report = quantize_model(
        src,
        out,
        QuantizeOptions(mode=Mode.STATIC, bench=False),
        calibration=samples_dir / "cnn_digits_calib.npz",
        evaluation=samples_dir / "cnn_digits_test.npz",
    )
    assert report.fidelity["accuracy_drop"] <= 0.01
    assert report.size_after < 0.3 * report.size_before


def test_library_does_not_import_cli_or_print():
    import ast

    package = Path(__file__).resolve().parents[1] / "modelcrunch" / "passes" / "quantize"
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                assert not any(
                    n.split(".")[0] in {"typer", "rich"} or n.startswith("modelcrunch.cli") for n in names
                )
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"print", "exit"}, module.name


def _fused_ops(path: Path) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime actually runs (basic + extended fusions)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return ops(path.with_suffix(".opt.onnx"))


def test_compact_qdq_keeps_the_fused_graph_and_outputs(cnn, tmp_path):
    """Zero points that say 0 (before Conv) and ORT's long names go; Gemm keeps its zero points,
    which its QGemm fusion needs. Same fused kernels, identical outputs, a smaller file."""
    from onnxruntime import quantization as ortq

    from modelcrunch.passes.quantize.calibration import FeedReader
    from modelcrunch.passes.quantize.qdq import compact_qdq

    src, calib = cnn
    plain = tmp_path / "plain.onnx"
    samples = [{"input": x[None]} for x in np.load(calib)["input"]]
    ortq.quantize_static(
        str(src), str(plain), FeedReader(samples), per_channel=True, extra_options={"WeightSymmetric": True}
    )
    proto = onnx.load(str(plain))
    assert compact_qdq(proto)
    onnx.checker.check_model(proto, full_check=True)
    compact = save_proto(proto, tmp_path / "compact.onnx")
    assert compact.stat().st_size < plain.stat().st_size
    assert not any(n.endswith("_DequantizeLinear_Output") for node in proto.graph.node for n in node.output)
    fused = _fused_ops(compact)
    assert fused == _fused_ops(plain) and fused["QLinearConv"] == 2 and fused["QGemm"] == 1
    np.testing.assert_array_equal(run_ort(compact, FEED_CNN)[0], run_ort(plain, FEED_CNN)[0])


@pytest.mark.parametrize("mode", [Mode.DYNAMIC, Mode.STATIC])
def test_top1_gate_keeps_the_near_tied_head_float_and_exact(tmp_path, mode):
    """Logits' cosine stays ~1 while int8 flips argmaxes (classes 0 and 1 nearly tie): only
    --min-top1-agreement sees it. The guard keeps the head float, and --compact does not store its
    weight as int8 either, because that rounding alone flips the ties too."""
    model = near_tie_proto()
    src = save_proto(model, tmp_path / "m.onnx")
    calib = stacked_data(model, tmp_path / "c.npz", n=128)  # 26 held out for the verdict
    base = {"bench": False, "per_token": False}
    plain = quantize_model(
        src,
        tmp_path / "a.onnx",
        QuantizeOptions(mode=mode, sensitivity=False, holdout=0.0, **base),
        calibration=calib,
    )
    assert plain.fidelity["worst_cosine"] > 0.9999 and plain.fidelity["outputs"][0]["top1_agreement"] < 0.9
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(mode=mode, min_top1_agreement=0.95, **base)
    report = quantize_model(src, out, options, calibration=calib)
    assert report.target["met"] and report.target["min_top1_agreement"] == 0.95
    assert report.nodes_quantized == ["fc1"]
    assert "top-1 agreement" in {n.name: n.reason for n in report.nodes_excluded}["head"]
    assert "w2" in {t.name for t in onnx.load(str(out)).graph.initializer}  # the head's weight, exact
    assert report.fidelity["outputs"][0]["top1_agreement"] >= 0.95


def test_top1_gate_needs_a_classifier_output(tmp_path):
    model = conv_bn_proto()  # output [batch, 32, 1, 1]: no classes on the last axis
    src = save_proto(model, tmp_path / "m.onnx")
    with pytest.raises(ModelcrunchError, match="min-top1-agreement"):
        quantize_model(
            src,
            tmp_path / "q.onnx",
            QuantizeOptions(mode=Mode.STATIC, min_top1_agreement=0.9, **FAST),
            calibration=stacked_data(model, tmp_path / "c.npz"),
        )


def test_class_probabilities_get_a_default_top1_target(tmp_path):
    """A Softmax output is a class output: without any flag the target includes 99 % top-1
    agreement on it, so the near-tied head stays float; --min-top1-agreement 0 switches it off."""
    model = near_tie_proto(softmax=True)
    src = save_proto(model, tmp_path / "m.onnx")
    calib = stacked_data(model, tmp_path / "c.npz", n=64)
    options = QuantizeOptions(mode=Mode.DYNAMIC, bench=False, per_token=False)
    report = quantize_model(src, tmp_path / "q.onnx", options, calibration=calib)
    top1 = next(f for f in report.verdict["figures"] if f["figure"] == "top-1 agreement")
    assert top1["output"] == "probs" and top1["kind"] == "classes" and top1["target"] == 0.99
    assert report.target["met"] and report.nodes_quantized == ["fc1"]
    off = quantize_model(
        src, tmp_path / "o.onnx", replace(options, min_top1_agreement=0.0), calibration=calib
    )
    assert off.nodes_quantized == ["fc1", "head"]


def test_class_outputs_found_through_hand_built_softmax():
    from onnx import TensorProto, helper

    from modelcrunch.passes.quantize.targets import class_outputs

    nodes = [
        helper.make_node("Exp", ["x"], ["e"]),
        helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
        helper.make_node("Div", ["e", "s"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["probs"]),
        helper.make_node("Relu", ["x"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 5]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 5]),
        ],
        [
            onnx.numpy_helper.from_array(np.array([-1], np.int64), "axes"),
            onnx.numpy_helper.from_array(np.array([-1, 5], np.int64), "shape"),
        ],
    )
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert class_outputs(model) == {"probs": 2}
