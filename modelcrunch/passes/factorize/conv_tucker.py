"""Conv k×k C→O → Conv 1×1 C→r1, Conv k×k r1→r2, Conv 1×1 r2→O (Tucker-2, HOSVD).

The input- and output-channel factors are the leading left singular vectors of the kernel's mode
unfoldings: ``U_in`` (C×r1) of ``W`` unfolded along C, ``U_out`` (O×r2) along O. The core is the
projection ``G = W ×_O U_outᵀ ×_C U_inᵀ`` (r2, r1, k…), and ``W ≈ G ×_O U_out ×_C U_in``:
the first 1×1 conv applies ``U_inᵀ``, the core conv keeps the original strides, pads, auto_pad and
dilations, the last 1×1 conv applies ``U_out`` and the bias. Exact at full ranks (r1 = C, r2 = O).
HOSVD error bound: ``‖W − Ŵ‖² ≤ tail_in(r1) + tail_out(r2)``, used as the rank-selection loss.

Parameters ``O·C·k² → C·r1 + r1·r2·k² + r2·O``; MACs count the first conv at input resolution.
Limits: group = 1; HOSVD only (no HOOI refinement); no data-aware variant.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.ranks import round_rank
from modelcrunch.passes.factorize.conv_channel import conv_inputs, copy_attrs, ones_kernel
from modelcrunch.passes.factorize.lowrank import (
    MatrixDecomposition,
    NameScope,
    Svd,
    add_initializer,
    make_node,
)


class ConvTucker(MatrixDecomposition):
    method = "tucker"
    supports_data = False

    def __init__(self, layer, gram=None) -> None:  # noqa: ANN001 - same signature as the base
        self.layer = layer
        kernel = layer.matrix
        self.matrix = kernel
        self.gram = None
        self.white = self.whitener = None
        self.svd_out = Svd.of(kernel.reshape(kernel.shape[0], -1))
        self.svd_in = Svd.of(np.moveaxis(kernel, 1, 0).reshape(kernel.shape[1], -1))
        self.plain = self.svd_out

    @property
    def max_ranks(self) -> tuple[int, ...]:
        return (len(self.svd_in.s), len(self.svd_out.s))

    def energies(self, data_aware: bool) -> list[np.ndarray]:
        return [self.svd_in.s**2, self.svd_out.s**2]

    def cost(self, ranks: tuple[int, ...]) -> tuple[int, int]:
        o, c, *k = self.layer.matrix.shape
        r1, r2 = ranks
        area = int(np.prod(k))
        params = c * r1 + r1 * r2 * area + r2 * o
        macs = c * r1 * self.layer.in_positions + (r1 * r2 * area + r2 * o) * self.layer.rows
        return params, macs

    def loss(self, ranks: tuple[int, ...], data_aware: bool) -> float:
        e_in, e_out = self.energies(False)
        total = float(e_out.sum())
        return float((e_in[ranks[0] :].sum() + e_out[ranks[1] :].sum()) / total) if total > 0 else 0.0

    def ladder(self, round_to: int) -> list[tuple[int, ...]]:
        """Rank pairs for the global budget: r2 stepped by ``round_to``, r1 in proportion."""
        r1_max, r2_max = self.max_ranks
        pairs = []
        for r2 in range(r2_max, 0, -max(round_to, 1)):
            r1 = round_rank(round(r2 * r1_max / r2_max), round_to, r1_max)
            pairs.append((r1, round_rank(r2, round_to, r2_max)))
        return pairs

    def factors(self, ranks: tuple[int, ...], data_aware: bool) -> list[np.ndarray]:
        r1, r2 = ranks
        u_in, u_out = self.svd_in.u[:, :r1], self.svd_out.u[:, :r2]
        core = np.einsum("oc...,or,cs->rs...", self.layer.matrix, u_out, u_in)
        return [u_in, core, u_out]

    def product(self, factors: list[np.ndarray]) -> np.ndarray:
        u_in, core, u_out = factors
        return np.einsum("rs...,or,cs->oc...", core, u_out, u_in)

    def emit(self, factors: list[np.ndarray], names: NameScope) -> list[ir.Node]:
        layer, node = self.layer, self.layer.node
        u_in, core, u_out = factors
        ones = ones_kernel(core.ndim - 2)
        base = node.name or layer.weight.name or "conv"
        wname = layer.weight.name
        v1 = add_initializer(
            layer.graph, names.fresh(f"{wname}_lr_in"), u_in.T.reshape(*u_in.T.shape, *ones), layer.weight
        )
        v2 = add_initializer(layer.graph, names.fresh(f"{wname}_lr_core"), core, layer.weight)
        v3 = add_initializer(
            layer.graph, names.fresh(f"{wname}_lr_out"), u_out.reshape(*u_out.shape, *ones), layer.weight
        )
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        first = make_node("Conv", [node.inputs[0], v1], f"{base}_lr_in", names)
        middle = make_node("Conv", [first.outputs[0], v2], f"{base}_lr_core", names, **copy_attrs(node))
        last = make_node("Conv", conv_inputs(v3, bias, middle.outputs[0]), f"{base}_lr_out", names)
        return [first, middle, last]
