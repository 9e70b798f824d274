"""Storage-only int8: weights stored as int8 and dequantized to fp32 once, when the session loads.

Rewrites every float32 initializer ``W`` with at least ``MIN_ELEMENTS`` elements (``MIN_WEIGHT_ELEMENTS``
for a layer's weight: the depthwise and squeeze-excite kernels of mobile CNNs are small) into
``W' = Mul(Cast(W_q, to=FLOAT), s)`` with symmetric per-channel scales
``s_c = max|W[c]| / 127`` and ``W_q = clip(round(W / s), -127, 127)`` (int8). The channel axis
follows the consumer: output channels of Conv (0) / ConvTranspose (1), output columns of MatMul
(last) and Gemm (0 with transB, else 1), columns of an embedding Gather; per-tensor when the
consumers disagree. Works in every graph, If/Loop bodies included. Embedding tables (only ever
gathered by rows) are gathered as int8 and only the gathered rows dequantized, at run time, so
the fp32 table never exists in memory.
``Cast`` + ``Mul`` is ``DequantizeLinear`` written with ops ONNX Runtime constant-folds: a real
``DequantizeLinear`` is deliberately not folded (it is kept for QDQ fusion), so it would run at
every inference and block weight pre-packing — measured 1.8x slower on the sample CNN.
The file is ~4x smaller; activations and kernels stay fp32, so speed is about unchanged and the
error is only the weight rounding (relative error <= 1/254 per channel).

The ``quantize`` pipeline stores the pre-processed model (``preprocess.py``: ONNX Runtime's
basic, hardware-independent optimisations), so BatchNormalization is already folded into its
Conv and there is no float BN parameter left over: PP-OCR's direction classifier goes from 0.45x
to 0.33x of its size that way, the rest of that 0.6 MB file being biases, scales and graph.

Limits: weights that are graph inputs or outputs are left alone; small tensors (biases, norms)
stay float.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from modelcrunch.passes._ir import register_array

logger = logging.getLogger(__name__)

MIN_ELEMENTS = 1024
#: ... and for a tensor read only as a layer's weight (per-channel scales cost 4 bytes per channel).
MIN_WEIGHT_ELEMENTS = 256


def _axis_for(value: ir.Value, rank: int) -> int | None:
    """The per-channel axis all consumers agree on, or None for per-tensor."""
    axes: set[int | None] = set()
    for use in value.uses():
        node, index = use.node, use.idx
        if node.op_type == "Conv" and index == 1:
            axes.add(0)
        elif node.op_type == "ConvTranspose" and index == 1:
            axes.add(1)
        elif node.op_type == "MatMul" and index == 1:
            axes.add(rank - 1)
        elif node.op_type == "Gemm" and index == 1:
            trans_b = node.attributes.get("transB")
            axes.add(0 if trans_b is not None and trans_b.as_int() else 1)
        elif node.op_type == "Gather" and index == 0:
            axis = node.attributes.get("axis")
            axes.add(1 if axis is None or axis.as_int() == 0 else None)  # rows are gathered: scale per column
        else:
            axes.add(None)
    return axes.pop() if len(axes) == 1 else None


def _weight_slot(node: ir.Node, index: int) -> bool:
    """Whether input ``index`` of ``node`` is a layer's weight (not a bias, a scale or an activation)."""
    if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
        return index == 1
    return node.op_type == "Gather" and index == 0


def _gathered_rows(graph: ir.Graph, value: ir.Value, axis: int | None) -> bool:
    """An embedding table: only gathered by rows (of the main graph, into non-output values)."""
    return axis == 1 and all(
        use.node.op_type == "Gather"
        and use.idx == 0
        and use.node.graph is graph
        and not use.node.outputs[0].is_graph_output()
        for use in value.uses()
    )


def _dequantize_rows(graph: ir.Graph, gather: ir.Node, q_value: ir.Value, s_value: ir.Value) -> None:
    """``Gather(table)`` → ``Mul(Cast(Gather(table_int8)), scale)``: only the gathered rows are
    dequantized, at run time, so the fp32 table never exists (a folded Cast+Mul would hold it)."""
    rows = gather.outputs[0]
    uses = list(rows.uses())
    gather.replace_input_with(0, q_value)
    cast = ir.node("Cast", [rows], attributes={"to": ir.DataType.FLOAT}, name=f"{gather.name}_cast")
    mul = ir.node("Mul", [cast.outputs[0], s_value], name=f"{gather.name}_dequantize")
    mul.outputs[0].name = f"{rows.name}_dequantized"
    mul.outputs[0].shape = rows.shape
    mul.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    rows.type = ir.TensorType(ir.DataType.INT8)
    for use in uses:
        use.node.replace_input_with(use.idx, mul.outputs[0])
    graph.insert_after(gather, [cast, mul])


