"""bench judges candidates with the quality judge's task figures, and gates on them (issue 16): the
same figures quantize, prune and factorize are judged by, on real inputs only."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
from models import save_proto
from models_judge import yolo_images, yolo_proto
from onnx import numpy_helper
from typer.testing import CliRunner

from modelcrunch.cli.app import app


def _yolo_pair(tmp_path):
    src = save_proto(yolo_proto(), tmp_path / "y.onnx")
    bad = onnx.load(str(src))
    for t in bad.graph.initializer:
        if t.name == "ws":  # the score branch loses its signal; the boxes (the norm) are untouched
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 0.3, "ws"))
    save_proto(bad, tmp_path / "bad.onnx")
    np.savez(tmp_path / "d.npz", images=yolo_images(8))
    return src, tmp_path / "bad.onnx", tmp_path / "d.npz"


def _bench(*args):
    return CliRunner().invoke(app, ["bench", *map(str, args), "--runs", "3", "--warmup", "1", "--json"])


def test_detection_f1_gate_fails_where_the_global_cosine_passes(tmp_path):
    src, bad, data = _yolo_pair(tmp_path)
    cosine = _bench(src, bad, "--inputs", data, "--min-cosine", "0.99")
    assert cosine.exit_code == 0, cosine.stderr  # the trap: boxes dominate the norm
    doc = json.loads(cosine.stdout)
    (task,) = doc["task"]
    assert task["outputs"]["output0"]["kind"] == "detection"
    f1 = next(f for f in task["figures"] if f["figure"] == "detection F1")
    assert f1["value"] < 0.8 and f1["target"] is None  # reported, not gated: no task gate given

    gated = _bench(src, bad, "--inputs", data, "--min-f1", "0.9")
    assert gated.exit_code == 3
    doc = json.loads(gated.stdout)
    (gate,) = [g for g in doc["gates"] if not g["passed"]]
    assert gate["gate"] == "output0: detection F1" and gate["limit"] == 0.9
    assert gated.stderr.strip().splitlines()[-1].startswith("error: gate failed: output0: detection F1")


def test_identical_candidate_passes_every_default_task_target(tmp_path):
    src, _, data = _yolo_pair(tmp_path)
    same = shutil.copy(src, tmp_path / "same.onnx")
    result = _bench(src, same, "--inputs", data, "--task-targets")
    assert result.exit_code == 0, result.stderr
    gates = json.loads(result.stdout)["gates"]
    assert gates and all(g["passed"] for g in gates)
    assert {g["gate"] for g in gates} >= {"output0: detection F1"}


def test_task_gates_need_real_inputs_and_a_matching_kind(tmp_path):
    src, bad, data = _yolo_pair(tmp_path)
    no_data = _bench(src, bad, "--min-f1", "0.9")
    assert no_data.exit_code == 2 and "--inputs DATA" in no_data.stderr
    wrong_kind = _bench(src, bad, "--inputs", data, "--min-string-agreement", "0.9")
    assert wrong_kind.exit_code == 2
    assert wrong_kind.stderr.strip() == (
        "error: --min-string-agreement: no output of this model is of kind sequence (see --output-kind)"
    )
    # --output-kind overrides the inference: judged as a generic tensor, the F1 gate has no detection
    generic = _bench(src, bad, "--inputs", data, "--min-f1", "0.9", "--output-kind", "output0=generic")
    assert generic.exit_code == 2 and "no output of this model is of kind detection" in generic.stderr


def test_integer_outputs_are_not_shown_missed_without_a_task_gate(tmp_path):
    from onnx import TensorProto, helper

    def argmax_model(scale: float):
        w = numpy_helper.from_array((np.eye(4, 3) * scale).astype(np.float32), "w")
        nodes = [
            helper.make_node("MatMul", ["x", "w"], ["y"]),
            helper.make_node("ArgMax", ["y"], ["k"], axis=1),
        ]
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
            [helper.make_tensor_value_info("k", TensorProto.INT64, ["N", 1])], [w],
        )  # fmt: skip
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    a, b = (
        save_proto(argmax_model(1.0), tmp_path / "a.onnx"),
        save_proto(argmax_model(-1.0), tmp_path / "b.onnx"),
    )
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    plain = _bench(a, b, "--inputs", tmp_path / "d.npz")
    assert plain.exit_code == 0, plain.stderr
    (task,) = json.loads(plain.stdout)["task"]
    assert task["passed"] and all(f["target"] is None for f in task["figures"])
    strict = _bench(a, b, "--inputs", tmp_path / "d.npz", "--task-targets")
    assert strict.exit_code == 3 and "k: identical" in strict.stderr
