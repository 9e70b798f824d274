"""Tiny models for the prune tests, each with some channels that carry exactly zero signal.

Every builder zeroes a set of channels *everywhere they are coupled* (producer filters and bias,
BatchNorm beta/mean, consumer input slices), so the smallest-norm channels are exactly those, and
pruning them must leave the outputs unchanged if the coupling logic slices the right indices.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self.n = 0

    def _name(self, op: str) -> str:
        self.n += 1
        return f"{op.lower()}{self.n}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits[name] = array.astype(np.float32)
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str] | str:
        name = self._name(op)
        outs = [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        *,
        k: int = 3,
        group: int = 1,
        bias: bool = True,
        zero_out=(),
        zero_in=(),
    ) -> str:
        name = f"w{self.n + 1}"
        w = self.rng.standard_normal((cout, cin // group, k, k)) * 0.3
        w[list(zero_out)] = 0
        w[:, list(zero_in)] = 0
        inputs = [x, self.init(name, w)]
        if bias:
            b = self.rng.standard_normal(cout) * 0.1
            b[list(zero_out)] = 0
            inputs.append(self.init(name + "_b", b))
        return self.node("Conv", inputs, pads=[k // 2] * 4, group=group)

    def bn(self, x: str, c: int, zero=()) -> str:
        p = f"bn{self.n + 1}"
        gamma = self.rng.uniform(0.5, 1.5, c)
        beta = self.rng.standard_normal(c) * 0.1
        mean = self.rng.standard_normal(c) * 0.1
        var = self.rng.uniform(0.5, 1.5, c)
        gamma[list(zero)] = 0
        beta[list(zero)] = 0
        mean[list(zero)] = 0
        params = [self.init(p + s, a) for s, a in (("_g", gamma), ("_b", beta), ("_m", mean), ("_v", var))]
        return self.node("BatchNormalization", [x, *params])

    def model(self, inputs: dict[str, list], outputs: dict[str, list], opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "prune_test",
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
            [numpy_helper.from_array(v, k) for k, v in self.inits.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 9
        onnx.checker.check_model(model)
        return model

    def output(self, value: str, name: str) -> None:
        self.nodes.append(helper.make_node("Identity", [value], [name], name=f"out_{name}"))


Z = [1, 4, 6]  # zero channels of 8 → ratio 3/8


def conv_bn_relu_conv() -> onnx.ModelProto:
    b = Builder()
    h = b.node("Relu", [b.bn(b.conv("x", 3, 8, bias=False, zero_out=Z), 8, zero=Z)])
    b.output(b.conv(h, 8, 4, zero_in=Z), "y")
    return b.model({"x": ["N", 3, 8, 8]}, {"y": ["N", 4, 8, 8]})


def residual_add() -> onnx.ModelProto:
    b = Builder(1)
    x1 = b.node("Relu", [b.bn(b.conv("x", 3, 8, zero_out=Z), 8, zero=Z)])
    r = b.node("Relu", [b.conv(x1, 8, 8, zero_in=Z, zero_out=Z)])
    r = b.bn(b.conv(r, 8, 8, zero_in=Z, zero_out=Z), 8, zero=Z)
    s = b.node("Relu", [b.node("Add", [x1, r])])
    b.output(b.conv(s, 8, 4, zero_in=Z), "y")
    return b.model({"x": ["N", 3, 8, 8]}, {"y": ["N", 4, 8, 8]})


def concat_split() -> onnx.ModelProto:
    """conv(16) → Split[8, 8] → (a → conv_a(8)), b → Concat(b, conv_a) → conv(16 → 4)."""
    b = Builder(2)
    zero16 = [1, 4, 6, 9, 12, 14]
    h = b.node("Relu", [b.conv("x", 3, 16, zero_out=zero16)])
    b.inits["split"] = np.array([8, 8], dtype=np.int64)
    p, q = b.node("Split", [h, "split"], n_out=2, axis=1)
    a = b.node("Relu", [b.conv(p, 8, 8, zero_in=Z, zero_out=Z)])
    cat = b.node("Concat", [q, a], axis=1)
    b.output(b.conv(cat, 16, 4, zero_in=[1, 4, 6, 9, 12, 14]), "y")
    return b.model({"x": ["N", 3, 8, 8]}, {"y": ["N", 4, 8, 8]})


def depthwise() -> onnx.ModelProto:
    b = Builder(3)
    h = b.node("Relu", [b.conv("x", 3, 8, zero_out=Z)])
    d = b.node("Clip", [b.conv(h, 8, 8, group=8, zero_out=Z)])
    b.output(b.conv(d, 8, 4, k=1, zero_in=Z), "y")
    return b.model({"x": ["N", 3, 8, 8]}, {"y": ["N", 4, 8, 8]})


def squeeze_excitation() -> onnx.ModelProto:
    b = Builder(4)
    x = b.node("Relu", [b.conv("x", 3, 8, zero_out=Z)])
    s = b.node("GlobalAveragePool", [x])
    s = b.node("Relu", [b.conv(s, 8, 8, k=1, zero_in=Z, zero_out=Z)])
    s = b.node("HardSigmoid", [b.conv(s, 8, 8, k=1, zero_in=Z, zero_out=Z)])
    y = b.node("Mul", [x, s])
    b.output(b.conv(y, 8, 4, zero_in=Z), "y")
    return b.model({"x": ["N", 3, 8, 8]}, {"y": ["N", 4, 8, 8]})


def flatten_gemm() -> onnx.ModelProto:
    b = Builder(5)
    h = b.node(
        "MaxPool", [b.node("Relu", [b.conv("x", 3, 8, zero_out=Z)])], kernel_shape=[2, 2], strides=[2, 2]
    )
    f = b.node("Flatten", [h], axis=1)
    w = b.rng.standard_normal((10, 8 * 16))
    for c in Z:
        w[:, c * 16 : (c + 1) * 16] = 0
    b.output(b.node("Gemm", [f, b.init("fc_w", w), b.init("fc_b", b.rng.standard_normal(10))], transB=1), "y")
    return b.model({"x": ["N", 3, 8, 8]}, {"y": ["N", 10]})


def reaches_output() -> onnx.ModelProto:
    """The first conv's channels are also a graph output: its group must be skipped."""
    b = Builder(6)
    h = b.node("Relu", [b.conv("x", 3, 8, zero_out=Z)])
    b.output(h, "features")
    b.output(b.conv(h, 8, 4, zero_in=Z), "y")
    return b.model({"x": ["N", 3, 8, 8]}, {"features": ["N", 8, 8, 8], "y": ["N", 4, 8, 8]})


