"""What static int8 keeps float by structure, before any measurement: two rules.

1. ``hand_built_math``: normalisations and activations built from primitive ops.
2. ``float_islands``: quantizable ops with no int8 layer in their region (see its docstring).

Rule 1 in detail.

Exporters often spell out what a kernel would do in one op: a LayerNorm as ``ReduceSum``, ``Sub``,
``Mul`` (the square), ``Sqrt``, ``Reciprocal``, ``Mul``, ``Add``; a GELU as
``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))``. ORT's static quantizer wraps every ``Mul`` and
``Add`` among them in Quantize/Dequantize pairs. That is both wrong and slow:

- wrong, because one uint8 scale per tensor cannot hold ``x²`` or ``x − mean`` (magika's file-type
  classifier fell to 7 % top-1 with ORT's defaults; quantizing one such ``Mul`` alone gives NaN);
- slow, because the float ops between them (``Sqrt``, ``Tanh``, ``ReduceSum``) have no int8 kernel,
  so each pair is a round trip that computes nothing in int8.

The sensitivity search would find them one by one, but it probes on few samples and gives up
before half of the layers stay float; a rule by structure is exact and free.

Rule: take the connected regions of element-wise arithmetic and reshaping ops (``REGION_OPS``),
bounded by everything else (Conv, MatMul, Gemm, Relu, Sigmoid, Softmax, pooling...). A region
holding a primitive-math op (``MARKER_OPS``: Sqrt, Reciprocal, Pow, Div, Sub, Tanh, Erf, Exp, Log,
ReduceSum/Mean, Neg) is hand-built math; its ops in the static op list stay float. Regions of only
``Mul``/``Add`` (residual adds, squeeze-excite products, ``x·sigmoid(x)``, scale-and-shift) keep
their int8 kernels. Bias ``Add``s after a MatMul join the region they feed, so a LayerNorm's input
``Add`` stays float too (its range is the LayerNorm's input range).
"""

from __future__ import annotations

from collections.abc import Collection

import onnx

#: Ops that join a region: element-wise arithmetic and shape-only moves of its values.
REGION_OPS = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs",
        "Tanh", "Erf", "Exp", "Log",
        "ReduceMean", "ReduceSum", "ReduceSumSquare",
        "Reshape", "Expand", "Squeeze", "Unsqueeze", "Flatten", "Cast",
    }
)  # fmt: skip
#: Layers with int8 kernels: a region of quantizable ops holding none of them stays float.
INT8_LAYERS = frozenset({"Conv", "MatMul", "Gemm"})
#: Ops that mark a region as hand-built math (a normalisation, GELU, softmax, decode arithmetic).
MARKER_OPS = frozenset(
    {
        "Sub", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Tanh", "Erf", "Exp", "Log",
        "ReduceMean", "ReduceSum", "ReduceSumSquare",
    }
)  # fmt: skip


def _regions(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> list[list[onnx.NodeProto]]:
    """``nodes`` grouped into connected regions: two nodes connect where they share a value (not an
    initializer), as producer and consumer or as two readers."""
    constants = {t.name for t in model.graph.initializer}
    parent = list(range(len(nodes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_value: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for value in [*node.input, *node.output]:
            if not value or value in constants:
                continue
            j = by_value.setdefault(value, i)
            parent[root(i)] = root(j)
    regions: dict[int, list[onnx.NodeProto]] = {}
    for i, node in enumerate(nodes):
        regions.setdefault(root(i), []).append(node)
    return list(regions.values())


def hand_built_math(model: onnx.ModelProto, op_types: Collection[str]) -> dict[str, str]:
    """Main-graph nodes of ``op_types`` inside a hand-built math region → the reason they stay float."""
    reasons: dict[str, str] = {}
    for members in _regions(model, [n for n in model.graph.node if n.op_type in REGION_OPS and n.name]):
        markers = sorted({n.op_type for n in members} & MARKER_OPS)
        if not markers:
            continue
        reason = (
            f"part of a normalisation or activation built from primitive ops ({', '.join(markers)}): "
            "one int8 scale cannot hold its ranges, and the ops between have no int8 kernel; kept float"
        )
        reasons.update({n.name: reason for n in members if n.op_type in op_types})
    return reasons


def float_islands(
    model: onnx.ModelProto, op_types: Collection[str], floats: Collection[str] = ()
) -> dict[str, str]:
    """Main-graph nodes of ``op_types`` whose region of ``op_types`` nodes (``floats`` left out) holds
    no layer with an int8 kernel (``INT8_LAYERS``) → the reason they stay float.

    Such an island sits between float ops: PP-OCR det's head is ``ConvTranspose → Add(bias) → BN →
    Relu → ConvTranspose → Add(bias) → Sigmoid``, and ORT quantizes each Add, Relu and the Sigmoid. With
    nothing int8 beside them, every Quantize/Dequantize pair is pure cost, and the probability map the
    detector thresholds comes out rounded to 1/255.
    """
    floats = set(floats)
    nodes = [n for n in model.graph.node if n.op_type in op_types and n.name and n.name not in floats]
    reason = (
        "no quantized layer beside it (its neighbours compute in float): int8 would only add "
        "Quantize/Dequantize pairs around it; kept float"
    )
    return {
        n.name: reason
        for members in _regions(model, nodes)
        if not any(m.op_type in INT8_LAYERS for m in members)
        for n in members
    }