def quantize_array(weights: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scales): symmetric, per ``axis`` or per tensor."""
    if axis is None:
        scale = np.asarray(np.abs(weights).max() / 127.0, dtype=np.float32)
        bshape: tuple[int, ...] = ()
    else:
        reduce = tuple(i for i in range(weights.ndim) if i != axis)
        scale = (np.abs(weights).max(axis=reduce) / 127.0).astype(np.float32)
        bshape = tuple(-1 if i == axis else 1 for i in range(weights.ndim))
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    scaled = weights / (scale.reshape(bshape) if bshape else scale)
    return np.clip(np.rint(scaled), -127, 127).astype(np.int8), scale


def storage_quantize(
    model: ir.Model,
    *,
    exclude: frozenset[str] = frozenset(),
    include: frozenset[str] | None = None,
    weight_slots_only: bool = False,
    rounded: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
    """Rewrite ``model`` in place; returns the names of the weights stored as int8.

    ``exclude`` names nodes whose weights stay float (a weight shared with one of them stays too);
    ``include``, when given, limits the rewrite to weights read only by those nodes;
    ``weight_slots_only`` limits it to tensors read only as the weight of a Conv/ConvTranspose/
    MatMul/Gemm or as an embedding table (Gather), never biases or other operands: used after
    another quantizer has left float weights behind, beside its own float biases and scales;
    ``rounded`` gives int8 values for main-graph weights computed elsewhere (``gptq.py``, same
    scales) to store instead of rounding to nearest.
    """
    quantized: list[str] = []
    for graph in model.graphs():
        outputs = {id(v) for v in graph.outputs}
        inputs = {id(v) for v in graph.inputs}
        for name, value in list(graph.initializers.items()):
            tensor = value.const_value
            layer_weight = all(_weight_slot(use.node, use.idx) for use in value.uses())
            if (
                tensor is None
                or tensor.dtype != ir.DataType.FLOAT
                or tensor.size < (MIN_WEIGHT_ELEMENTS if layer_weight else MIN_ELEMENTS)
                or id(value) in outputs
                or id(value) in inputs
                or not value.uses()
                or any(use.node.name in exclude for use in value.uses())
                or (include is not None and any(use.node.name not in include for use in value.uses()))
                or (weight_slots_only and not layer_weight)
            ):
                continue
            weights = tensor.numpy()
            axis = _axis_for(value, weights.ndim)
            q, scale = quantize_array(weights, axis)
            if rounded and graph is model.graph and name in rounded and rounded[name].shape == q.shape:
                q = rounded[name]
            scale = (
                scale.reshape([-1 if i == axis else 1 for i in range(q.ndim)]) if axis is not None else scale
            )
            q_value = register_array(graph, f"{name}_int8", q)
            s_value = register_array(graph, f"{name}_scale", scale)
            if _gathered_rows(graph, value, axis):
                for use in list(value.uses()):
                    _dequantize_rows(graph, use.node, q_value, s_value)
                graph.initializers.pop(name)
                quantized.append(name)
                continue
            cast = ir.node("Cast", [q_value], attributes={"to": ir.DataType.FLOAT}, name=f"{name}_cast")
            cast.outputs[0].name = f"{name}_int8_float"
            node = ir.node("Mul", [cast.outputs[0], s_value], name=f"{name}_dequantize")
            node.outputs[0].name = f"{name}_dequantized"
            node.outputs[0].shape = ir.Shape(weights.shape)
            node.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
            value.replace_all_uses_with(node.outputs[0])
            graph.initializers.pop(name)
            if len(graph) > 0:
                graph.insert_before(next(iter(graph)), [cast, node])
            else:
                graph.extend([cast, node])
            quantized.append(name)
    logger.info("storage int8: %d weights", len(quantized))
    return quantized
