"""Small models whose outputs have a task kind (detection, classes, sequence, embedding, map,
scalar), for the judge's tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(7)


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def yolo_proto(classes: int = 3, anchors: int = 64) -> onnx.ModelProto:
    """images [N, 3, 8, 8] → features → box branch (pixel coordinates, 0-320) and score branch
    (Sigmoid) → Concat on axis 1 → [N, 4 + classes, 64]: the YOLOv8 head layout, whose box channels
    dominate every global norm."""
    side = int(np.sqrt(anchors))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), 0).astype(np.float32)
    offset = np.zeros((1, 4, side, side), np.float32)
    offset[0, 0], offset[0, 1] = grid[1] * 40 + 20, grid[0] * 40 + 20  # centres on a 40-pixel grid
    offset[0, 2:] = 60.0  # widths and heights around 60 pixels
    inits = [
        _init("wf", RNG.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.5),
        _init("wb", RNG.standard_normal((4, 16, 1, 1)).astype(np.float32) * 0.1),
        _init("ws", RNG.standard_normal((classes, 16, 1, 1)).astype(np.float32) * 0.4),
        _init("bs", np.full(classes, -1.5, np.float32)),
        _init("scale", np.array(10.0, np.float32)),
        _init("offset", offset),
        _init("shape", np.array([0, 4 + classes, anchors], np.int64)),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "wf"], ["f"], pads=[1, 1, 1, 1], name="stem"),
        helper.make_node("Relu", ["f"], ["fr"], name="relu"),
        helper.make_node("Conv", ["fr", "wb"], ["b0"], name="box"),
        helper.make_node("Mul", ["b0", "scale"], ["b1"], name="box_scale"),
        helper.make_node("Add", ["b1", "offset"], ["boxes"], name="box_offset"),
        helper.make_node("Conv", ["fr", "ws", "bs"], ["s0"], name="score"),
        helper.make_node("Sigmoid", ["s0"], ["scores"], name="sigmoid"),
        helper.make_node("Concat", ["boxes", "scores"], ["cat"], axis=1, name="concat"),
        helper.make_node("Reshape", ["cat", "shape"], ["output0"], name="flatten"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, side, side])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + classes, anchors])],
        inits,
    )


def kinds_proto() -> onnx.ModelProto:
    """One input x [N, 16] (and a token input with an attention mask) feeding one output of every
    kind: classes (Softmax), sequence ([N, T, C] Softmax), embedding (token states with a mask
    input), map (Sigmoid of rank 4), scalar ([N, 1]) and generic (a Relu)."""
    inits = [
        _init("wc", RNG.standard_normal((16, 5)).astype(np.float32)),
        _init("ws", RNG.standard_normal((16, 6 * 7)).astype(np.float32)),
        _init("seq_shape", np.array([-1, 6, 7], np.int64)),
        _init("we", RNG.standard_normal((16, 4 * 64)).astype(np.float32)),
        _init("emb_shape", np.array([-1, 4, 64], np.int64)),
        _init("wm", RNG.standard_normal((16, 2 * 3 * 3)).astype(np.float32)),
        _init("map_shape", np.array([-1, 2, 3, 3], np.int64)),
        _init("wp", RNG.standard_normal((16, 1)).astype(np.float32)),
        _init("wg", RNG.standard_normal((16, 12)).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "wc"], ["lc"]),
        helper.make_node("Softmax", ["lc"], ["probs"], axis=1),
        helper.make_node("MatMul", ["x", "ws"], ["ls"]),
        helper.make_node("Reshape", ["ls", "seq_shape"], ["ls3"]),
        helper.make_node("Softmax", ["ls3"], ["ctc"], axis=2),
        helper.make_node("MatMul", ["x", "we"], ["le"]),
        helper.make_node("Reshape", ["le", "emb_shape"], ["le3"]),
        helper.make_node("Tanh", ["le3"], ["token_states"]),
        helper.make_node("MatMul", ["x", "wm"], ["lm"]),
        helper.make_node("Reshape", ["lm", "map_shape"], ["lm4"]),
        helper.make_node("Sigmoid", ["lm4"], ["prob_map"]),
        helper.make_node("MatMul", ["x", "wp"], ["score"]),
        helper.make_node("MatMul", ["x", "wg"], ["lg"]),
        helper.make_node("Relu", ["lg"], ["activations"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f"], ["mask_sum"], keepdims=0),
        helper.make_node("Identity", ["mask_sum"], ["tokens"]),
    ]
    f = TensorProto.FLOAT
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("x", f, ["N", 16]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", 4]),
        ],
        [
            helper.make_tensor_value_info("probs", f, ["N", 5]),
            helper.make_tensor_value_info("ctc", f, ["N", 6, 7]),
            helper.make_tensor_value_info("token_states", f, ["N", 4, 64]),
            helper.make_tensor_value_info("prob_map", f, ["N", 2, 3, 3]),
            helper.make_tensor_value_info("score", f, ["N", 1]),
            helper.make_tensor_value_info("activations", f, ["N", 12]),
            helper.make_tensor_value_info("tokens", f, []),
        ],
        inits,
    )


def yolo_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 8, 8)).astype(np.float32)


def head_proto(outputs: dict[str, tuple], shift: str | None = None) -> onnx.ModelProto:
    """A model whose outputs are its inputs (``<name>_in``) as they are, beside an unused ``image``
    [1, 3, 64, 64] input (the judge reads the image size from the feed); ``shift``: the one output
    that gets 4 added (a candidate that moved one output)."""
    nodes = [
        helper.make_node("Add" if name == shift else "Identity",
                         [f"{name}_in", "four"] if name == shift else [f"{name}_in"], [name])
        for name in outputs
    ]  # fmt: skip
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])] + [
        helper.make_tensor_value_info(f"{name}_in", TensorProto.FLOAT, list(shape))
        for name, shape in outputs.items()
    ]
    ends = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)) for name, shape in outputs.items()
    ]
    four = numpy_helper.from_array(np.array(4.0, np.float32), "four")
    graph = helper.make_graph(nodes, "g", inputs, ends, [four])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def gfl_feed() -> dict[str, np.ndarray]:
    """Two GFL levels over a 64 x 64 image (stride 8: 64 points, stride 16: 16), 3 classes, 8 bins
    per side: one object per level, the rest background."""
    rng = np.random.default_rng(3)
    feed = {"image": np.zeros((1, 3, 64, 64), np.float32)}
    for level, (anchors, point, cls) in enumerate([(64, 27, 1), (16, 5, 2)]):
        scores = rng.uniform(0, 0.1, (1, anchors, 3)).astype(np.float32)
        scores[0, point, cls] = 0.9
        boxes = rng.standard_normal((1, anchors, 32)).astype(np.float32)
        boxes[0, point] = np.tile(8.0 * np.eye(8)[2], 4)  # 2 bins (x stride) on every side
        feed[f"s{level}_in"], feed[f"b{level}_in"] = scores, boxes
    return feed


def seg_feed(coefficients: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A YOLO-seg head over a 64 x 64 image: [1, 4 + 1 + 8, 64] rows (one object at (32, 32), 32 x 32)
    and [1, 8, 16, 16] prototypes."""
    rng = np.random.default_rng(4)
    det = np.zeros((1, 13, 64), np.float32)
    det[0, :4] = [[32.0], [32.0], [32.0], [32.0]]
    det[0, 4] = rng.uniform(0, 0.1, 64)
    det[0, 4, 10] = 0.9
    det[0, 5:] = rng.standard_normal((8, 64))
    if coefficients is not None:
        det[0, 5:, 10] = coefficients
    protos = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    return {"image": np.zeros((1, 3, 64, 64), np.float32), "det_in": det, "proto_in": protos}
