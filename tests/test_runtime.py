"""modelcrunch.runtime: providers, sessions, feeds, fidelity math and the benchmark loop."""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from models import mlp_proto, save_proto
from models_bench import mixed_inputs_proto, perturbed, write_mlp_trio

from modelcrunch.errors import ModelcrunchError
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.feeds import check_feed, index_limits, synthesize_feeds
from modelcrunch.runtime.fidelity import compare_outputs, evaluate, measure_fidelity
from modelcrunch.runtime.session import make_session, resolve_provider

# ---- providers and sessions ----------------------------------------------------------------


def test_resolve_provider_short_and_full_names():
    assert resolve_provider("cpu") == "CPUExecutionProvider"
    assert resolve_provider("CPUExecutionProvider") == "CPUExecutionProvider"
    assert resolve_provider("cpuexecutionprovider") == "CPUExecutionProvider"


def test_missing_cuda_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelcrunchError) as info:
        resolve_provider("cuda")
    message = str(info.value)
    assert "\n" not in message
    assert "CUDAExecutionProvider" in message and "onnxruntime-gpu" in message
    assert "installed providers: CPUExecutionProvider" in message


def test_unknown_provider():
    with pytest.raises(ModelcrunchError, match="unknown provider 'tpu'"):
        resolve_provider("tpu")


def test_session_that_falls_back_is_refused(monkeypatch, tmp_path):
    """ORT silently falls back to CPU when a provider fails to initialise; we must not."""
    path = save_proto(mlp_proto(), tmp_path / "m.onnx")
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    real = ort.InferenceSession

    def fake(path, options, providers):
        return real(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", fake)
    with pytest.raises(ModelcrunchError, match="session runs on CPUExecutionProvider"):
        make_session(path, provider="cuda")


def test_make_session_from_ir_model_matches_file(tmp_path):
    path = save_proto(mlp_proto(), tmp_path / "m.onnx")
    feed = {"input": np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)}
    from_file = make_session(path).run(None, feed)[0]
    from_ir = make_session(ir.load(path), optimization="disable", threads=1, spinning=False).run(None, feed)[
        0
    ]
    np.testing.assert_allclose(from_ir, from_file, rtol=1e-6, atol=1e-6)


def test_make_session_errors(tmp_path):
    with pytest.raises(ModelcrunchError, match="no such file"):
        make_session(tmp_path / "missing.onnx")
    with pytest.raises(ModelcrunchError, match="unknown optimisation level"):
        make_session(save_proto(mlp_proto(), tmp_path / "m.onnx"), optimization="max")


# ---- feeds ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_session(tmp_path_factory):
    path = save_proto(mixed_inputs_proto(vocab=50), tmp_path_factory.mktemp("mixed") / "mixed.onnx")
    return make_session(path), ir.load(path)


def test_synthesize_per_dtype(mixed_session):
    session, model = mixed_session
    limits = index_limits(model)
    assert limits == {"ids": 50}
    feeds = synthesize_feeds(session, shapes={"ids": ["?", 7]}, batch=3, int_high=limits)
    assert feeds["ids"].dtype == np.int64 and feeds["ids"].shape == (3, 7)
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() < 50
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (3, 4)
    assert feeds["flag"].dtype == np.bool_ and feeds["flag"].shape == (3,)
    session.run(None, feeds)  # runs as synthesised
    again = synthesize_feeds(session, shapes={"ids": ["?", 7]}, batch=3, int_high=limits)
    np.testing.assert_array_equal(again["x"], feeds["x"])  # seeded


def test_symbolic_dim_needs_a_shape(mixed_session):
    session, _ = mixed_session
    with pytest.raises(ModelcrunchError, match=r"symbolic dim 'seq' \(axis 1\); fix it with --shape ids=Nx"):
        synthesize_feeds(session)


def test_shape_errors(mixed_session, tmp_path):
    session, _ = mixed_session
    with pytest.raises(ModelcrunchError, match="unknown input name 'nope'"):
        synthesize_feeds(session, shapes={"nope": [1]})
    with pytest.raises(ModelcrunchError, match="rank 2"):
        synthesize_feeds(session, shapes={"ids": [1, 2, 3]})
    with pytest.raises(ModelcrunchError, match="dim 1 is fixed to 4"):
        synthesize_feeds(session, shapes={"ids": [1, 2], "x": [1, 5]})


