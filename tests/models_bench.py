"""Test models for the runtime/bench tests: mixed-dtype inputs, and perturbed copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from models import mlp_proto, save_proto
from onnx import TensorProto, helper, numpy_helper


def mixed_inputs_proto(vocab: int = 50) -> onnx.ModelProto:
    """ids int64 [batch, seq] → Gather(emb[vocab, 4]); x float [batch, 4]; flag bool [batch].

    out[batch, seq, 4] = emb[ids] + x[:, None, :] * Cast(flag)[:, None, None]
    """
    emb = np.random.default_rng(1).standard_normal((vocab, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], axis=0),
        helper.make_node("Cast", ["flag"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["f", "axes12"], ["f3"]),
        helper.make_node("Unsqueeze", ["x", "axes1"], ["x3"]),
        helper.make_node("Mul", ["x3", "f3"], ["xf"]),
        helper.make_node("Add", ["e", "xf"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, ["batch"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq", 4])],
        [
            numpy_helper.from_array(emb, "emb"),
            numpy_helper.from_array(np.array([1, 2], np.int64), "axes12"),
            numpy_helper.from_array(np.array([1], np.int64), "axes1"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def perturbed(proto: onnx.ModelProto, scale: float, seed: int = 12345) -> onnx.ModelProto:
    """A copy whose float initializers get Gaussian noise of ``scale`` times their std."""
    rng = np.random.default_rng(seed)
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for init in copy.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f":
            noisy = arr + rng.standard_normal(arr.shape).astype(arr.dtype) * scale * (arr.std() or 1.0)
            init.CopyFrom(numpy_helper.from_array(noisy.astype(arr.dtype), init.name))
    return copy


def write_mlp_trio(folder: Path) -> tuple[Path, Path, Path]:
    """mlp.onnx, an identical copy, and a copy with 30 % weight noise."""
    proto = mlp_proto()
    base = save_proto(proto, folder / "mlp.onnx")
    same = save_proto(proto, folder / "mlp_copy.onnx")
    noisy = save_proto(perturbed(proto, 0.3), folder / "mlp_noisy.onnx")
    return base, same, noisy
