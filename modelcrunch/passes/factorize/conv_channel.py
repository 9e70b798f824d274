"""Conv k×k C→O → Conv k×k C→r followed by Conv 1×1 r→O (channel decomposition).

With the kernel flattened to ``M[(c,i,j), o] = W[o, c, i, j]`` ((C·k²)×O), a truncated SVD
``M ≈ A·B`` gives the first conv's filters ``W1[r, c, i, j] = A[(c,i,j), r]`` — it keeps the original
strides, pads, auto_pad and dilations, so it samples exactly the original receptive fields — and
the 1×1 conv ``W2[o, r] = B[r, o]`` plus the original bias. Exact at full rank, any spatial rank
(Conv1d/2d/3d). Parameters and MACs ``O·C·k² → r·(C·k² + O)`` (per output position).

Data-aware (whitened SVD) uses the second moment of the input *patches* (im2col rows).
Limits: group = 1 only (grouped/depthwise convs are skipped by ``layers.find_layers``).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelcrunch.passes.factorize.lowrank import MatrixDecomposition, NameScope, add_initializer, make_node

#: Conv attributes that define where the kernel samples the input.
GEOMETRY = ("strides", "pads", "auto_pad", "dilations", "kernel_shape")


def copy_attrs(node: ir.Node, names: tuple[str, ...] = GEOMETRY) -> dict:
    return {k: node.attributes[k].value for k in names if k in node.attributes}


def conv_inputs(weight: ir.Value, bias: ir.Value | None, x: ir.Value) -> list[ir.Value | None]:
    return [x, weight] if bias is None else [x, weight, bias]


def ones_kernel(spatial_rank: int) -> tuple[int, ...]:
    return (1,) * spatial_rank


class ConvChannel(MatrixDecomposition):
    method = "channel"

    def to_matrix(self, kernel: np.ndarray) -> np.ndarray:
        return kernel.reshape(kernel.shape[0], -1).T

    def from_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return matrix.T.reshape(self.layer.matrix.shape)

    def emit(self, factors: list[np.ndarray], names: NameScope) -> list[ir.Node]:
        layer, node = self.layer, self.layer.node
        kernel = layer.matrix.shape
        a, b = factors
        r = a.shape[1]
        w1 = a.T.reshape((r, *kernel[1:]))
        w2 = b.T.reshape((kernel[0], r, *ones_kernel(len(kernel) - 2)))
        base = node.name or layer.weight.name or "conv"
        v1 = add_initializer(layer.graph, names.fresh(f"{layer.weight.name}_lr_spatial"), w1, layer.weight)
        v2 = add_initializer(layer.graph, names.fresh(f"{layer.weight.name}_lr_pointwise"), w2, layer.weight)
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        first = make_node("Conv", [node.inputs[0], v1], f"{base}_lr_k", names, **copy_attrs(node))
        second = make_node("Conv", conv_inputs(v2, bias, first.outputs[0]), f"{base}_lr_1x1", names)
        return [first, second]