def test_explicit_shape_settles_a_fixed_leading_dim(tmp_path):
    """A recurrent state [2, n, 4] (silero-vad's layout): its fixed 2 is no batch axis. --batch 1 alone
    refuses it; an explicit --shape for the input is taken as given."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["state"], ["out"])],
        "g",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "n", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, "n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = make_session(save_proto(model, tmp_path / "s.onnx"))
    with pytest.raises(ModelcrunchError, match="fixed batch dim of 2"):
        synthesize_feeds(session, batch=1)
    assert synthesize_feeds(session, shapes={"state": [2, 1, 4]}, batch=1)["state"].shape == (2, 1, 4)


def test_check_feed(mixed_session):
    session, _ = mixed_session
    good = synthesize_feeds(session, shapes={"ids": [2, 5]})
    check_feed(session, good)
    with pytest.raises(ModelcrunchError, match="no array for model input 'flag'"):
        check_feed(session, {k: v for k, v in good.items() if k != "flag"})
    with pytest.raises(ModelcrunchError, match="is float64, the model expects float32"):
        check_feed(session, {**good, "x": good["x"].astype(np.float64)})
    with pytest.raises(ModelcrunchError, match="rank 3"):
        check_feed(session, {**good, "x": good["x"][None]})
    with pytest.raises(ModelcrunchError, match="axis 1"):
        check_feed(session, {**good, "x": np.zeros((2, 3), np.float32)})


# ---- fidelity ------------------------------------------------------------------------------


def test_compare_identical_is_exact():
    ref = {"logits": np.random.default_rng(0).standard_normal((8, 10)).astype(np.float32)}
    fid = compare_outputs(ref, {"logits": ref["logits"].copy()})
    out = fid.outputs[0]
    assert (out.max_abs, out.rel_l2, out.cosine, out.top1_agreement) == (0.0, 0.0, 1.0, 1.0)
    assert out.snr_db == math.inf and fid.exact
    assert fid.to_dict()["outputs"][0]["snr_db"] is None  # JSON has no inf


def test_compare_known_perturbation():
    ref = np.array([[3.0, 4.0]], np.float32)  # ||r|| = 5
    cand = np.array([[3.0, 4.5]], np.float32)  # d = [0, 0.5]
    out = compare_outputs([ref], [cand]).outputs[0]
    assert out.max_abs == pytest.approx(0.5)
    assert out.rel_l2 == pytest.approx(0.1)
    assert out.snr_db == pytest.approx(20.0)  # 10 log10(25 / 0.25)
    assert out.cosine == pytest.approx((9 + 18) / (5 * math.hypot(3, 4.5)))
    assert out.top1_agreement == 1.0
    flipped = compare_outputs([ref], [np.array([[5.0, 4.0]], np.float32)]).outputs[0]
    assert flipped.top1_agreement == 0.0


def test_top1_only_for_classifier_shapes():
    vec = np.ones((4, 1), np.float32)
    assert compare_outputs([vec], [vec]).outputs[0].top1_agreement is None
    ints = np.ones((4, 3), np.int64)
    assert compare_outputs([ints], [ints]).outputs[0].top1_agreement is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ModelcrunchError, match="differs from reference"):
        compare_outputs([np.zeros((2, 3))], [np.zeros((2, 4))])


def test_measure_fidelity_with_labels(tmp_path):
    base, same, noisy = write_mlp_trio(tmp_path)
    rng = np.random.default_rng(0)
    feeds = [{"input": rng.standard_normal((5, 16)).astype(np.float32)} for _ in range(4)]
    ref_labels = np.concatenate([make_session(base).run(None, f)[0].argmax(-1) for f in feeds])
    exact = measure_fidelity(base, ir.load(same), feeds, labels=ref_labels)
    assert exact.exact and exact.samples == 20 and exact.accuracy_reference == 1.0
    assert exact.accuracy_drop == 0.0
    degraded = measure_fidelity(make_session(base), noisy, iter(feeds), labels=ref_labels)
    assert not degraded.exact and degraded.worst_cosine < 0.999
    assert degraded.outputs[0].snr_db < 40
    with pytest.raises(ModelcrunchError, match="20 labels for"):
        measure_fidelity(base, same, feeds[:1], labels=ref_labels)


def test_evaluate_single_model_accuracy(tmp_path):
    base, _, _ = write_mlp_trio(tmp_path)
    feed = {"input": np.zeros((3, 16), np.float32)}
    pred = make_session(base).run(None, feed)[0].argmax(-1)
    result = evaluate([base], [feed], labels=pred)
    assert result.accuracies == [1.0] and result.fidelity == []


# ---- benchmark -----------------------------------------------------------------------------


def test_benchmark_interleaved_reports_ratios(tmp_path):
    base, same, _ = write_mlp_trio(tmp_path)
    feed = {"input": np.zeros((4, 16), np.float32)}
    calls = []
    result = benchmark([base, ir.load(same)], feed, warmup=1, runs=6, on_progress=lambda *a: calls.append(a))
    assert [m.latency.runs for m in result.models] == [6, 6]
    assert result.batch == 4 and result.interleaved
    assert result.ratios[0].latency == 1.0 and result.ratios[1].latency > 0
    assert result.models[0].providers == ["CPUExecutionProvider"]
    assert result.models[0].size_bytes > 0
    assert ("measuring", 6, 6) in calls
    doc = result.to_dict()
    assert doc["models"][1]["ratios"]["size"] == pytest.approx(result.ratios[1].size)


def test_benchmark_time_budget(tmp_path):
    base, _, _ = write_mlp_trio(tmp_path)
    result = benchmark([base], {"input": np.zeros((1, 16), np.float32)}, warmup=0, time_budget_s=0.05)
    assert result.models[0].latency.runs >= 5 and not result.interleaved


def test_perturbed_helper_changes_weights():
    proto = mlp_proto()
    assert perturbed(proto, 0.1).graph.initializer[0].raw_data != proto.graph.initializer[0].raw_data


def test_nan_in_candidate_is_reported_not_hidden():
    ref = np.ones((2, 3), np.float32)
    cand = ref.copy()
    cand[0, 0] = np.nan
    fid = compare_outputs([ref], [cand])
    out = fid.outputs[0]
    assert out.nonfinite == 1 and math.isnan(out.max_abs) and math.isnan(out.cosine)
    assert not out.exact and math.isnan(fid.worst_cosine)
    assert fid.to_dict()["outputs"][0]["cosine"] is None


def test_scalar_bool_input_is_synthesized_as_an_array(tmp_path):
    from models import if_proto, save_proto

    from modelcrunch.runtime.feeds import synthesize_feeds
    from modelcrunch.runtime.session import make_session

    session = make_session(save_proto(if_proto(), tmp_path / "if.onnx"))
    feeds = synthesize_feeds(session, batch=2)
    assert (
        isinstance(feeds["cond"], np.ndarray)
        and feeds["cond"].dtype == np.bool_
        and feeds["cond"].shape == ()
    )
    session.run(None, feeds)


def test_with_activations_yields_feed_and_intermediates_without_changing_the_model():
    from modelcrunch.runtime.capture import with_activations

    model = ir.serde.deserialize_model(mlp_proto())
    feeds = [{"input": np.random.default_rng(i).random((2, 16)).astype(np.float32)} for i in range(3)]
    captured = list(with_activations(model, ["r", "input"], feeds))
    assert [sorted(v) for v in captured] == [["input", "r"]] * 3
    for values, feed in zip(captured, feeds, strict=True):
        assert values["input"] is feed["input"]  # graph inputs come from the feed
        assert values["r"].shape == (2, 32) and values["r"].min() >= 0  # the Relu's output
    assert [o.name for o in model.graph.outputs] == ["output"]


def test_latency_gate_reads_the_interval_of_the_interleaved_ratio():
    from modelcrunch.runtime.bench import ratio_interval
    from modelcrunch.runtime.gates import _latency_check

    rng = np.random.default_rng(0)
    base = (1e6 * (1 + 0.2 * rng.random(400))).astype(int)  # a noisy 1 ms model
    same = (1e6 * (1 + 0.2 * rng.random(400))).astype(int)  # the same speed, other noise
    low, high = ratio_interval(base, same)
    assert low < 1.0 < high and high - low < 0.1
    assert _latency_check("m", 1.02, (low, high), 1.0, None).passed  # an identical model passes 1.0
    slow = (base * 1.3).astype(int)
    low, high = ratio_interval(base, slow)
    assert low > 1.2
    gate = _latency_check("m", 1.3, (low, high), 1.0, None)
    assert not gate.passed and "95 % interval" in gate.message
    assert ratio_interval(base[:3], same[:3]) is None  # too few rounds for an interval
