"""Static shapes of every value, from ONNX shape inference, with ``--shape`` overrides applied.

Method: the (canonicalised) model is serialised to a ``ModelProto`` *without weight data* (large
initializers become typed graph inputs of the same shape, so inference still knows their shapes),
the overridden input dims are written into the graph inputs, and ``onnx.shape_inference`` runs on
that. A symbolic dim fixed on one input (``batch`` → 1) is fixed on every input that names it.

When every input is static but some shapes stay unknown (data propagation stops at Casts, and does
not run inside If/Loop bodies), a second pass folds small constant sub-expressions
(``analysis.fold``) and infers again, then tries ONNX Runtime's symbolic shape inference.

Limits: inference is best effort. When it fails (custom-domain ops it does not know, malformed
models) the shapes known so far are kept and ``ShapeTable.inference_error`` says why; a value
without a shape is simply unknown. Shapes are never guessed: an unresolved symbolic dim stays a
string, an unknown dim is ``None``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import onnx
import onnx_ir as ir

from modelcrunch.analysis.fold import fold_constants
from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import node_subgraphs, scratch_cwd
from modelcrunch.shapes import check_input_names

logger = logging.getLogger(__name__)

#: A dim: an int when known, a str when symbolic (named), None when unknown.
Dim = int | str | None
Shape = tuple[Dim, ...]

#: Initializers with more elements than this are passed to inference as typed inputs, without data.
_KEEP_DATA_ELEMENTS = 64


@dataclass
class ShapeTable:
    """Shape and dtype of values, looked up by name (names are unique across a model's graphs)."""

    shapes: dict[str, Shape] = field(default_factory=dict)
    dtypes: dict[str, ir.DataType] = field(default_factory=dict)
    inference_error: str | None = None

    def shape(self, value: ir.Value | None) -> Shape | None:
        if value is None:
            return None
        if value.const_value is not None:
            return tuple(int(d) for d in value.const_value.shape)
        return self.shapes.get(value.name)

    def dtype(self, value: ir.Value | None) -> ir.DataType | None:
        if value is None:
            return None
        if value.const_value is not None:
            return value.const_value.dtype
        return self.dtypes.get(value.name) or value.dtype


def is_static(shape: Shape | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def numel(shape: Shape | None) -> int | None:
    """Element count, or None when any dim is not a known integer."""
    if not is_static(shape):
        return None
    n = 1
    for d in shape:  # type: ignore[union-attr]
        n *= int(d)  # type: ignore[arg-type]
    return n


def _dims_of(type_proto: onnx.TypeProto) -> Shape | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for d in type_proto.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for sub in node_subgraphs(node):
            yield from _graphs(sub)


def _strip_weights(proto: onnx.ModelProto) -> None:
    """Turn big main-graph initializers into typed inputs so inference does not copy their data."""
    graph = proto.graph
    keep = []
    for init in graph.initializer:
        size = 1
        for d in init.dims:
            size *= d
        if size <= _KEEP_DATA_ELEMENTS or init.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            keep.append(init)
        else:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _set_input_dims(proto: onnx.ModelProto, overrides: dict[str, list[int | str]]) -> None:
    """Write the overridden dims into the graph inputs; bind their symbols on all inputs."""
    bound: dict[str, int] = {}
    inputs = {v.name: v for v in proto.graph.input}
    for name, dims in overrides.items():
        shape = inputs[name].type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise ModelcrunchError(
                f"--shape {name}: the input has rank {len(shape.dim)}, got {len(dims)} dims "
                f"({'x'.join(str(d) for d in dims)})"
            )
        for dim_proto, value in zip(shape.dim, dims, strict=True):
            if value == "?":
                continue
            if dim_proto.HasField("dim_value") and dim_proto.dim_value >= 0 and dim_proto.dim_value != value:
                raise ModelcrunchError(
                    f"--shape {name}: dim {dim_proto.dim_value} is fixed by the model, cannot be {value}"
                )
            if dim_proto.HasField("dim_param") and dim_proto.dim_param:
                bound[dim_proto.dim_param] = int(value)
            dim_proto.dim_value = int(value)
    for value_info in proto.graph.input:
        for dim_proto in value_info.type.tensor_type.shape.dim:
            if dim_proto.HasField("dim_param") and dim_proto.dim_param in bound:
                dim_proto.dim_value = bound[dim_proto.dim_param]


def graph_input_names(model: ir.Model) -> list[str]:
    initializers = set(model.graph.initializers)
    return [v.name for v in model.graph.inputs if v.name not in initializers]


def infer_shapes(
    model: ir.Model, overrides: dict[str, list[int | str]] | None = None, *, batch: int | None = None
) -> tuple[ShapeTable, dict[str, Shape]]:
    """Run shape inference with ``overrides`` (``--shape``) and ``batch`` (first symbolic dim).

    Returns the table and the model's input shapes after overrides. Raises ModelcrunchError for
    an unknown input name or a rank mismatch.
    """
    overrides = dict(overrides or {})
    names = graph_input_names(model)
    check_input_names(overrides, names)
    proto = ir.to_proto(model)
    if batch is not None:
        for value_info in proto.graph.input:
            dims = value_info.type.tensor_type.shape.dim
            free = value_info.name in names and value_info.name not in overrides
            if free and dims and not (dims[0].HasField("dim_value") and dims[0].dim_value >= 0):
                overrides[value_info.name] = [batch] + ["?"] * (len(dims) - 1)
    _set_input_dims(proto, overrides)
    input_shapes = {v.name: _dims_of(v.type) or () for v in proto.graph.input if v.name in names}
    _strip_weights(proto)
    _drop_dynamic_value_info(proto)
    table = ShapeTable()
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference is best effort; keep what the model states
        table.inference_error = _first_line(exc)
        logger.warning("shape inference failed, shapes are partial: %s", table.inference_error)
        inferred = proto
    _merge(table, inferred)
    if all(is_static(s) for s in input_shapes.values()) and _has_unknowns(model, table):
        _second_pass(model, proto, table)
    return table, input_shapes


def _second_pass(model: ir.Model, proto: onnx.ModelProto, table: ShapeTable) -> None:
    """Inputs are static but some shapes are not: fold small constant expressions and infer
    again; if shapes are still missing, try ONNX Runtime's symbolic shape inference."""

    def static_shape(name: str) -> tuple[int, ...] | None:
        shape = table.shapes.get(name)
        return tuple(shape) if is_static(shape) else None  # type: ignore[arg-type]

    if fold_constants(proto, static_shape):
        try:
            _merge(table, onnx.shape_inference.infer_shapes(proto, data_prop=True))
        except Exception as exc:  # noqa: BLE001
            logger.debug("shape inference after folding failed: %s", _first_line(exc))
    if _has_unknowns(model, table):
        _normalize_concat_axes(proto, table)
        _merge(table, _ort_symbolic_inference(proto))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _drop_dynamic_value_info(proto: onnx.ModelProto) -> None:
    """Forget the file's intermediate shapes that are not static: they name dims we may have fixed."""
    for graph in _graphs(proto.graph):
        static = [v for v in graph.value_info if is_static(_dims_of(v.type))]
        del graph.value_info[:]
        graph.value_info.extend(static)


def _merge(table: ShapeTable, proto: onnx.ModelProto | None) -> None:
    """Add the shapes ``proto`` states; a static shape never gets replaced by a less known one."""
    if proto is None:
        return
    for graph in _graphs(proto.graph):
        for init in graph.initializer:  # folded constants
            if not is_static(table.shapes.get(init.name)):
                table.shapes[init.name] = tuple(int(d) for d in init.dims)
                table.dtypes.setdefault(init.name, ir.DataType(init.data_type))
        for info in [*graph.input, *graph.value_info, *graph.output]:
            dims = _dims_of(info.type)
            if dims is not None and not is_static(table.shapes.get(info.name)):
                table.shapes[info.name] = dims
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                table.dtypes.setdefault(info.name, ir.DataType(info.type.tensor_type.elem_type))


def _has_unknowns(model: ir.Model, table: ShapeTable) -> bool:
    return any(not is_static(table.shape(out)) for node in model.graph for out in node.outputs if out.name)


@functools.cache
def _symbolic_shape_infer_module() -> ModuleType:
    """``onnxruntime/tools/symbolic_shape_infer.py``, loaded as a lone file: importing it through its
    package runs ``onnxruntime.tools.__init__``, which imports torch when installed (seconds)."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        raise ImportError("onnxruntime is not installed")
    path = Path(spec.origin).parent / "tools" / "symbolic_shape_infer.py"
    file_spec = importlib.util.spec_from_file_location("_modelcrunch_ort_symbolic_shape_infer", path)
    if file_spec is None or file_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


def _normalize_concat_axes(proto: onnx.ModelProto, table: ShapeTable) -> None:
    """Concat axis -1 → its positive value (ORT's symbolic inference asserts ``axis == 0`` on shape
    tensors; PaddleOCR's exporter writes -1 for 1-D shape concatenations)."""
    for graph in _graphs(proto.graph):
        for node in graph.node:
            if node.op_type != "Concat" or not node.output:
                continue
            rank = table.shapes.get(node.output[0])
            for attr in node.attribute:
                if attr.name == "axis" and attr.i < 0 and rank is not None:
                    attr.i += len(rank)


def _ort_symbolic_inference(proto: onnx.ModelProto) -> onnx.ModelProto | None:
    """ONNX Runtime's symbolic shape inference: it follows Shape→Gather→Concat→Reshape chains and
    knows the com.microsoft ops, where onnx's inference gives up. Used when inputs are static."""
    try:
        with scratch_cwd():  # it saves sym_shape_infer_temp.onnx in the working directory on failure
            return _symbolic_shape_infer_module().SymbolicShapeInference.infer_shapes(proto, auto_merge=True)
    except Exception as exc:  # noqa: BLE001 - best effort, as above
        logger.debug("onnxruntime symbolic shape inference failed: %s", _first_line(exc))
        return None
