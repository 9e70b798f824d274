"""passes/im2col.py: rows times the flattened weight is ONNX Runtime's Conv; sampled rows are real windows."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from models import run_ort
from onnx import TensorProto, helper, numpy_helper

from modelcrunch.passes.im2col import im2col

RNG = np.random.default_rng(0)


def conv(w: np.ndarray, shape: list[int], **attrs):
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return proto, ir.serde.deserialize_model(proto).graph.node(0)


def test_rows_times_weight_is_the_conv() -> None:
    x = RNG.standard_normal((2, 3, 9, 11)).astype(np.float32)
    w = RNG.standard_normal((4, 3, 3, 2)).astype(np.float32)
    for attrs in (
        {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]},
        {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    ):
        proto, node = conv(w, [2, 3, 9, 11], **attrs)
        (y,) = run_ort(proto, {"x": x})
        rows = im2col(x, node, (3, 2))
        expected = y.transpose(0, 2, 3, 1).reshape(-1, 4)
        np.testing.assert_allclose(rows @ w.reshape(4, -1).T, expected, rtol=1e-4, atol=1e-4)


def test_sampled_rows_are_real_windows() -> None:
    x = RNG.standard_normal((2, 3, 20, 20)).astype(np.float32)
    _, node = conv(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), [2, 3, 20, 20], pads=[1, 1, 1, 1])
    full = im2col(x, node, (3, 3))
    sampled = im2col(x, node, (3, 3), rows=100, rng=np.random.default_rng(0))
    assert full.shape == (800, 27) and sampled.shape == (100, 27)
    windows = {tuple(row) for row in full}
    assert all(tuple(row) in windows for row in sampled)  # every channel of one window, together
    # the same rows, in the same order, as sampling the full matrix with the same generator
    np.testing.assert_array_equal(sampled, full[np.random.default_rng(0).choice(800, 100, replace=False)])
