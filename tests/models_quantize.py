"""Model builders for the quantize tests (weights big enough for every mode to touch)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(42)


def _w(*shape: int, scale: float = 0.2) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def cnn_proto(*, opset: int = 17) -> onnx.ModelProto:
    """input[batch,3,16,16] → Conv+Relu → Conv+Relu → GAP → Flatten → Gemm → logits[batch,10]."""
    inits = {
        "c1w": _w(16, 3, 3, 3),
        "c1b": _w(16),
        "c2w": _w(16, 16, 3, 3, scale=0.1),
        "c2b": _w(16),
        "fcw": _w(10, 16),
        "fcb": _w(10),
    }
    nodes = [
        helper.make_node("Conv", ["input", "c1w", "c1b"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2w", "c2b"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fcw", "fcb"], ["logits"], transB=1, name="fc"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
        opset,
    )


def matmul_proto(*, opset: int = 17) -> onnx.ModelProto:
    """input[batch,64] → MatMul 64x64 → Relu → MatMul 64x64 + bias → Relu → MatMul 64x10 → logits."""
    inits = {"w1": _w(64, 64), "w2": _w(64, 64), "b2": _w(64), "w3": _w(64, 10)}
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h1"], name="mm1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="mm2"),
        helper.make_node("Add", ["h2", "b2"], ["a2"], name="bias2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("MatMul", ["r2", "w3"], ["logits"], name="mm3"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
        opset,
    )


def embedding_proto() -> onnx.ModelProto:
    """ids[batch,8] → Gather(table 512x64) → MatMul 64x1024 + bias → Relu → ReduceMean → [batch,1024].

    The bias is big enough (1024) that only the weight-slot rule keeps it out of int8 storage."""
    inits = {"table": _w(512, 64), "w": _w(64, 1024), "b": _w(1024)}
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
        helper.make_node("MatMul", ["emb", "w"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["hb"], name="bias"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r"], ["out"], name="pool", axes=[1], keepdims=0),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1024])],
        inits,
        17,
    )


def outlier_token_proto(*, opset: int = 17) -> onnx.ModelProto:
    """x[batch,8,64] * row scales (token 7 is 1000x the others) → MatMul 64x64 → tokens 0..6.

    One outlier token sets a per-tensor activation scale that flattens every other token: the
    trap per-token int8 exists for. The output leaves the outlier out, so the damage shows."""
    scales = np.ones((8, 1), np.float32)
    scales[7] = 1000.0
    inits = {
        "token_scale": scales,
        "w": _w(64, 64),
        "starts": np.array([0], np.int64),
        "ends": np.array([7], np.int64),
        "axes": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("Mul", ["x", "token_scale"], ["xs"], name="scale_tokens"),
        helper.make_node("MatMul", ["xs", "w"], ["h"], name="mm"),
        helper.make_node("Slice", ["h", "starts", "ends", "axes"], ["out"], name="drop_outlier"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 7, 64])],
        inits,
        opset,
    )


def embedding_layernorm_proto(opset: int = 14) -> onnx.ModelProto:
    """ids[batch,8] → Gather(table 512x64) → ReduceMean(axes attribute, as before opset 18) → Sub
    → MatMul 64x64: 4-bit Gather needs opset 21, where ReduceMean's axes became an input."""
    inits = {"table": _w(512, 64), "w": _w(64, 64)}
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
        helper.make_node("ReduceMean", ["emb"], ["mean"], name="mean", axes=[-1], keepdims=1),
        helper.make_node("Sub", ["emb", "mean"], ["centered"], name="center"),
        helper.make_node("MatMul", ["centered", "w"], ["out"], name="mm"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 8, 64])],
        inits,
        opset,
    )


def mixed_range_proto(box_scale: float = 10.0, cls_scale: float = 0.2) -> onnx.ModelProto:
    """A head whose one output concatenates boxes (~50) and scores (~1): one scale crushes the scores."""
    inits = {"w1": _w(64, 64), "wbox": _w(64, 4, scale=box_scale), "wcls": _w(64, 60, scale=cls_scale)}
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h"], name="trunk"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "wbox"], ["box"], name="box_head"),
        helper.make_node("MatMul", ["r", "wcls"], ["cls"], name="cls_head"),
        helper.make_node("Concat", ["box", "cls"], ["out"], axis=1, name="concat"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1024])],
        inits,
        17,
    )


def softmax_overflow_proto() -> onnx.ModelProto:
    """MatMul → Mul(1e5) (overflows fp16) → Softmax; plus an int64 shape path (must stay untouched)."""
    inits = {
        "w": _w(64, 64),
        "big": np.array(1e5, dtype=np.float32),
        "small": np.array(1e-5, dtype=np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["h"], name="mm"),
        helper.make_node("Mul", ["h", "big"], ["hb"], name="scale_up"),
        helper.make_node("Mul", ["hb", "small"], ["hs"], name="scale_down"),
        helper.make_node("Softmax", ["hs"], ["probs"], axis=-1, name="softmax"),
        helper.make_node("Shape", ["input"], ["shape"], name="shape"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 64]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        inits,
        17,
    )


