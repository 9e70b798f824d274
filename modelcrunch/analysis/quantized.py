"""Already-optimized layers: what a model brings in quantized or half-precision form.

A layer is *already quantized* when it is an integer or low-bit operator (``QLinearConv``,
``MatMulInteger``, ``MatMulNBits``, ``DynamicQuantizeLSTM``...; "QOperator", "dynamic",
"4-bit") or when its weight is computed at run time from an integer constant (QDQ:
``DequantizeLinear(int8)``; int8 storage: ``Cast(int8) * scale``). It is *half precision* when its
weight is (or is a ``Cast`` of) a float16 / bfloat16 constant.

``prune`` and ``factorize`` leave such layers alone with the reason from :func:`weight_origin`;
``quantize`` reports them and does not stack a second quantization on top.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import onnx_ir as ir

#: Integer / low-bit operators and the form they stand for.
QUANTIZED_OPS = {
    "QLinearConv": "QOperator",
    "QLinearMatMul": "QOperator",
    "QGemm": "QOperator",
    "QAttention": "QOperator",
    "QLinearAdd": "QOperator",
    "QLinearMul": "QOperator",
    "ConvInteger": "dynamic",
    "MatMulInteger": "dynamic",
    "DynamicQuantizeMatMul": "dynamic",
    "DynamicQuantizeLSTM": "dynamic",
    "MatMulIntegerToFloat": "dynamic",
    "MatMulNBits": "4-bit",
    "MatMulBnb4": "4-bit",
    "GatherBlockQuantized": "4-bit",
}
#: Layers whose second input is a weight (the ones prune / factorize / quantize rewrite).
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Ops a weight may pass through between its constant and the layer.
_PASS_THROUGH = ("Reshape", "Transpose", "Identity", "Unsqueeze", "Squeeze", "Flatten", "Mul", "Cast")
_LOW_FLOAT = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


def _constant(value: ir.Value) -> ir.TensorProtocol | None:
    if value.const_value is not None:
        return value.const_value
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant":
        attr = producer.attributes.get("value")
        return attr.value if attr is not None else None
    return None


def _a(dtype: ir.DataType) -> str:
    name = dtype.name.lower()
    return f"an {name}" if name.startswith("int") else f"a {name}"


def weight_origin(weight: ir.Value | None, depth: int = 6) -> str | None:
    """Why ``weight`` is not a plain float32 weight, or None when it is one (or not a constant).

    ``"weight is DequantizeLinear of an int8 constant (QDQ)"``, ``"weight is a float16 constant
    (half precision)"``...: traced back through Reshape/Transpose/Cast/Mul and the like.
    """
    if weight is None:
        return None
    tensor = _constant(weight)
    if tensor is not None:
        if tensor.dtype in _LOW_FLOAT:
            return f"weight is a {tensor.dtype.name.lower()} constant (half precision)"
        return None
    producer = weight.producer()
    if producer is None or depth == 0:
        return None
    if producer.op_type == "DequantizeLinear" and producer.inputs and producer.inputs[0] is not None:
        source = _constant(producer.inputs[0])
        if source is not None:
            return f"weight is DequantizeLinear of {_a(source.dtype)} constant (QDQ)"
        return weight_origin(producer.inputs[0], depth - 1)
    if producer.op_type == "Cast" and producer.inputs and producer.inputs[0] is not None:
        source = _constant(producer.inputs[0])
        if source is not None and source.dtype.is_integer():
            return f"weight is {_a(source.dtype)} constant cast to float (int8 storage)"
        if source is not None and source.dtype in _LOW_FLOAT:
            return f"weight is a {source.dtype.name.lower()} constant cast to float (half precision)"
    if producer.op_type in _PASS_THROUGH:
        for value in producer.inputs[:2] if producer.op_type == "Mul" else producer.inputs[:1]:
            found = weight_origin(value, depth - 1)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class OptimizedLayer:
    name: str
    op_type: str
    form: str  # "QDQ", "QOperator", "dynamic", "4-bit", "storage", "half"
    detail: str


def _form(detail: str) -> str:
    for key, form in (("QDQ", "QDQ"), ("int8 storage", "storage"), ("half", "half")):
        if key in detail:
            return form
    return "storage"


def optimized_layers(model: ir.Model) -> list[OptimizedLayer]:
    """Every already-quantized or half-precision layer, in any graph of ``model``."""
    found = []
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type in QUANTIZED_OPS:
            form = QUANTIZED_OPS[node.op_type]
            detail = f"{node.op_type} layer ({form})"
            found.append(OptimizedLayer(node.name or "?", node.op_type, form, detail))
        elif node.op_type in WEIGHTED and len(node.inputs) > 1:
            detail = weight_origin(node.inputs[1])
            if detail is not None:
                found.append(OptimizedLayer(node.name or "?", node.op_type, _form(detail), detail))
    return found


def float_weighted_layers(model: ir.Model) -> list[str]:
    """Conv/Gemm/MatMul layers whose weight is still a plain float32 constant."""
    names = []
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type in WEIGHTED and len(node.inputs) > 1 and node.inputs[1] is not None:
            tensor = _constant(node.inputs[1])
            if tensor is not None and tensor.dtype == ir.DataType.FLOAT:
                names.append(node.name or "?")
    return names


def summary(layers: list[OptimizedLayer]) -> str:
    """``"12 layers already optimized (10 QDQ, 2 QOperator)"``, or ``""`` for none."""
    if not layers:
        return ""
    counts = Counter(layer.form for layer in layers)
    forms = ", ".join(f"{n} {form}" for form, n in counts.most_common())
    return f"{len(layers)} layer(s) already optimized ({forms})"


def is_integer_quantized(layers: list[OptimizedLayer]) -> bool:
    """Any layer in an integer / low-bit form (half precision alone does not count)."""
    return any(layer.form != "half" for layer in layers)
