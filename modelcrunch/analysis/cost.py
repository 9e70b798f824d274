"""Per-layer multiply-accumulate counts (MACs) of the heavy operators.

Conventions (one MAC = one multiply + one add; FLOPs = 2 * MACs for every op here):

* Conv / QLinearConv / ConvInteger / FusedConv: ``N*Cout*prod(out spatial) * (Cin/group)*prod(kernel)``
  = ``numel(Y) * numel(W) / W.shape[0]`` (W is ``[Cout, Cin/group, k...]``).
* ConvTranspose: ``numel(X) * numel(W) / W.shape[0]`` (W is ``[Cin, Cout/group, k...]``).
* Gemm / QGemm: ``M*N*K``; MatMul / MatMulInteger / QLinearMatMul / MatMulNBits / FusedMatMul /
  MatMulIntegerToFloat / DynamicQuantizeMatMul: ``numel(Y) * K`` with K the reduced dim of A.
* com.microsoft Attention / QAttention: QKV projection ``B*S*hidden*W.shape[1]`` plus
  ``B*S*S*(q_hidden + v_hidden)`` for the two attention products (past/present KV ignored).
* com.microsoft MultiHeadAttention: ``B*S*L*(D_qk + D_v)`` (no weights; packed KV layouts: unknown).
* LSTM / GRU / RNN: ``seq*batch*(numel(W) + numel(R))`` (gates' input and recurrent products).
* Embedding Gather: 0 MACs (a lookup); it is listed for its parameters.

A count is ``None`` ("unknown") whenever a shape it needs is not fully known; it is never guessed.
Elementwise ops, normalisation and activations are not counted (they are small next to these).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from modelcrunch.analysis.shapes import Shape, ShapeTable, is_static, numel

MS = "com.microsoft"


def _attr_int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return int(attr.value) if attr is not None else default


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _mul(*factors: int | None) -> int | None:
    total = 1
    for f in factors:
        if f is None:
            return None
        total *= f
    return total


def _conv(node: ir.Node, t: ShapeTable, w: int) -> int | None:
    y_shape, w_shape = t.shape(node.outputs[0]), t.shape(_input(node, w))
    if not is_static(w_shape) or not w_shape:
        return None
    per_out = numel(w_shape) // int(w_shape[0])  # type: ignore[operator,arg-type]
    return _mul(numel(y_shape), per_out)


def _conv_transpose(node: ir.Node, t: ShapeTable) -> int | None:
    x_shape, w_shape = t.shape(_input(node, 0)), t.shape(_input(node, 1))
    if not is_static(w_shape) or not w_shape:
        return None
    return _mul(numel(x_shape), numel(w_shape) // int(w_shape[0]))  # type: ignore[operator,arg-type]


def _reduced_dim(shape: Shape | None, axis: int) -> int | None:
    if shape is None or not shape:
        return None
    dim = shape[axis] if len(shape) > 1 else shape[0]
    return dim if isinstance(dim, int) else None


def _matmul(node: ir.Node, t: ShapeTable, a: int, *, trans_attr: str | None = None) -> int | None:
    trans = trans_attr is not None and _attr_int(node, trans_attr, 0) == 1
    k = _reduced_dim(t.shape(_input(node, a)), -2 if trans else -1)
    return _mul(numel(t.shape(node.outputs[0])), k)


def _matmul_nbits(node: ir.Node, t: ShapeTable) -> int | None:
    return _mul(numel(t.shape(node.outputs[0])), _attr_int(node, "K", 0) or None)


def _gemm(node: ir.Node, t: ShapeTable, a: int) -> int | None:
    k = _reduced_dim(t.shape(_input(node, a)), 0 if _attr_int(node, "transA", 0) else -1)
    return _mul(numel(t.shape(node.outputs[0])), k)


def _attention(node: ir.Node, t: ShapeTable) -> int | None:
    x_shape, w_shape = t.shape(_input(node, 0)), t.shape(_input(node, 1))
    if not is_static(x_shape) or not is_static(w_shape) or len(x_shape) != 3 or len(w_shape) != 2:  # type: ignore[arg-type]
        return None
    b, s, hidden = (int(d) for d in x_shape)  # type: ignore[union-attr,arg-type]
    out = int(w_shape[1])  # type: ignore[index,arg-type]
    sizes = node.attributes.get("qkv_hidden_sizes")
    q_hidden, _, v_hidden = (int(v) for v in sizes.value) if sizes is not None else (out // 3,) * 3
    return b * s * hidden * out + b * s * s * (q_hidden + v_hidden)


def _multi_head_attention(node: ir.Node, t: ShapeTable) -> int | None:
    q, k, v = (t.shape(_input(node, i)) for i in range(3))
    if all(is_static(s) and len(s) == 3 for s in (q, k, v)):  # type: ignore[arg-type]
        b, s_q, d_qk = q  # type: ignore[misc]
        length, d_v = k[1], v[2]  # type: ignore[index]
        return int(b) * int(s_q) * int(length) * (int(d_qk) + int(d_v))  # type: ignore[arg-type]
    return None


def _recurrent(node: ir.Node, t: ShapeTable) -> int | None:
    x_shape = t.shape(_input(node, 0))
    if not is_static(x_shape) or len(x_shape) != 3:  # type: ignore[arg-type]
        return None
    seq_batch = int(x_shape[0]) * int(x_shape[1])  # type: ignore[index,arg-type]
    return _mul(seq_batch, _sum(numel(t.shape(_input(node, 1))), numel(t.shape(_input(node, 2)))))


def _sum(*terms: int | None) -> int | None:
    return None if any(x is None for x in terms) else sum(terms)  # type: ignore[arg-type]


CostFn = Callable[[ir.Node, ShapeTable], "int | None"]


class HeavyOp:
    """How to cost one heavy operator and which of its inputs are its weight and bias."""

    def __init__(self, macs: CostFn, weight: int | None, bias: int | None = None) -> None:
        self.macs, self.weight, self.bias = macs, weight, bias


#: (domain, op_type) → HeavyOp. Domain "" is the default ONNX domain.
HEAVY_OPS: dict[tuple[str, str], HeavyOp] = {
    ("", "Conv"): HeavyOp(lambda n, t: _conv(n, t, 1), 1, 2),
    ("", "ConvTranspose"): HeavyOp(_conv_transpose, 1, 2),
    ("", "ConvInteger"): HeavyOp(lambda n, t: _conv(n, t, 1), 1),
    ("", "QLinearConv"): HeavyOp(lambda n, t: _conv(n, t, 3), 3, 8),
    (MS, "FusedConv"): HeavyOp(lambda n, t: _conv(n, t, 1), 1, 2),
    ("", "Gemm"): HeavyOp(lambda n, t: _gemm(n, t, 0), 1, 2),
    (MS, "QGemm"): HeavyOp(lambda n, t: _gemm(n, t, 0), 3, 6),
    ("", "MatMul"): HeavyOp(lambda n, t: _matmul(n, t, 0), 1),
    ("", "MatMulInteger"): HeavyOp(lambda n, t: _matmul(n, t, 0), 1),
    ("", "QLinearMatMul"): HeavyOp(lambda n, t: _matmul(n, t, 0), 3),
    (MS, "FusedMatMul"): HeavyOp(lambda n, t: _matmul(n, t, 0, trans_attr="transA"), 1),
    (MS, "MatMulIntegerToFloat"): HeavyOp(lambda n, t: _matmul(n, t, 0), 1, 6),
    (MS, "DynamicQuantizeMatMul"): HeavyOp(lambda n, t: _matmul(n, t, 0), 1, 4),
    (MS, "MatMulNBits"): HeavyOp(_matmul_nbits, 1, 5),
    (MS, "Attention"): HeavyOp(_attention, 1, 2),
    (MS, "QAttention"): HeavyOp(_attention, 1, 2),
    (MS, "MultiHeadAttention"): HeavyOp(_multi_head_attention, None),
    ("", "LSTM"): HeavyOp(_recurrent, 1, 3),
    ("", "GRU"): HeavyOp(_recurrent, 1, 3),
    ("", "RNN"): HeavyOp(_recurrent, 1, 3),
    ("", "Gather"): HeavyOp(lambda n, t: 0, 0),
}


def heavy_op(node: ir.Node) -> HeavyOp | None:
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    return HEAVY_OPS.get((domain, node.op_type))