def if_matmul_proto() -> onnx.ModelProto:
    """Weights (64x64) inside both branches of an If; one branch holds them in a Constant node."""
    wt, we = _w(64, 64), _w(64, 64)
    then_g = helper.make_graph(
        [helper.make_node("MatMul", ["input", "wt"], ["yt"], name="then_mm")],
        "then",
        [],
        [helper.make_tensor_value_info("yt", TensorProto.FLOAT, ["batch", 64])],
        [numpy_helper.from_array(wt, "wt")],
    )
    else_g = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["we"], value=numpy_helper.from_array(we, "we"), name="we_const"
            ),
            helper.make_node("MatMul", ["input", "we"], ["ye"], name="else_mm"),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("ye", TensorProto.FLOAT, ["batch", 64])],
    )
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g, name="branch")]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        {},
        17,
    )


def stacked_data(model: onnx.ModelProto, path, n: int = 24, seed: int = 0):
    """A dataset file in the shared format: arrays keyed by input name, stacked on the sample axis."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for value in model.graph.input:
        dims = [d.dim_value if d.dim_value else 1 for d in value.type.tensor_type.shape.dim]
        arrays[value.name] = rng.random([n, *dims[1:]]).astype(np.float32)
    np.savez(path, **arrays)
    return path


def if_captured_proto() -> onnx.ModelProto:
    """An If whose branches compute on weights captured from the main graph and on their own:

    input → MatMul(w_in) → h; If(cond): then Relu(MatMul(h, w_shared) + b_then), else
    Softmax(MatMul(h, w_else) + b_shared) (Softmax stays fp32 in fp16); out = If + h."""
    inits = {"w_in": _w(64, 64), "w_shared": _w(64, 64), "b_shared": _w(64)}
    then_g = helper.make_graph(
        [
            helper.make_node("MatMul", ["h", "w_shared"], ["t1"], name="then_mm"),
            helper.make_node("Add", ["t1", "b_then"], ["t2"], name="then_bias"),
            helper.make_node("Relu", ["t2"], ["yt"], name="then_relu"),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("yt", TensorProto.FLOAT, ["batch", 64])],
        [numpy_helper.from_array(_w(64), "b_then")],
    )
    else_g = helper.make_graph(
        [
            helper.make_node("MatMul", ["h", "w_else"], ["e1"], name="else_mm"),
            helper.make_node("Add", ["e1", "b_shared"], ["e2"], name="else_bias"),
            helper.make_node("Softmax", ["e2"], ["ye"], axis=-1, name="else_softmax"),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("ye", TensorProto.FLOAT, ["batch", 64])],
        [numpy_helper.from_array(_w(64, 64), "w_else")],
    )
    nodes = [
        helper.make_node("MatMul", ["input", "w_in"], ["h"], name="mm_in"),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g, name="branch"),
        helper.make_node("Add", ["y", "h"], ["out"], name="residual"),
    ]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 64])],
        inits,
        17,
    )


def loop_matmul_proto(trips: int = 3) -> onnx.ModelProto:
    """A Loop carrying h[batch,64] through h = Tanh(MatMul(h, w) + b) (w captured, b in the body);
    outputs the final h and every step's h (a scan output)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="loop_cond"),
            helper.make_node("MatMul", ["h_in", "w"], ["m"], name="loop_mm"),
            helper.make_node("Add", ["m", "b"], ["a"], name="loop_bias"),
            helper.make_node("Tanh", ["a"], ["h_out"], name="loop_tanh"),
            helper.make_node("Identity", ["h_out"], ["h_scan"], name="loop_scan"),
        ],
        "body",
        [
            helper.make_tensor_value_info("iter", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["batch", 64]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["batch", 64]),
            helper.make_tensor_value_info("h_scan", TensorProto.FLOAT, ["batch", 64]),
        ],
        [numpy_helper.from_array(_w(64), "b")],
    )
    inits = {"w": _w(64, 64), "trips": np.array(trips, np.int64), "go": np.array(True)}
    nodes = [helper.make_node("Loop", ["trips", "go", "input"], ["h", "steps"], body=body, name="loop")]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [
            helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", 64]),
            helper.make_tensor_value_info("steps", TensorProto.FLOAT, [trips, "batch", 64]),
        ],
        inits,
        17,
    )


def einsum_proto() -> onnx.ModelProto:
    """input[batch,64] → MatMul 64x64 + bias → Einsum with a 64x64 weight (precision-sensitive op)."""
    inits = {"w": _w(64, 64), "b": _w(64), "e": _w(64, 64)}
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["hb"], name="bias"),
        helper.make_node("Einsum", ["hb", "e"], ["out"], equation="ij,jk->ik", name="einsum"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 64])],
        inits,
        17,
    )


