"""onnx-ir helpers shared by the passes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def register_array(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` as the initializer ``name`` of ``graph`` (dtype and shape from the array)."""
    array = np.ascontiguousarray(array)
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value
