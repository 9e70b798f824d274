"""Per-tensor activation magnitudes with bounded memory.

Adds ``ReduceMax(Abs(t))`` for every float activation ``t`` as an extra (scalar) graph output and
runs the augmented model on the feeds, so memory holds one scalar per tensor, never the tensors.
Used by fp16 (which ops would overflow 65504) and by the sensitivity report (range-mixing traps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper


def _float_activations(model: onnx.ModelProto) -> list[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    float_names = {
        v.name
        for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    }
    inits = {t.name for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        names.extend(o for o in node.output if o and o in float_names and o not in inits)
    return names


def activation_absmax(model: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """``{tensor name: max |t|}`` over all feeds for every float activation of the main graph."""
    import onnxruntime as ort

    names = _float_activations(model)
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    extra = []
    for i, name in enumerate(names):
        abs_name, max_name = f"__mc_abs_{i}", f"__mc_absmax_{i}"
        augmented.graph.node.extend(
            [
                helper.make_node("Abs", [name], [abs_name]),
                helper.make_node("ReduceMax", [abs_name], [max_name], keepdims=0),
            ]
        )
        extra.append(max_name)
    del augmented.graph.output[:]
    augmented.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, []) for n in extra)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors come back as exceptions (one line)
    session = ort.InferenceSession(augmented.SerializeToString(), options, providers=["CPUExecutionProvider"])
    peak = np.zeros(len(names), dtype=np.float64)
    for feed in feeds:
        values = session.run(extra, feed)
        peak = np.maximum(peak, np.nan_to_num(np.array([float(v) for v in values]), nan=np.inf))
    return dict(zip(names, peak.tolist(), strict=True))
