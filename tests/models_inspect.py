"""Small models for the inspect tests: every heavy op with shapes chosen so MACs are easy to check."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(7)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _vi(name: str, dims: list, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, dims)


def model(nodes, inputs, outputs, inits: dict[str, np.ndarray], *, ms: bool = False) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="tests")
    proto.ir_version = 8
    return proto


def conv_proto(batch: int | str = 1, group: int = 1, stride: int = 1) -> onnx.ModelProto:
    """x[batch,4,10,10] → Conv(8 filters, 3x3, pad 1, group, stride) → y."""
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "w", "b"],
            ["y"],
            pads=[1, 1, 1, 1],
            group=group,
            strides=[stride, stride],
            name="conv",
        )
    ]
    return model(
        nodes, [_vi("x", [batch, 4, 10, 10])], [_vi("y", None)], {"w": _w(8, 4 // group, 3, 3), "b": _w(8)}
    )


def gemm_matmul_proto() -> onnx.ModelProto:
    """a[4,16] → Gemm(transB, W 32x16) → h[4,32]; m[2,5,32] @ W2[32,8] → out[2,5,8]."""
    nodes = [
        helper.make_node("Gemm", ["a", "w", "b"], ["h"], transB=1, name="gemm"),
        helper.make_node("MatMul", ["m", "w2"], ["out"], name="matmul"),
    ]
    return model(
        nodes,
        [_vi("a", [4, 16]), _vi("m", [2, 5, 32])],
        [_vi("h", None), _vi("out", None)],
        {"w": _w(32, 16), "b": _w(32), "w2": _w(32, 8)},
    )


def shared_weight_proto() -> onnx.ModelProto:
    """Two MatMuls share one 8x8 weight; a Reshape's int64 shape tensor is not a parameter."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm1"),
        helper.make_node("MatMul", ["h", "w"], ["h2"], name="mm2"),
        helper.make_node("Reshape", ["h2", "shape"], ["y"], name="reshape"),
    ]
    return model(
        nodes,
        [_vi("x", ["batch", 8])],
        [_vi("y", None)],
        {"w": _w(8, 8), "shape": np.array([-1, 4, 2], dtype=np.int64)},
    )


def sparse_weight_proto() -> onnx.ModelProto:
    """x[1,4] @ w[4,4] where w holds 4 zeros (two of them -0.0)."""
    w = _w(4, 4)
    w[0, :2] = 0.0
    w[1, :2] = -0.0
    return model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [_vi("x", [1, 4])],
        [_vi("y", None)],
        {"w": w},
    )


def quantized_proto() -> onnx.ModelProto:
    """DequantizeLinear(int8 W)→MatMul, and DynamicQuantizeLinear→MatMulInteger(uint8 W)."""
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="dq"),
        helper.make_node("MatMul", ["x", "wd"], ["h"], name="mm_dq"),
        helper.make_node("DynamicQuantizeLinear", ["h"], ["hq", "hs", "hz"], name="dql"),
        helper.make_node("MatMulInteger", ["hq", "w2q", "hz", "w2z"], ["y"], name="mm_int"),
    ]
    inits = {
        "wq": RNG.integers(-127, 127, (16, 8)).astype(np.int8),
        "ws": np.array(0.01, dtype=np.float32),
        "wz": np.array(0, dtype=np.int8),
        "w2q": RNG.integers(0, 255, (8, 4)).astype(np.uint8),
        "w2z": np.array(128, dtype=np.uint8),
    }
    return model(nodes, [_vi("x", [3, 16])], [_vi("y", None, TensorProto.INT32)], inits)


def embedding_lstm_proto() -> onnx.ModelProto:
    """ids[5,2] → Gather(table 50x8) → LSTM(hidden 4) ; a Gather on a 1-D tensor is not a layer."""
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
        helper.make_node("LSTM", ["emb", "W", "R"], ["y"], hidden_size=4, name="lstm"),
        helper.make_node("Gather", ["vec", "idx"], ["picked"], name="pick"),
    ]
    inits = {
        "table": _w(50, 8),
        "W": _w(1, 16, 8),
        "R": _w(1, 16, 4),
        "vec": _w(6),
        "idx": np.array([1, 2], dtype=np.int64),
    }
    return model(nodes, [_vi("ids", [5, 2], TensorProto.INT64)], [_vi("y", None), _vi("picked", None)], inits)


def attention_proto() -> onnx.ModelProto:
    """com.microsoft Attention: x[2,4,8], W[8,24], 2 heads."""
    nodes = [
        helper.make_node(
            "Attention", ["x", "w", "b"], ["y"], domain="com.microsoft", num_heads=2, name="attn"
        )
    ]
    return model(nodes, [_vi("x", [2, 4, 8])], [_vi("y", None)], {"w": _w(8, 24), "b": _w(24)}, ms=True)


def paddle_reshape_proto() -> onnx.ModelProto:
    """PaddleOCR's flatten: Shape → Cast(int32) → Slice → Cast(int64) → Concat(axis=-1) → Reshape → MatMul.

    onnx's data propagation stops at the Casts; the fold pass recovers the Reshape's [N, 32].
    """
    i64 = TensorProto.INT64
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Cast", ["s"], ["s32"], to=TensorProto.INT32, name="cast32"),
        helper.make_node("Slice", ["s32", "zero", "one"], ["n32"], name="slice"),
        helper.make_node("Cast", ["n32"], ["n"], to=i64, name="cast64"),
        helper.make_node("Concat", ["n", "minus1"], ["target"], axis=-1, name="concat"),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "w"], ["y"], name="fc"),
    ]
    inits = {
        "zero": np.array([0], dtype=np.int64),
        "one": np.array([1], dtype=np.int64),
        "minus1": np.array([-1], dtype=np.int64),
        "w": _w(32, 4),
    }
    return model(nodes, [_vi("x", ["batch", 8, 2, 2])], [_vi("y", None)], inits)


def if_computed_pads_proto() -> onnx.ModelProto:
    """An If whose branches pad x[batch,6] → [batch,8] with pads computed by Concat, then MatMul(8x4).

    onnx's inference does not propagate data inside subgraphs; the fold pass makes the pads constant.
    """

    def branch(tag: str) -> onnx.GraphProto:
        nodes = [
            helper.make_node(
                "Concat", [f"z_{tag}", f"o_{tag}", f"z_{tag}", f"o_{tag}"], [f"pads_{tag}"], axis=0
            ),
            helper.make_node("Pad", ["x", f"pads_{tag}"], [f"p_{tag}"], name=f"pad_{tag}"),
            helper.make_node("MatMul", [f"p_{tag}", f"w_{tag}"], [f"y_{tag}"], name=f"mm_{tag}"),
        ]
        inits = [
            numpy_helper.from_array(np.array([0], dtype=np.int64), f"z_{tag}"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), f"o_{tag}"),
            numpy_helper.from_array(_w(8, 4), f"w_{tag}"),
        ]
        return helper.make_graph(nodes, tag, [], [_vi(f"y_{tag}", None)], inits)

    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch("then"), else_branch=branch("else"))
    return model([node], [_vi("x", ["batch", 6]), _vi("cond", [], TensorProto.BOOL)], [_vi("y", None)], {})