def mlp_chain() -> onnx.ModelProto:
    b = Builder(7)
    w1 = b.rng.standard_normal((16, 12))  # transB: [out, in]
    w1[Z + [9, 12, 15]] = 0
    b1 = b.rng.standard_normal(16)
    b1[Z + [9, 12, 15]] = 0
    h = b.node("Relu", [b.node("Gemm", ["x", b.init("w1", w1), b.init("b1", b1)], transB=1)])
    w2 = b.rng.standard_normal((16, 8))  # [in, out]
    w2[Z + [9, 12, 15]] = 0
    w2[:, Z] = 0
    b2 = b.rng.standard_normal(8)
    b2[Z] = 0
    h = b.node("Relu", [b.node("Gemm", [h, b.init("w2", w2), b.init("b2", b2)])])
    w3 = b.rng.standard_normal((8, 5))
    w3[Z] = 0
    b.output(b.node("Gemm", [h, b.init("w3", w3), b.init("b3", b.rng.standard_normal(5))]), "y")
    return b.model({"x": ["N", 12]}, {"y": ["N", 5]})


def transformer_ffn(d: int = 8, f: int = 16) -> onnx.ModelProto:
    """x → MatMul(d→f) + b → erf-GELU → MatMul(f→d) + b → + x (residual to the output)."""
    b = Builder(8)
    zf = [1, 4, 6, 9, 12, 15]
    w1 = b.rng.standard_normal((d, f))
    w1[:, zf] = 0
    b1 = b.rng.standard_normal(f)
    b1[zf] = 0
    w2 = b.rng.standard_normal((f, d))
    w2[zf] = 0
    h = b.node("Add", [b.node("MatMul", ["x", b.init("w1", w1)]), b.init("b1", b1)])
    e = b.node("Erf", [b.node("Div", [h, b.init("sqrt2", np.array(np.sqrt(2.0)))])])
    g = b.node(
        "Mul",
        [b.node("Mul", [h, b.node("Add", [e, b.init("one", np.array(1.0))])]), b.init("half", np.array(0.5))],
    )
    y = b.node("Add", [b.node("MatMul", [g, b.init("w2", w2)]), b.init("b2", b.rng.standard_normal(d))])
    b.output(b.node("Add", [y, "x"]), "y")
    return b.model({"x": ["N", 5, d]}, {"y": ["N", 5, d]})


