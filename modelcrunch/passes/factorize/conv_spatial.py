"""Conv kh×kw C→O → Conv kh×1 C→r followed by Conv 1×kw r→O (spatial SVD).

With ``M[(c,i), (o,j)] = W[o, c, i, j]`` ((C·kh)×(O·kw)) and a truncated SVD ``M ≈ A·B``:
``W1[r, c, i, 0] = A[(c,i), r]`` and ``W2[o, r, 0, j] = B[r, (o,j)]``, so
``Σ_r W1[r,c,i]·W2[o,r,j] ≈ W[o,c,i,j]``. The vertical conv takes the height part of the geometry
(stride ``(sh, 1)``, dilation ``(dh, 1)``, pads ``(top, 0, bottom, 0)``), the horizontal one the width
part plus the bias. Padding is exact because the first conv has no bias: it maps the zero columns
of the width padding to zeros. ``auto_pad`` SAME_*/VALID is set on both convs: per axis it pads
kh×1 and 1×kw exactly as the original kh×kw. Exact at full rank.

Parameters ``O·C·kh·kw → r·(C·kh + O·kw)``; the first conv runs at input width, so its MACs are
estimated as ``r·C·kh`` per output position × the width stride. Limits: 2-D convs with kh, kw > 1,
group = 1; no data-aware variant (plain SVD even with calibration).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelcrunch.passes.factorize.conv_channel import conv_inputs
from modelcrunch.passes.factorize.lowrank import MatrixDecomposition, NameScope, add_initializer, make_node


def _ints(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attr = node.attributes.get(name)
    return list(attr.value) if attr is not None else default


class ConvSpatial(MatrixDecomposition):
    method = "spatial"
    supports_data = False

    @staticmethod
    def applies(kernel_shape: tuple[int, ...]) -> bool:
        return len(kernel_shape) == 4 and kernel_shape[2] > 1 and kernel_shape[3] > 1

    def to_matrix(self, kernel: np.ndarray) -> np.ndarray:
        o, c, kh, kw = kernel.shape
        return kernel.transpose(1, 2, 0, 3).reshape(c * kh, o * kw)

    def from_matrix(self, matrix: np.ndarray) -> np.ndarray:
        o, c, kh, kw = self.layer.matrix.shape
        return matrix.reshape(c, kh, o, kw).transpose(2, 0, 1, 3)

    def cost(self, ranks: tuple[int, ...]) -> tuple[int, int]:
        o, c, kh, kw = self.layer.matrix.shape
        r = ranks[0]
        sw = _ints(self.layer.node, "strides", [1, 1])[1]
        params = r * (c * kh + o * kw)
        return params, self.layer.rows * (r * c * kh * sw + r * o * kw)

    def emit(self, factors: list[np.ndarray], names: NameScope) -> list[ir.Node]:
        layer, node = self.layer, self.layer.node
        o, c, kh, kw = layer.matrix.shape
        a, b = factors
        r = a.shape[1]
        w1 = a.T.reshape(r, c, kh, 1)
        w2 = b.reshape(r, o, kw).transpose(1, 0, 2).reshape(o, r, 1, kw)
        sh, sw = _ints(node, "strides", [1, 1])
        dh, dw = _ints(node, "dilations", [1, 1])
        top, left, bottom, right = _ints(node, "pads", [0, 0, 0, 0])
        auto_pad = node.attributes["auto_pad"].value if "auto_pad" in node.attributes else "NOTSET"
        first_attrs: dict = {"kernel_shape": [kh, 1], "strides": [sh, 1], "dilations": [dh, 1]}
        second_attrs: dict = {"kernel_shape": [1, kw], "strides": [1, sw], "dilations": [1, dw]}
        if auto_pad not in ("", "NOTSET"):
            first_attrs["auto_pad"] = second_attrs["auto_pad"] = auto_pad
        else:
            first_attrs["pads"], second_attrs["pads"] = [top, 0, bottom, 0], [0, left, 0, right]
        base = node.name or layer.weight.name or "conv"
        v1 = add_initializer(layer.graph, names.fresh(f"{layer.weight.name}_lr_v"), w1, layer.weight)
        v2 = add_initializer(layer.graph, names.fresh(f"{layer.weight.name}_lr_h"), w2, layer.weight)
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        first = make_node("Conv", [node.inputs[0], v1], f"{base}_lr_kx1", names, **first_attrs)
        second = make_node(
            "Conv", conv_inputs(v2, bias, first.outputs[0]), f"{base}_lr_1xk", names, **second_attrs
        )
        return [first, second]
