"""float16 conversion that keeps the I/O types and keeps overflow-prone ops in fp32.

Rewrites every float32 node of the main graph to float16 except: ops that overflow or lose too
much in half precision (exp/softmax/pow/reductions/sqrt, index-producing ops — ``KEEP_FP32_OPS``),
nodes whose output magnitude on the calibration data exceeds ``OVERFLOW_MARGIN`` (65504 / 16),
nodes with subgraphs, and user exclusions. float32 initializers read only by fp16 nodes are stored
as fp16; ``Cast`` nodes are inserted at every fp32/fp16 boundary, so graph inputs and outputs keep
their float32 types. ``Cast(to=FLOAT)`` inside the fp16 region becomes ``Cast(to=FLOAT16)``.

Limits: If/Loop/Scan bodies stay fp32; ONNX Runtime's CPU provider has few fp16 kernels (it casts
back to fp32 around the others), so fp16 shrinks files 2x but is a GPU speed feature.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

logger = logging.getLogger(__name__)

FP16_MAX = 65504.0
OVERFLOW_MARGIN = FP16_MAX / 16
KEEP_FP32_OPS = frozenset({
    "Pow", "Exp", "Softmax", "LogSoftmax", "Sqrt", "Reciprocal", "ReduceSum", "ReduceSumSquare",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "CumSum", "Range",
    "Resize", "Upsample", "TopK", "NonMaxSuppression", "RoiAlign", "RandomNormal", "RandomUniform",
    "RandomNormalLike", "RandomUniformLike", "EyeLike", "Multinomial", "Einsum",
})  # fmt: skip


def _has_subgraph(node: ir.Node) -> bool:
    return any(
        attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for attr in node.attributes.values()
    )


def keep_reasons(model: ir.Model, absmax: Mapping[str, float], exclude: frozenset[str]) -> dict[str, str]:
    """Node name → why it stays fp32 (only nodes that touch float tensors)."""
    reasons: dict[str, str] = {}
    for node in model.graph:
        name = node.name or ""
        if name in exclude:
            reasons[name] = "excluded by the user"
        elif node.op_type in KEEP_FP32_OPS:
            reasons[name] = f"{node.op_type} overflows or loses precision in fp16"
        elif node.domain not in ("", "ai.onnx"):
            reasons[name] = f"custom-domain op {node.domain}::{node.op_type}"
        elif _has_subgraph(node):
            reasons[name] = "has If/Loop/Scan subgraphs (left fp32)"
        elif any(absmax.get(o.name or "", 0.0) > OVERFLOW_MARGIN for o in node.outputs):
            peak = max(absmax.get(o.name or "", 0.0) for o in node.outputs)
            reasons[name] = f"output reaches {peak:.3g} on the calibration data (fp16 max 65504)"
        elif any(o.dtype is None for o in node.outputs):
            reasons[name] = "output type unknown after shape inference"
    return reasons


def _cast(value: ir.Value, to: ir.DataType, suffix: str) -> ir.Node:
    node = ir.node("Cast", [value], attributes={"to": to}, name=f"{value.name}_cast_{suffix}")
    node.outputs[0].name = f"{value.name}_{suffix}"
    node.outputs[0].type = ir.TensorType(to)
    node.outputs[0].shape = value.shape
    return node


def convert_fp16(model: ir.Model, *, absmax: Mapping[str, float], exclude: frozenset[str]) -> dict[str, str]:
    """Convert ``model`` in place; returns {node kept in fp32: reason}."""
    ShapeInferencePass()(model)
    for index, node in enumerate(model.graph):
        node.name = node.name or f"{node.op_type}_{index}_mc"
    graph = model.graph
    keep = keep_reasons(model, absmax, exclude)
    half = ir.DataType.FLOAT16
    converted: set[int] = set()  # ids of values now fp16
    casts: dict[tuple[int, ir.DataType], ir.Value] = {}

    def cast_input(node: ir.Node, index: int, value: ir.Value, to: ir.DataType, suffix: str) -> None:
        key = (id(value), to)
        if key not in casts:
            cast = _cast(value, to, suffix)
            graph.insert_before(node, cast)
            casts[key] = cast.outputs[0]
        node.replace_input_with(index, casts[key])

    for node in list(graph):
        if node.op_type == "Cast" and node.name.endswith(("_cast_fp16", "_cast_fp32")):
            continue
        if node.name in keep:
            for i, value in enumerate(node.inputs):
                if value is not None and id(value) in converted:
                    cast_input(node, i, value, ir.DataType.FLOAT, "fp32")
            continue
        for i, value in enumerate(node.inputs):
            if value is None or value.dtype != ir.DataType.FLOAT:
                continue
            tensor = value.const_value
            if (
                value.is_initializer()
                and tensor is not None
                and all(u.node.name not in keep for u in value.uses())
            ):
                value.const_value = ir.tensor(tensor.numpy().astype(np.float16), name=value.name)
                value.type = ir.TensorType(half)
                converted.add(id(value))
            elif id(value) not in converted:
                cast_input(node, i, value, half, "fp16")
        if node.op_type == "Cast" and node.attributes["to"].as_int() == ir.DataType.FLOAT:
            node.attributes["to"] = ir.AttrInt64("to", half)
        if node.op_type == "ConstantOfShape" and "value" in node.attributes:
            tensor = node.attributes["value"].as_tensor()
            if tensor.dtype == ir.DataType.FLOAT:
                node.attributes["value"] = ir.AttrTensor(
                    "value", ir.tensor(tensor.numpy().astype(np.float16))
                )
        for out in node.outputs:
            if out.dtype == ir.DataType.FLOAT:
                out.type = ir.TensorType(half)
                converted.add(id(out))
    for j, out in enumerate(list(graph.outputs)):
        if id(out) in converted:
            name = out.name
            out.name = f"{name}_fp16"
            cast = _cast(out, ir.DataType.FLOAT, "fp32")
            cast.outputs[0].name = name
            graph.append(cast)
            graph.outputs[j] = cast.outputs[0]
    return keep
