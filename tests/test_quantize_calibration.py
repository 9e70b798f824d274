"""Static calibration (``static.calibrate``) and the reuse of its outputs as the fidelity reference.

Tolerances: calibrated ranges equal ORT's own calibrator's to 1e-5 relative (the same min/max over
the same values; only the session's optimisation and the stacking differ); recorded outputs equal
a one-sample ORT run to 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from models import run_ort, save_proto
from models_quantize import _model as build_model
from models_quantize import cnn_proto, stacked_data
from onnx import TensorProto, helper
from onnxruntime import quantization as ortq

from modelcrunch.data import load_dataset
from modelcrunch.passes.quantize import Mode, QuantizeOptions, calibration, pipeline, quantize_model, static
from modelcrunch.passes.quantize.calibration import FeedReader, OutputRecord, batched
from modelcrunch.passes.quantize.config import STATIC_OP_TYPES
from modelcrunch.passes.quantize.preprocess import flatten_gemm_bias

FAST = {"bench": False, "sensitivity": False, "max_calibration_samples": 24, "max_eval_samples": 24}


@pytest.fixture()
def cnn(tmp_path: Path) -> tuple[Path, list[dict[str, np.ndarray]]]:
    model = cnn_proto()
    src = save_proto(model, tmp_path / "cnn.onnx")
    return src, load_dataset(stacked_data(model, tmp_path / "calib.npz")).samples


def _ranges(data: ortq.TensorsData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: tuple(np.asarray(v) for v in value.range_value) for name, value in data.data.items()}


@pytest.mark.parametrize(("stack_size", "optimize"), [(1, False), (4, True)])
def test_calibrate_gives_orts_ranges_and_records_outputs(cnn, tmp_path, monkeypatch, stack_size, optimize):
    src, samples = cnn
    monkeypatch.setattr(static, "CALIBRATION_STACK_BELOW_S", 10.0)  # always try stacking where allowed ...
    for name in ("OPTIMIZE_AFTER_S", "OPTIMIZE_CONV_AFTER_S"):  # ... and force the session's kind
        monkeypatch.setattr(static, name, 0.0 if optimize else 1e9)
    record = OutputRecord(["logits"], 1 << 20)
    cache = tmp_path / "cache.json"
    static.calibrate(
        src,
        cache,
        options=QuantizeOptions(),
        feeds=samples,
        op_types=STATIC_OP_TYPES,
        record=record,
        stack_size=stack_size,
    )
    theirs = ortq.create_calibrator(
        src, list(STATIC_OP_TYPES), augmented_model_path=str(tmp_path / "augmented.onnx")
    )
    theirs.collect_data(FeedReader(samples))
    expected = _ranges(theirs.compute_data())
    got = _ranges(ortq.load_tensors_data(cache))
    assert got.keys() == expected.keys()
    for name, (low, high) in expected.items():
        np.testing.assert_allclose(got[name][0], low, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(got[name][1], high, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not (tmp_path / "cache_augmented.onnx").exists()
    # every sample's own output, also where it ran stacked with others
    outputs = record.take(samples)
    assert outputs is not None and len(outputs) == len(samples)
    for sample, (logits,) in zip(samples, outputs, strict=True):
        assert logits.shape == (1, 10)
        np.testing.assert_allclose(logits, run_ort(src, sample)[0], rtol=1e-5, atol=1e-5)


def test_output_record_hands_over_all_or_nothing_within_budget():
    a, b, c = ({"x": np.zeros((1, 2), np.float32)} for _ in range(3))
    out = np.ones((1, 4), np.float32)  # 16 bytes
    record = OutputRecord(["y"], budget=32)
    for sample in (a, b, c):
        record.add(sample, {"y": out, "stat": np.zeros(1)})
    assert len(record) == 2, "the third does not fit the budget"
    assert record.take([a, c]) is None and len(record) == 2, "nothing taken when one is missing"
    assert [o[0] is out for o in record.take([dict(a), b])] == [True, True]  # a copied dict, same arrays
    assert record.take([a]) is None and len(record) == 0
    record.add(c, {"z": out})
    assert len(record) == 0, "a sample without the named output is not kept"


def test_fixed_static_reuses_the_calibration_outputs_as_reference(cnn, tmp_path, monkeypatch):
    src, _ = cnn
    calib = tmp_path / "calib.npz"
    used: list[bool] = []
    call = pipeline._Recorded.__call__

    def spy(self, feed):  # noqa: ANN001, ANN202
        outputs = call(self, feed)
        used.append(outputs is not None)
        return outputs

    monkeypatch.setattr(pipeline._Recorded, "__call__", spy)
    options = QuantizeOptions(mode=Mode.STATIC, holdout=0.0, **FAST)  # judged on the calibration samples
    reused = quantize_model(src, tmp_path / "a.onnx", options, calibration=calib)
    assert used and all(used), "the reference outputs came from the calibration run"
    used.clear()
    measured = quantize_model(src, tmp_path / "b.onnx", options, calibration=calib, evaluation=calib)
    assert not used, "with --eval the reference is run"
    assert reused.fidelity["worst_cosine"] == pytest.approx(measured.fidelity["worst_cosine"], abs=1e-6)
    for ours, theirs in zip(reused.fidelity["outputs"], measured.fidelity["outputs"], strict=True):
        assert ours["rel_l2"] == pytest.approx(theirs["rel_l2"], rel=1e-3)


def test_recorded_outputs_that_differ_from_the_original_are_not_used(cnn):
    src, samples = cnn
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    record = OutputRecord(["logits"], 1 << 20)
    for sample in samples[:2]:
        record.add(sample, {"logits": session.run(None, sample)[0] + 1.0})  # not this model's outputs
    chunk = samples[:2]
    feed = calibration.stack(chunk, 2)[0]
    recorded = pipeline._Recorded(session, record, {calibration.feed_key(feed): chunk})
    assert recorded(feed) is None and recorded.trusted is False


def test_slow_samples_are_measured_one_at_a_time(cnn, monkeypatch):
    src, samples = cnn
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    assert batched(session, samples[:5]) == 5
    monkeypatch.setattr(calibration, "STACK_BELOW_S", 0.0)
    assert batched(session, samples[:5]) == 1


def _gemm_row_bias_proto() -> onnx.ModelProto:
    """x[b,32] → Gemm(C (1,16)) → Relu → Gemm(same C) → y[b,16]: the layout ORT's optimiser makes
    from MatMul + Add, on which its per-channel int32-bias check crashed."""
    rng = np.random.default_rng(3)
    inits = {
        name: (rng.standard_normal(shape) * 0.2).astype(np.float32)
        for name, shape in (("w1", (16, 32)), ("w2", (16, 16)), ("c", (1, 16)))
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "c"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2", "c"], ["y"], transB=1, name="fc2"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])
    return build_model(
        nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 16])], inits, 17
    )


def test_gemm_row_bias_is_flattened_exactly(tmp_path):
    proto = _gemm_row_bias_proto()
    model = ir.serde.deserialize_model(proto)
    assert flatten_gemm_bias(model) == 2
    flat = ir.to_proto(model)
    onnx.checker.check_model(flat)
    biases = {t.name: list(t.dims) for t in flat.graph.initializer}
    assert "c" not in biases and sorted(d for n, d in biases.items() if n.startswith("c_flat")) == [
        [16],
        [16],
    ]
    feed = {"x": np.random.default_rng(0).random((3, 32), dtype=np.float32)}
    np.testing.assert_array_equal(run_ort(flat, feed)[0], run_ort(proto, feed)[0])


def test_gemm_row_bias_quantizes_in_one_pass(tmp_path, monkeypatch):
    proto = _gemm_row_bias_proto()
    src = save_proto(proto, tmp_path / "gemm.onnx")
    calib = stacked_data(proto, tmp_path / "calib.npz")
    calls = []
    run = static._run
    monkeypatch.setattr(static, "_run", lambda *a, **k: calls.append(a[-1]) or run(*a, **k))
    quantize_model(src, tmp_path / "q.onnx", QuantizeOptions(mode=Mode.STATIC, **FAST), calibration=calib)
    assert len(calls) == 1, "no retry without ORT's int32-bias check"
    assert "QDQDisableWeightAdjustForInt32Bias" not in calls[0]
