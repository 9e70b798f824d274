"""Reading intermediate tensors on calibration data: a temporary copy of the model exposes them as
extra graph outputs and runs batch by batch in ONNX Runtime (memory bounded by one batch)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from modelcrunch.runtime.capture import keep_ancestors


def expose(model: ir.Model | onnx.ModelProto, names: list[str]) -> ort.InferenceSession:
    """A session on a copy of ``model`` whose outputs are ``names`` (intermediate values)."""
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    dtypes = _element_types(proto)
    known = {v.name: v for v in [*proto.graph.value_info, *proto.graph.output, *proto.graph.input]}
    del proto.graph.output[:]
    for name in names:
        info = known.get(name)
        out = proto.graph.output.add()
        if info is not None and info.type.HasField("tensor_type"):
            out.CopyFrom(info)
            out.type.tensor_type.ClearField("shape")
        else:
            elem_type = dtypes.get(name, onnx.TensorProto.FLOAT)
            out.CopyFrom(onnx.helper.make_tensor_value_info(name, elem_type, None))
    del proto.graph.value_info[:]
    keep_ancestors(proto.graph, names)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors come back as exceptions (one line)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _element_types(proto: onnx.ModelProto) -> dict[str, int]:
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
    model: ir.Model | onnx.ModelProto, names: list[str], feeds: Iterable[dict[str, np.ndarray]]
) -> Iterator[dict[str, np.ndarray]]:
    """For each feed batch, the values of ``names`` (float32 arrays)."""
    session = expose(model, names)
    inputs = {i.name for i in session.get_inputs()}
    for batch in feeds:
        results = session.run(names, {k: v for k, v in batch.items() if k in inputs})
        yield {name: np.asarray(r) for name, r in zip(names, results, strict=True)}