def attention(d: int = 8, heads: int = 2) -> onnx.ModelProto:
    """Multi-head self-attention (Reshape/Transpose split into heads) whose last head is all zero."""
    b = Builder(9)
    dh = d // heads
    dead = slice(d - dh, d)

    def proj(name: str) -> str:
        w = b.rng.standard_normal((d, d))
        w[:, dead] = 0
        h = b.node("MatMul", ["x", b.init(name, w)])
        b.inits[name + "_shape"] = np.array([-1, 5, heads, dh], dtype=np.int64)
        return b.node("Reshape", [h, name + "_shape"])

    q = b.node("Transpose", [proj("wq")], perm=[0, 2, 1, 3])
    k = b.node("Transpose", [proj("wk")], perm=[0, 2, 3, 1])
    v = b.node("Transpose", [proj("wv")], perm=[0, 2, 1, 3])
    scores = b.node("Mul", [b.node("MatMul", [q, k]), b.init("scale", np.array(dh**-0.5))])
    ctx = b.node("MatMul", [b.node("Softmax", [scores], axis=-1), v])
    b.inits["merge_shape"] = np.array([-1, 5, d], dtype=np.int64)
    merged = b.node("Reshape", [b.node("Transpose", [ctx], perm=[0, 2, 1, 3]), "merge_shape"])
    wo = b.rng.standard_normal((d, d))
    wo[dead] = 0
    b.output(b.node("MatMul", [merged, b.init("wo", wo)]), "y")
    return b.model({"x": ["N", 5, d]}, {"y": ["N", 5, d]})


def residual_mlp(blocks: int = 3, d: int = 32, h: int = 64) -> onnx.ModelProto:
    """A transformer-like MLP stack: ``r = r + (Relu(r W_a + b_a) W_b + b_b)`` per block (no zero
    channels: for repair, whose error through the residual stream a block target corrects)."""
    b = Builder(5)
    w0 = b.init("w0", b.rng.standard_normal((16, d)) * 0.4)
    r = b.node("Add", [b.node("MatMul", ["x", w0]), b.init("b0", b.rng.standard_normal(d) * 0.1)])
    for k in range(blocks):
        wa = b.init(f"w{k}a", b.rng.standard_normal((d, h)) * 0.3)
        ba = b.init(f"b{k}a", b.rng.standard_normal(h) * 0.1)
        a = b.node("Relu", [b.node("Add", [b.node("MatMul", [r, wa]), ba])])
        wb = b.init(f"w{k}b", b.rng.standard_normal((h, d)) * 0.15)
        o = b.node("Add", [b.node("MatMul", [a, wb]), b.init(f"b{k}b", b.rng.standard_normal(d) * 0.1)])
        r = b.node("Add", [o, r])
    b.output(b.node("MatMul", [r, b.init("wout", b.rng.standard_normal((d, 8)) * 0.3)]), "y")
    return b.model({"x": ["N", 16]}, {"y": ["N", 8]})
