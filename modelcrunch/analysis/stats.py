"""``inspect_model``: everything ``modelcrunch inspect`` reports, as a frozen ``InspectReport``.

Parameter rule: the parameters are the elements of every initializer, in every graph (main and
If/Loop/Scan bodies; Constant weights are lifted to initializers by ``load_model``), whose dtype
is a float type or a 16/8/4/2-bit integer type (quantized weights, zero points). int32 counts only
as the bias of a quantized op (QLinearConv, QGemm, ...) or the input of a DequantizeLinear (a QDQ
model's bias). int64, uint32/64, bool and string tensors are shapes, indices and flags. A
MatMulNBits weight counts its logical ``K*N`` elements. Each initializer is counted once, however
many nodes share it. Weight bytes, by dtype, cover every initializer (all dtypes). Sparse
initializers are not seen (onnx-ir drops them).

Sparsity is the share of exact zeros (+0.0 and -0.0; for quantized weights, stored zeros) over
the parameters, computed with numpy on the memory-mapped tensors.

Per-layer rows cover the heavy ops of ``analysis.cost`` (Gather only when it reads a 2-D
initializer: an embedding). A layer's weight is its weight input's initializer, or the
initializer behind a ``DequantizeLinear`` feeding it; its params are weight + bias elements.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.cost import heavy_op
from modelcrunch.analysis.memory import MemoryEstimate, estimate_activation_memory
from modelcrunch.analysis.shapes import Shape, ShapeTable, infer_shapes
from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import load_model
from modelcrunch.runtime.feeds import index_limits, synthesize_feeds
from modelcrunch.runtime.semantics import infer_specs
from modelcrunch.runtime.session import make_session, run_checked

logger = logging.getLogger(__name__)

SCHEMA = "modelcrunch.inspect/1"

_PARAM_INT_DTYPES = {
    ir.DataType.INT16,
    ir.DataType.UINT16,
    ir.DataType.INT8,
    ir.DataType.UINT8,
    ir.DataType.INT4,
    ir.DataType.UINT4,
    ir.DataType.INT2,
    ir.DataType.UINT2,
}
#: (op_type, input index) of int32 biases of quantized ops: these int32 tensors are parameters.
_INT32_BIASES = {
    ("QLinearConv", 8),
    ("QGemm", 6),
    ("QAttention", 2),
    ("MatMulIntegerToFloat", 6),
    ("DequantizeLinear", 0),  # a QDQ model's int32 bias
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: list[int | str | None]


@dataclass(frozen=True)
class LayerStats:
    name: str
    op: str
    weight: str | None
    weight_shape: list[int] | None
    weight_dtype: str | None
    params: int
    macs: int | None
    sparsity: float | None


@dataclass(frozen=True)
class InspectReport:
    model: str
    file_size_bytes: int
    ir_version: int | None
    opsets: dict[str, int]
    producer: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    symbolic_dims: list[str]
    params: int
    weight_bytes: dict[str, int]
    node_count: int
    op_histogram: dict[str, int]
    sparsity: float | None
    macs_total: int
    macs_complete: bool
    layers: list[LayerStats]
    memory: MemoryEstimate
    shape_inference_error: str | None
    output_kinds: dict = field(default_factory=dict)  # name -> runtime.semantics.OutputSpec.to_dict()

    @property
    def flops_total(self) -> int:
        return 2 * self.macs_total

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["memory"] = self.memory.to_dict()
        return {
            "schema": SCHEMA,
            **{
                k: d[k]
                for k in (
                    "model",
                    "file_size_bytes",
                    "ir_version",
                    "opsets",
                    "producer",
                    "inputs",
                    "outputs",
                    "symbolic_dims",
                    "params",
                    "weight_bytes",
                )
            },
            "weight_bytes_total": sum(self.weight_bytes.values()),
            **{k: d[k] for k in ("node_count", "op_histogram", "sparsity", "macs_total", "macs_complete")},
            "flops_total": self.flops_total,
            "memory": d["memory"],
            "shape_inference_error": self.shape_inference_error,
            "output_kinds": self.output_kinds,
            "layers": d["layers"],
        }


def _dtype_name(dtype: ir.DataType | None) -> str:
    return dtype.name.lower() if dtype is not None else "unknown"


def _is_param_dtype(dtype: ir.DataType) -> bool:
    return dtype.is_floating_point() or dtype in _PARAM_INT_DTYPES


def _zeros(tensor: ir.TensorProtocol) -> int:
    """Exact zeros in a tensor (+0.0 and -0.0 for floats), vectorised."""
    array = tensor.numpy()
    if array.dtype.kind in "fiub":  # numpy's own types: -0.0 is falsy, so it counts as a zero
        return int(array.size - np.count_nonzero(array))
    if tensor.dtype.is_floating_point() and array.dtype.itemsize in (1, 2, 4, 8):
        # ml_dtypes floats (bfloat16, float8, float4): compare the bits without the sign bit
        bits = array.view(f"u{array.dtype.itemsize}")
        sign = np.array(1 << (8 * array.dtype.itemsize - 1), dtype=bits.dtype)
        return int(bits.size - np.count_nonzero(bits & ~sign))
    return int(array.size - np.count_nonzero(array.astype(np.int16)))  # int4/uint4/int2/uint2


class _Weights:
    """Parameter counts and zero counts of initializers, each computed once."""

    def __init__(self) -> None:
        self._zeros: dict[int, int] = {}

    def zeros(self, value: ir.Value) -> int:
        key = id(value)
        if key not in self._zeros:
            self._zeros[key] = _zeros(value.const_value)  # type: ignore[arg-type]
        return self._zeros[key]


def _weight_source(value: ir.Value | None) -> ir.Value | None:
    """The initializer behind a weight input (directly, or through a DequantizeLinear)."""
    if value is None:
        return None
    if value.const_value is not None:
        return value
    producer = value.producer()
    if producer is not None and producer.op_type == "DequantizeLinear" and producer.inputs:
        source = producer.inputs[0]
        if source is not None and source.const_value is not None:
            return source
    return None


def _logical_elements(value: ir.Value) -> int:
    """Elements of an initializer; a MatMulNBits weight counts its logical K*N."""
    for user, index in value.uses():
        if user.op_type == "MatMulNBits" and index == 1:
            return int(user.attributes["K"].value) * int(user.attributes["N"].value)
    return int(value.const_value.size)  # type: ignore[union-attr]


def _is_parameter(value: ir.Value) -> bool:
    dtype = value.const_value.dtype  # type: ignore[union-attr]
    if dtype == ir.DataType.INT32:
        return any((user.op_type, index) in _INT32_BIASES for user, index in value.uses())
    return _is_param_dtype(dtype)


def _layer(node: ir.Node, table: ShapeTable, weights: _Weights) -> LayerStats | None:
    spec = heavy_op(node)
    if spec is None:
        return None
    weight = _weight_source(node.inputs[spec.weight]) if spec.weight is not None and node.inputs else None
    if node.op_type == "Gather" and (weight is None or len(weight.const_value.shape) != 2):  # type: ignore[union-attr]
        return None  # not an embedding lookup
    params, zeros = 0, 0
    for index in (spec.weight, spec.bias):
        source = (
            _weight_source(node.inputs[index]) if index is not None and index < len(node.inputs) else None
        )
        if source is not None:
            params += _logical_elements(source)
    if weight is not None:
        zeros = weights.zeros(weight)
    size = weight.const_value.size if weight is not None else 0  # type: ignore[union-attr]
    label = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
    return LayerStats(
        name=node.name or node.outputs[0].name,
        op=label,
        weight=weight.name if weight is not None else None,
        weight_shape=[int(d) for d in weight.const_value.shape] if weight is not None else None,  # type: ignore[union-attr]
        weight_dtype=_dtype_name(weight.const_value.dtype) if weight is not None else None,  # type: ignore[union-attr]
        params=params,
        macs=spec.macs(node, table),
        sparsity=zeros / size if size else None,
    )


def _file_size(path: Path, model: ir.Model) -> int:
    """The .onnx file plus its external-data files (``io.model_size_bytes``: the loader may have read
    the external weights into memory already, so the model's tensors no longer name their files)."""
    from modelcrunch.io import model_size_bytes

    return model_size_bytes(path)


def _ir_shape(value: ir.Value) -> Shape | None:
    if value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else (d.value if d.value else None) for d in value.shape.dims)


