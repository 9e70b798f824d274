"""float16 and bfloat16 that keep the I/O types: fp16 computes in half precision, bf16 only stores.

**fp16 (compute).** Every float32 node — of the main graph and of If/Loop/Scan bodies — becomes
float16 except: ops that overflow or lose too much in half precision (exp/softmax/pow/reductions/
sqrt, index-producing ops — ``KEEP_FP32_OPS``), nodes whose output magnitude on the calibration data
exceeds ``OVERFLOW_MARGIN`` (65504 / 16), and user exclusions. float32 initializers read only by
fp16 nodes are stored as fp16; a ``Cast`` sits at every fp32/fp16 boundary, so graph inputs and
outputs keep their float32 types. ``Cast(to=FLOAT)`` inside the fp16 region becomes
``Cast(to=FLOAT16)``. An If/Loop/Scan node keeps a float32 interface: its inputs and outputs and
its bodies' inputs and outputs stay float32 (so loop-carried values keep one type); inside a body,
values entering fp16 nodes (body inputs, values captured from the outer scope) are cast to fp16
and fp16 body outputs are cast back. Excluding an If/Loop/Scan node keeps its bodies fp32.

**bf16 (storage).** ONNX Runtime 1.32's CPU provider, tried op by op (opsets 13, 17, 22; bfloat16
tensors between fp32 Casts, graph optimizations off), has bfloat16 kernels only for data movement
(Identity, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Gather; Pad from
opset 21), Clip and LayerNormalization; none for MatMul, Gemm, Conv, ConvTranspose, Add/Sub/Mul/
Div, Relu, Sigmoid, Tanh, Softmax, Sqrt/Exp/Pow, reductions, pooling or BatchNormalization — and no
fallback: unlike fp16, where ORT casts around a missing kernel, a bf16 MatMul makes the session
fail to load. A bf16 compute graph would be fp32 layers with Casts around each: slower than fp32
and no smaller than storing. So bf16 is a storage form: a float32 initializer ``W`` of at least
``MIN_ELEMENTS`` elements becomes ``W' = Cast(W_bf16, to=FLOAT)``, ``W_bf16 = W`` rounded to
nearest-even with 8 significant bits (relative error <= 2^-9 per element). The Cast sits at the top
of the weight's own graph and ORT constant-folds it when the session loads (subgraphs included):
the file is ~2x smaller, compute, speed and run-time memory are those of fp32, and it runs on every
provider. bf16 has float32's range, so the overflow rule does not apply; ``KEEP_FP32_OPS`` keep
their float inputs exact, and so do small tensors (biases, norms, scalars: nothing to save).

Limits: magnitudes are measured in the main graph only; inside bodies the overflow rule is left to
the NaN/inf check on the calibration data and the accuracy guard. Every body boundary costs Casts.
ONNX Runtime's CPU provider has few fp16 kernels (it casts back to fp32 around the others): fp16
shrinks files 2x but is a GPU speed feature.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from modelcrunch.passes._ir import FreshNames, name_nodes
from modelcrunch.passes.quantize.config import WEIGHTED_OP_TYPES
from modelcrunch.passes.quantize.storage import MIN_ELEMENTS

logger = logging.getLogger(__name__)

FLOAT, FLOAT16, BFLOAT16 = ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16
FP16_MAX = 65504.0
OVERFLOW_MARGIN = FP16_MAX / 16
KEEP_FP32_OPS = frozenset({
    "Pow", "Exp", "Softmax", "LogSoftmax", "Sqrt", "Reciprocal", "ReduceSum", "ReduceSumSquare",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "CumSum", "Range",
    "Resize", "Upsample", "TopK", "NonMaxSuppression", "RoiAlign", "RandomNormal", "RandomUniform",
    "RandomNormalLike", "RandomUniformLike", "EyeLike", "Multinomial", "Einsum",
})  # fmt: skip
_SUFFIX = {FLOAT: "fp32", FLOAT16: "fp16", BFLOAT16: "bf16"}
_CAST_MARK = "_mc_cast"  # names the Casts this pass inserts (a second run leaves them alone)


def _subgraphs(node: ir.Node) -> list[ir.Graph]:
    graphs: list[ir.Graph] = []
    for attr in node.attributes.values():
        if attr.type is ir.AttributeType.GRAPH:
            graphs.append(attr.as_graph())
        elif attr.type is ir.AttributeType.GRAPHS:
            graphs.extend(attr.as_graphs())
    return graphs


def _float_weights(node: ir.Node) -> list[ir.Value]:
    return [
        v
        for v in node.inputs
        if v is not None and v.is_initializer() and v.const_value is not None and v.const_value.dtype == FLOAT
    ]


def _common_reason(node: ir.Node, exclude: frozenset[str], sensitive: str) -> str | None:
    """The reasons fp16 and bf16 share, in order: the user's exclusion, a ``KEEP_FP32_OPS`` op
    (``sensitive`` says why), an op outside the default domain."""
    if (node.name or "") in exclude:
        return "excluded by the user"
    if node.op_type in KEEP_FP32_OPS:
        return f"{node.op_type} {sensitive}"
    if node.domain not in ("", "ai.onnx"):
        return f"custom-domain op {node.domain}::{node.op_type}"
    return None


def _fp16_reason(node: ir.Node, absmax: Mapping[str, float], exclude: frozenset[str]) -> str | None:
    if reason := _common_reason(node, exclude, "overflows or loses precision in fp16"):
        return reason
    if _subgraphs(node):
        return None  # a float32 interface; its bodies are converted
    peak = max((absmax.get(o.name or "", 0.0) for o in node.outputs), default=0.0)
    if peak > OVERFLOW_MARGIN:
        return f"output reaches {peak:.3g} on the calibration data (fp16 max 65504)"
    if any(o.dtype is None for o in node.outputs):
        return "output type unknown after shape inference"
    return None


def _bf16_reason(node: ir.Node, absmax: Mapping[str, float], exclude: frozenset[str]) -> str | None:
    weights = _float_weights(node)
    if not weights:
        return None  # bf16 changes only stored weights
    sensitive = "is precision-sensitive: its float inputs stay fp32 (bf16 keeps 8 bits)"
    if reason := _common_reason(node, exclude, sensitive):
        return reason
    if node.op_type in WEIGHTED_OP_TYPES and all(w.const_value.size < MIN_ELEMENTS for w in weights):
        return f"weights under {MIN_ELEMENTS} elements stay fp32 (bf16 storage saves nothing there)"
    return None


def keep_reasons(
    model: ir.Model, absmax: Mapping[str, float], exclude: frozenset[str], *, dtype: ir.DataType = FLOAT16
) -> dict[str, str]:
    """Node name → why it stays fp32, in every graph (fp16: nodes that touch float tensors; bf16:
    nodes that read float initializers). Nodes in the bodies of an excluded If/Loop/Scan stay too."""
    reason_of = _fp16_reason if dtype == FLOAT16 else _bf16_reason
    reasons: dict[str, str] = {}
    for graph in model.graphs():
        for node in graph:
            reason = reason_of(node, absmax, exclude)
            if reason is not None:
                reasons[node.name or ""] = reason
    for graph in model.graphs():
        for node in graph:
            if (node.name or "") not in exclude:
                continue
            for body in _subgraphs(node):
                for inner in ir.traversal.RecursiveGraphIterator(body):
                    if dtype == FLOAT16 or _float_weights(inner):
                        reasons.setdefault(inner.name or "", f"inside '{node.name}', which is excluded")
    return reasons


def half_layers(model: ir.Model, dtype: ir.DataType = FLOAT16) -> list[str]:
    """Nodes the conversion changes, in graph order (what an accuracy guard may keep fp32): fp16,
    every node of every graph; bf16, the nodes that read a float initializer it would store."""
    return [
        node.name or ""
        for graph in model.graphs()
        for node in graph
        if dtype == FLOAT16 or any(w.const_value.size >= MIN_ELEMENTS for w in _float_weights(node))
    ]


class _Converter:
    """One conversion: which values hold the half type now, and the Casts made so far (per graph:
    a Cast made inside one body cannot serve another)."""

    def __init__(self, model: ir.Model, half: ir.DataType, keep: Mapping[str, str]) -> None:
        self.model, self.half, self.keep = model, half, keep
        self.converted: set[int] = set()  # ids of values now in the half type
        self.stored: list[str] = []  # initializers now in the half type
        self.casts: dict[tuple[int, int, ir.DataType], ir.Value] = {}
        self.names = FreshNames(model)

    def run(self) -> None:
        for graph in self.model.graphs():
            for value in list(graph.initializers.values()):
                if self._storable(value):
                    self._store(graph, value)
        if self.half == FLOAT16:
            self._convert(self.model.graph)

    def _store(self, graph: ir.Graph, value: ir.Value) -> None:
        """The initializer in the half type; bf16 is read through one Cast at the top of the
        weight's own graph (never inside a loop body below it), which ORT folds at load time."""
        tensor = value.const_value
        value.const_value = ir.tensor(tensor.numpy().astype(self.half.numpy()), name=value.name)
        value.type = ir.TensorType(self.half)
        self.stored.append(value.name or "")
        if self.half == FLOAT16:
            self.converted.add(id(value))
            return
        uses = list(value.uses())
        cast = self._cast(value, FLOAT)
        for use in uses:
            use.node.replace_input_with(use.idx, cast.outputs[0])
        graph.insert_before(next(iter(graph)), cast)

    def _computes_half(self, node: ir.Node) -> bool:
        return self.half == FLOAT16 and (node.name or "") not in self.keep and not _subgraphs(node)

    def _storable(self, value: ir.Value) -> bool:
        tensor = value.const_value
        if tensor is None or tensor.dtype != FLOAT or value.is_graph_input() or value.is_graph_output():
            return False
        uses = [u.node for u in value.uses()]
        if self.half == FLOAT16:
            return bool(uses) and all(self._computes_half(n) for n in uses)
        return (
            bool(uses) and tensor.size >= MIN_ELEMENTS and all((n.name or "") not in self.keep for n in uses)
        )

    def _convert(self, graph: ir.Graph) -> None:
        for node in list(graph):
            if node.op_type == "Cast" and (node.name or "").endswith(_CAST_MARK):
                continue
            if not self._computes_half(node):
                for i, value in enumerate(node.inputs):
                    if value is not None and id(value) in self.converted:
                        self._cast_input(graph, node, i, FLOAT)
                for body in _subgraphs(node):
                    self._convert(body)
                continue
            for i, value in enumerate(node.inputs):
                if value is not None and value.dtype == FLOAT and id(value) not in self.converted:
                    self._cast_input(graph, node, i, self.half)
            if node.op_type == "Cast" and node.attributes["to"].as_int() == FLOAT:
                node.attributes["to"] = ir.AttrInt64("to", self.half)
            if node.op_type in ("Constant", "ConstantOfShape"):
                self._half_constant(node)
            for out in node.outputs:
                if out.dtype == FLOAT:
                    out.type = ir.TensorType(self.half)
                    self.converted.add(id(out))
        for j, out in enumerate(list(graph.outputs)):
            if id(out) not in self.converted:
                continue
            cast = self._cast(out, FLOAT)
            if graph is self.model.graph:  # the model's outputs keep their names
                name = out.name
                out.name = self.names(f"{name}_{_SUFFIX[self.half]}", numbered=False)
                cast.outputs[0].name = name
            graph.append(cast)
            graph.outputs[j] = cast.outputs[0]

    def _half_constant(self, node: ir.Node) -> None:
        """A float value attribute of a Constant/ConstantOfShape in the half type."""
        for name in ("value", "value_float", "value_floats"):
            attr = node.attributes.get(name)
            if attr is None:
                continue
            tensor = attr.as_tensor() if name == "value" else ir.tensor(attr.value, dtype=FLOAT)
            if tensor.dtype == FLOAT:
                node.attributes.pop(name)
                node.attributes["value"] = ir.AttrTensor(
                    "value", ir.tensor(tensor.numpy().astype(self.half.numpy()))
                )

    def _cast(self, value: ir.Value, to: ir.DataType) -> ir.Node:
        name = self.names(f"{value.name}_{_SUFFIX[to]}", numbered=False)
        node = ir.node("Cast", [value], attributes={"to": to}, name=f"{name}{_CAST_MARK}")
        node.outputs[0].name = name
        node.outputs[0].type = ir.TensorType(to)
        node.outputs[0].shape = value.shape
        return node

    def _cast_input(self, graph: ir.Graph, node: ir.Node, index: int, to: ir.DataType) -> None:
        value = node.inputs[index]
        key = (id(graph), id(value), to)
        if key not in self.casts:
            cast = self._cast(value, to)
            graph.insert_before(node, cast)
            self.casts[key] = cast.outputs[0]
        node.replace_input_with(index, self.casts[key])


def convert_half(
    model: ir.Model,
    *,
    dtype: ir.DataType = FLOAT16,
    absmax: Mapping[str, float] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """Convert ``model`` in place (FLOAT16: compute, BFLOAT16: storage; see the module docstring).

    ``absmax``: float activation → max |value| on the calibration data (fp16's overflow rule).
    Returns {node kept in fp32: reason}.
    """
    if dtype not in (FLOAT16, BFLOAT16):
        raise ValueError(f"convert_half: {dtype} is not a half type")
    if dtype == FLOAT16:
        ShapeInferencePass()(model)  # fp16 retypes activations: it needs their types
    name_nodes(model)
    keep = keep_reasons(model, absmax or {}, exclude, dtype=dtype)
    converter = _Converter(model, dtype, keep)
    converter.run()
    logger.info(
        "%s: %d initializers stored, %d nodes kept fp32", _SUFFIX[dtype], len(converter.stored), len(keep)
    )
    return keep
