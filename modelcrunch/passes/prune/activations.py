"""Reading intermediate tensors on calibration data: a temporary copy of the model exposes them as
extra graph outputs and runs batch by batch in ONNX Runtime (memory bounded by one batch)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from modelcrunch.runtime.capture import closure


def expose(
    model: ir.Model | onnx.ModelProto, names: list[str], types: dict[str, int] | None = None
) -> ort.InferenceSession:
    """A session on a copy of ``model`` whose outputs are ``names`` (intermediate values), holding
    only the nodes and initializers they depend on. ``types``: the element types of the model's
    values (``element_types``; computed here when not given)."""
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    nodes, initializers, sparse = closure(proto.graph, names)
    copy = onnx.ModelProto(
        ir_version=proto.ir_version, producer_name=proto.producer_name, opset_import=proto.opset_import,
        functions=proto.functions,
    )  # fmt: skip
    graph = copy.graph
    graph.name = proto.graph.name
    graph.input.extend(proto.graph.input)
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    graph.sparse_initializer.extend(sparse)
    dtypes = element_types(proto) if types is None else types
    known = {v.name: v for v in [*proto.graph.value_info, *proto.graph.output, *proto.graph.input]}
    for name in names:
        info = known.get(name)
        out = graph.output.add()
        if info is not None and info.type.HasField("tensor_type"):
            out.CopyFrom(info)
            out.type.tensor_type.ClearField("shape")
        else:
            elem_type = dtypes.get(name, onnx.TensorProto.FLOAT)
            out.CopyFrom(onnx.helper.make_tensor_value_info(name, elem_type, None))
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors come back as exceptions (one line)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(copy.SerializeToString(), options, providers=["CPUExecutionProvider"])


def element_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element types of the main graph's values by name, from ONNX type inference (best effort):
    a float16 model's activations are float16, not the float32 an untyped output would claim."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - types stay float32 where inference fails
        return {}
    return {
        info.name: info.type.tensor_type.elem_type
        for info in inferred.graph.value_info
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type
    }


def iter_activations(
    model: ir.Model | onnx.ModelProto,
    names: list[str],
    feeds: Iterable[dict[str, np.ndarray]],
    types: dict[str, int] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """For each feed batch, the values of ``names`` (float32 arrays)."""
    session = expose(model, names, types)
    inputs = {i.name for i in session.get_inputs()}
    for batch in feeds:
        results = session.run(names, {k: v for k, v in batch.items() if k in inputs})
        yield {name: np.asarray(r) for name, r in zip(names, results, strict=True)}
