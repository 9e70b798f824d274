"""Default fidelity targets read from a model's outputs (``targets.py``), the mask IoU they use
(``runtime/fidelity.py``), and the search that keeps layers float (``sensitivity.py``, ``--compact``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
from models import save_proto
from models_quantize import probability_map_proto, stacked_data
from onnx import TensorProto, helper

from modelcrunch.passes.quantize import Mode, QuantizeOptions, pipeline, quantize_model
from modelcrunch.passes.quantize.sensitivity import Score, guard, smallest_count
from modelcrunch.passes.quantize.targets import DEFAULT_MASK_IOU, map_outputs, meets
from modelcrunch.runtime.fidelity import Fidelity, OutputFidelity, compare_outputs


def test_mask_iou_of_probability_outputs():
    ref = np.array([[0.2, 0.6, 0.9, 0.4]], np.float32)
    cand = np.array([[0.2, 0.4, 0.9, 0.6]], np.float32)
    assert compare_outputs([ref], [cand]).outputs[0].mask_iou == pytest.approx(1 / 3)  # {1,2} vs {2,3}
    quiet = np.full((1, 4), 0.1, np.float32)
    assert compare_outputs([quiet], [quiet + 0.2]).outputs[0].mask_iou == 1.0  # no pixel above 0.5
    logits = ref * 4 - 2  # values outside [0, 1]: not probabilities
    assert compare_outputs([logits], [logits]).outputs[0].mask_iou is None
    assert compare_outputs([np.arange(4)], [np.arange(4)]).outputs[0].mask_iou is None  # integers


def test_map_outputs_are_sigmoid_maps_of_rank_3_or_more():
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["map"]),
        helper.make_node("Sigmoid", ["v"], ["score"]),  # [n, 1]: one probability per sample, no map
        helper.make_node("Relu", ["x"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64]),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", 1]),
        ],
        [
            helper.make_tensor_value_info("map", TensorProto.FLOAT, ["n", 1, 8, 8]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n", 1]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 64]),
        ],
        [helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 8, 8])],
    )
    model = ir.serde.deserialize_model(helper.make_model(graph))
    assert map_outputs(model) == ["map"]


def _fidelity(cosine: float, mask_iou: float | None) -> Fidelity:
    return Fidelity([OutputFidelity("map", 0.1, 0.1, cosine, 20.0, None, mask_iou=mask_iou)], samples=1)


def test_mask_gate_and_its_loss():
    options = QuantizeOptions(min_mask_iou=0.985, mask_outputs=("map",))
    assert meets(options, Score(_fidelity(0.999, 0.99), 0.0))
    assert not meets(options, Score(_fidelity(0.999, 0.98), 0.0))  # the cosine alone would pass
    assert not meets(options, Score(_fidelity(0.999, None), 0.0))  # no probability output: missed
    ranked = Score(_fidelity(0.999, 0.98), 0.0, mask_weight=1.0, mask_outputs=("map",))
    assert ranked.loss == pytest.approx(0.02) and "mask IoU 0.9800" in ranked.describe()


def test_probability_map_gets_a_default_mask_target(tmp_path):
    """A Sigmoid map gets --min-mask-iou 0.985 without any flag (0 switches it off). Here int8 moves
    region edges (mask IoU 0.98) while the cosine stays > 0.9999: only the mask target sees it, and
    the guard keeps the worst layer float for it."""
    model = probability_map_proto()
    src = save_proto(model, tmp_path / "m.onnx")
    calib = stacked_data(model, tmp_path / "c.npz", n=16)
    options = QuantizeOptions(
        mode=Mode.STATIC, bench=False, max_eval_samples=16, holdout=0.0, bias_correction=False
    )
    off = quantize_model(src, tmp_path / "o.onnx", replace(options, min_mask_iou=0.0), calibration=calib)
    plain = off.fidelity["outputs"][0]
    assert not any(f["figure"].startswith("mask IoU") and f["target"] for f in off.verdict["figures"])
    assert not off.nodes_excluded
    assert plain["cosine"] > 0.9999 and plain["mask_iou"] < DEFAULT_MASK_IOU
    report = quantize_model(src, tmp_path / "q.onnx", options, calibration=calib)
    mean = next(f for f in report.verdict["figures"] if f["figure"] == "mask IoU (mean per sample)")
    assert mean["output"] == "map" and mean["kind"] == "map" and mean["target"] == DEFAULT_MASK_IOU
    assert report.target["met"] and mean["value"] >= DEFAULT_MASK_IOU
    assert any("mask IoU" in node.reason for node in report.nodes_excluded)
    # bias correction alone removes most of that edge shift (measured: mask IoU 0.981 -> 0.994)
    fixed = quantize_model(
        src, tmp_path / "b.onnx", replace(options, min_mask_iou=0.0, bias_correction=True), calibration=calib
    )
    assert fixed.fidelity["outputs"][0]["mask_iou"] >= plain["mask_iou"] + 0.005
    assert any(n.startswith("bias correction of ") and "not kept" not in n for n in fixed.preprocessing)


def test_smallest_count():
    assert smallest_count(20, lambda n: n >= 7) == 7
    assert smallest_count(20, lambda n: n >= 21) is None
    assert smallest_count(0, lambda n: True) is None


def test_count_search_on_a_subset_is_confirmed_on_every_sample():
    """The subset says 3 layers float suffice; all samples need 5: the answer is 5, measured in full."""
    from types import SimpleNamespace

    from modelcrunch.passes.quantize.sensitivity import search_count

    subset, full = object(), object()
    calls = []

    def attempt(count, how):
        calls.append((count, "full" if how is full else "subset"))
        return SimpleNamespace(met=count >= (5 if how is full else 3), count=count, full=how is full)

    found = search_count(20, attempt, full, subset)
    assert (found.count, found.full, found.met) == (5, True, True)
    assert all(how == "subset" for _, how in calls[:4]) and (3, "full") in calls
    missed = search_count(4, lambda count, how: SimpleNamespace(met=how is subset, count=count), full, subset)
    assert not missed.met and missed.count == 4  # never met in full: the most float attempt, missed


def test_a_count_measured_twice_is_built_once():
    from modelcrunch.passes.quantize.sensitivity import cached

    built = []
    build = cached(lambda only, exclude: built.append((only, tuple(exclude))) or Path(f"m{len(built)}.onnx"))
    assert build(None, ["a", "b"]) == build(None, ("a", "b")) == Path("m1.onnx")
    assert build(["c"], []) == Path("m2.onnx") and len(built) == 2


LOSSES = {f"n{i}": 0.001 * (i + 1) for i in range(20)}  # n19 worst; quantizing all: 0.21
COMPACT_LOSS = 0.0005  # each float layer whose weights are stored as int8


def _fake_build(tmp_path: Path):
    """A "model" is a text file: the quantized layers, and whether float weights are int8."""
    count = [0]

    def write(text: str) -> Path:
        count[0] += 1
        path = tmp_path / f"{count[0]}.txt"
        path.write_text(text)
        return path

    def build(only, exclude):
        return write(",".join(only or [n for n in LOSSES if n not in exclude]) + "|exact")

    def compact_copy(ws, path, keep_exact):
        return write(path.read_text().replace("|exact", "|compact"))

    def measure(path):
        names, form = path.read_text().split("|")
        quantized = [n for n in names.split(",") if n]
        loss = sum(LOSSES[n] for n in quantized)
        if form == "compact":
            loss += COMPACT_LOSS * (len(LOSSES) - len(quantized))
        return Score(_fidelity(1.0 - loss, None), 0.0)

    return build, compact_copy, measure


def test_compact_keeps_more_layers_float_when_int8_weights_miss(tmp_path, monkeypatch):
    """The guard meets loss <= 0.12 with the 5 worst layers float and exact (0.21 - 0.09), with no
    margin: int8 weights for them miss (+0.0025). --compact then keeps one more layer float, all
    six with int8 weights: 0.21 - 0.105 + 0.003 = 0.108."""
    build, compact_copy, measure = _fake_build(tmp_path)
    monkeypatch.setattr(pipeline, "compact_copy", compact_copy)

    def ok(score):
        return score.loss <= 0.12 + 1e-12

    result = guard(list(LOSSES), build, measure, measure, ok, target="loss <= 0.12")
    assert result.met and result.floats == 5
    search = pipeline._Search(build, measure, ok, [], "loss <= 0.12")
    notes: list[str] = []
    compacted = pipeline._compact(None, result, search, [], notes)
    assert compacted.met and sorted(compacted.excluded) == sorted(f"n{i}" for i in range(14, 20))
    assert compacted.path.read_text().endswith("|compact")
    assert "1 more sensitive group kept float" in notes[0]


def test_auto_without_bench_does_not_call_the_choice_slower():
    from modelcrunch.passes.quantize.auto import choose
    from modelcrunch.passes.quantize.report import Candidate

    static = Candidate("static", 300, None, 0.999, None, True, 4, 0)
    storage = Candidate("storage", 260, None, 0.9999, None, True, 4, 0)
    best, reason = choose([static, storage])
    assert best == 1 and "not measured" in reason and "SLOWER" not in reason
