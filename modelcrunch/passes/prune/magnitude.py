"""Unstructured magnitude pruning: set the smallest-magnitude weights to exactly zero.

Rewrites the weight initializers of Conv / ConvTranspose / Gemm / MatMul (every float initializer
with more than one element with ``all_weights``): ``W[|W| < t] = 0``, with ``t`` the
``sparsity``-quantile of ``|W|`` per tensor (``local``), of all selected weights together
(``global``), or a given ``threshold``. Shapes are unchanged: dense kernels run exactly as fast as
before; what it saves is file size with sparse storage (see ``sparse_storage``) or compression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.quantized import QUANTIZED_OPS, weight_origin
from modelcrunch.errors import ModelcrunchError

MATRIX_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
QUANT_PARAM_OPS = {"QuantizeLinear", "DequantizeLinear", *QUANTIZED_OPS}


@dataclass(frozen=True)
class SparseLayer:
    name: str
    shape: tuple[int, ...]
    sparsity_before: float
    sparsity_after: float

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "sparsity_before": self.sparsity_before,
            "sparsity_after": self.sparsity_after,
        }


def weight_values(
    model: ir.Model, *, all_weights: bool = False, exclude: tuple[str, ...] = ()
) -> list[ir.Value]:
    """The float initializers that magnitude / N:M pruning may touch, in graph order."""
    chosen: dict[str, ir.Value] = {}
    for node in model.graph:
        if node.name in exclude or node.op_type in exclude or node.op_type in QUANT_PARAM_OPS:
            continue  # scales / zero points of (de)quantization are no weights
        if any(weight_origin(v) is not None for v in node.outputs):
            continue  # the scale of an int8-stored weight (Cast(int8) * scale)
        indices = (
            range(len(node.inputs))
            if all_weights
            else ([MATRIX_OPS[node.op_type]] if node.op_type in MATRIX_OPS else [])
        )
        for i in indices:
            v = node.inputs[i] if i < len(node.inputs) else None
            if v is None or v.const_value is None or v.name in exclude or v.is_graph_input():
                continue
            t = v.const_value
            if not t.dtype.is_floating_point() or t.size <= 1 or (not all_weights and len(t.shape) < 2):
                continue
            chosen[v.name] = v
    return list(chosen.values())


def _sparsity(a: np.ndarray) -> float:
    return float(np.count_nonzero(a == 0) / a.size) if a.size else 0.0


def _kth(mags: np.ndarray, sparsity: float) -> float:
    k = int(np.floor(sparsity * mags.size))
    if k <= 0:
        return -1.0
    return float(np.partition(mags, k - 1)[k - 1])


def magnitude_prune(
    model: ir.Model,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    scope: str = "local",
    all_weights: bool = False,
    exclude: tuple[str, ...] = (),
) -> list[SparseLayer]:
    """Zero the smallest weights in place; returns the sparsity of each touched tensor."""
    if (sparsity is None) == (threshold is None):
        raise ModelcrunchError("give exactly one of --sparsity and --threshold")
    if sparsity is not None and not 0.0 <= sparsity < 1.0:
        raise ModelcrunchError(f"--sparsity {sparsity}: must be in [0, 1)")
    values = weight_values(model, all_weights=all_weights, exclude=exclude)
    arrays = {v.name: v.const_value.numpy() for v in values}
    global_t = None
    if sparsity is not None and scope == "global" and arrays:
        global_t = _kth(
            np.concatenate([np.abs(a).reshape(-1).astype(np.float32) for a in arrays.values()]), sparsity
        )
    layers = []
    for v in values:
        a = arrays[v.name]
        mags = np.abs(a).astype(np.float32)
        before = _sparsity(a)
        if threshold is not None:
            mask = mags < threshold
        elif global_t is not None:
            mask = mags <= global_t
        else:
            # exactly floor(sparsity * n) smallest entries (ties broken by position)
            k = int(np.floor(sparsity * a.size))
            mask = np.zeros(a.size, dtype=bool)
            mask[np.argsort(mags.reshape(-1), kind="stable")[:k]] = True
            mask = mask.reshape(a.shape)
        pruned = np.where(mask, np.zeros((), a.dtype), a).astype(a.dtype)
        v.const_value = ir.tensor(pruned, name=v.name)
        layers.append(SparseLayer(v.name, tuple(a.shape), before, _sparsity(pruned)))
    return layers