def conv_bn_proto(*, opset: int = 11) -> onnx.ModelProto:
    """input[batch,3,16,16] → Conv(3→32, no bias) → BatchNormalization → Relu → GAP → output[batch,32,1,1]
    at an old opset, as mobile CNN exporters write it. Its own RNG: the shared stream stays as it was."""
    rng = np.random.default_rng(11)
    w = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32)  # noqa: E731
    inits = {
        "w": w(32, 3, 3, 3),
        "gamma": 1.0 + w(32),
        "beta": w(32),
        "mean": w(32),
        "var": 0.5 + np.abs(w(32)),
    }
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["output"], name="gap"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 32, 1, 1])],
        inits,
        opset,
    )


def near_tie_proto(*, softmax: bool = False) -> onnx.ModelProto:
    """input[batch,16] → MatMul(16→64) → Relu → MatMul(64→10) → logits (→ Softmax → probs): classes 0
    and 1 have almost the same weights, so int8 flips many argmaxes while the cosine stays ~1."""
    rng = np.random.default_rng(5)
    w1 = (rng.standard_normal((16, 64)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((64, 10)) * 0.3).astype(np.float32)
    w2[:, 0] += 1.0  # classes 0 and 1 win every time ...
    w2[:, 1] = w2[:, 0] + (rng.standard_normal(64) * 1e-2).astype(np.float32)  # ... by a hair
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["logits"], name="head"),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="softmax"))
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("probs" if softmax else "logits", TensorProto.FLOAT, ["batch", 10])],
        {"w1": w1, "w2": w2},
        17,
    )


def hand_layernorm_proto() -> onnx.ModelProto:
    """input[batch,16,64] → MatMul+bias → LayerNorm spelt out (ReduceMean, Sub, Mul, ReduceMean, Add,
    Sqrt, Div, Mul, Add) → MatMul → g + g·sigmoid(g) → MatMul → out[batch,16,64].

    The LayerNorm's input is shifted far from zero, as real residual streams are: one uint8 scale for
    ``x`` and ``x - mean`` then loses the centred values."""
    inits = {
        "w1": _w(64, 64),
        "b1": (_w(64) + 20.0).astype(np.float32),
        "gamma": (1.0 + _w(64)).astype(np.float32),
        "beta": _w(64),
        "eps": np.array(1e-5, np.float32),
        "w2": _w(64, 64),
        "w3": _w(64, 64),
    }
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h"], name="fc1_bias"),
        helper.make_node("ReduceMean", ["h"], ["mean"], axes=[-1], name="ln_mean"),
        helper.make_node("Sub", ["h", "mean"], ["centered"], name="ln_sub"),
        helper.make_node("Mul", ["centered", "centered"], ["square"], name="ln_square"),
        helper.make_node("ReduceMean", ["square"], ["var"], axes=[-1], name="ln_var"),
        helper.make_node("Add", ["var", "eps"], ["var_eps"], name="ln_eps"),
        helper.make_node("Sqrt", ["var_eps"], ["std"], name="ln_sqrt"),
        helper.make_node("Div", ["centered", "std"], ["normed"], name="ln_div"),
        helper.make_node("Mul", ["normed", "gamma"], ["scaled"], name="ln_gamma"),
        helper.make_node("Add", ["scaled", "beta"], ["ln"], name="ln_beta"),
        helper.make_node("MatMul", ["ln", "w2"], ["g"], name="fc2"),
        helper.make_node("Sigmoid", ["g"], ["gate"], name="sigmoid"),
        helper.make_node("Mul", ["g", "gate"], ["silu"], name="silu"),
        helper.make_node("Add", ["silu", "g"], ["res"], name="residual"),
        helper.make_node("MatMul", ["res", "w3"], ["out"], name="fc3"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16, 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 16, 64])],
        inits,
        13,
    )


def probability_map_proto() -> onnx.ModelProto:
    """input[batch,4,16,16] → Conv+Relu → Conv(→1) → Sigmoid → map[batch,1,16,16]: a text-detection
    style probability map, read by thresholding."""
    rng = np.random.default_rng(12)  # its own generator: the same model whichever tests ran first

    def w(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    inits = {"c1w": w(16, 4, 3, 3), "c1b": w(16), "c2w": w(1, 16, 3, 3, scale=0.3), "c2b": w(1)}
    nodes = [
        helper.make_node("Conv", ["input", "c1w", "c1b"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2w", "c2b"], ["logit"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Sigmoid", ["logit"], ["map"], name="sigmoid"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4, 16, 16])],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", 1, 16, 16])],
        inits,
        17,
    )