def _tensor_info(value: ir.Value, shape: Shape | None, table: ShapeTable) -> TensorInfo:
    return TensorInfo(value.name, _dtype_name(table.dtype(value)), list(shape) if shape is not None else [])


def inspect_model(
    path: str | Path,
    shapes: dict[str, list[int | str]] | None = None,
    *,
    batch: int | None = None,
    kinds: dict[str, str] | None = None,
) -> InspectReport:
    """Load ``path`` lazily and report its structure, parameters, MACs and activation memory."""
    path = Path(path)
    model = load_model(path)
    table, input_shapes = infer_shapes(model, shapes, batch=batch)
    weights = _Weights()

    params, zero_count, counted, weight_bytes = 0, 0, 0, Counter()
    histogram: Counter[str] = Counter()
    layers: list[LayerStats] = []
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is None:
                continue
            weight_bytes[_dtype_name(tensor.dtype)] += tensor.nbytes
            if _is_parameter(value):
                elements = _logical_elements(value)
                params += elements
                if elements == tensor.size:  # packed (MatMulNBits) weights have no element zeros
                    zero_count += weights.zeros(value)
                    counted += elements
        for node in graph:
            histogram[
                node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            ] += 1
            layer = _layer(node, table, weights)
            if layer is not None:
                layers.append(layer)

    graph = model.graph
    graph_inputs = [v for v in graph.inputs if not v.is_initializer()]
    inputs = [_tensor_info(v, input_shapes.get(v.name), table) for v in graph_inputs]
    outputs = [_tensor_info(v, table.shape(v) or _ir_shape(v), table) for v in graph.outputs]
    symbolic = sorted({d for t in [*inputs, *outputs] for d in t.shape if isinstance(d, str)})
    known = [layer.macs for layer in layers if layer.macs is not None]
    return InspectReport(
        model=str(path),
        file_size_bytes=_file_size(path, model),
        ir_version=model.ir_version,
        opsets={domain or "ai.onnx": version for domain, version in sorted(model.opset_imports.items())},
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
        inputs=inputs,
        outputs=outputs,
        symbolic_dims=symbolic,
        params=params,
        weight_bytes=dict(sorted(weight_bytes.items())),
        node_count=sum(histogram.values()),
        op_histogram=dict(histogram.most_common()),
        sparsity=zero_count / counted if counted else None,
        macs_total=sum(known),
        macs_complete=len(known) == len(layers),
        layers=layers,
        memory=estimate_activation_memory(model, table),
        shape_inference_error=table.inference_error,
        output_kinds={
            name: spec.to_dict()
            for name, spec in infer_specs(
                model, None, kinds, head_sample=_synthetic_outputs(path, model, shapes, batch)
            ).items()
        },
    )


def _synthetic_outputs(
    path: Path, model: ir.Model, shapes: Mapping[str, Sequence[int | str]] | None, batch: int | None
) -> dict[str, np.ndarray] | None:
    """The outputs on one synthetic feed, where a multi-output head could be among them (two outputs
    or more): what ``infer_specs`` needs to find its structure without data. None when the model
    does not run on it (it is only a hint: inspect reports the rest all the same)."""
    if len(model.graph.outputs) < 2:
        return None
    try:
        session = make_session(path, threads=1, optimization="basic")
        feed = synthesize_feeds(session, shapes=shapes, batch=batch, int_high=index_limits(model))
        values = run_checked(session, feed, name=str(path))
    except (ModelcrunchError, MemoryError) as exc:
        logger.debug("no synthetic run for the output heads: %s", exc)
        return None
    return {o.name: v for o, v in zip(session.get_outputs(), values, strict=True)}
