"""N:M semi-structured sparsity (e.g. 2:4): in every run of M consecutive weights along the
*reduction* axis, keep the N of largest magnitude and zero the rest.

Reduction axis: Conv/ConvTranspose weights ``[Cout, Cin/g, k...]`` → axis 1 (input channels, the
layout sparse tensor cores and TensorRT expect); MatMul ``[K, N]`` → axis 0; Gemm ``B`` → axis 0, or
axis 1 with ``transB``. A tensor whose reduction length is not a multiple of M is left dense and
reported. Dense CPU kernels do not run faster; the pattern is for GPUs / TensorRT.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelcrunch.errors import ModelcrunchError
from modelcrunch.passes.prune.magnitude import SparseLayer, _sparsity, weight_values


def parse_pattern(text: str) -> tuple[int, int]:
    try:
        n, m = (int(x) for x in text.split(":"))
    except ValueError:
        raise ModelcrunchError(f"--pattern '{text}': expected N:M, e.g. 2:4") from None
    if not 0 < n < m:
        raise ModelcrunchError(f"--pattern '{text}': need 0 < N < M")
    return n, m


def reduction_axis(node: ir.Node) -> int:
    if node.op_type in ("Conv", "ConvTranspose"):
        return 1 if node.op_type == "Conv" else 0
    if node.op_type == "Gemm":
        attr = node.attributes.get("transB")
        return 1 if attr is not None and attr.value else 0
    return 0


def apply_nm(a: np.ndarray, axis: int, n: int, m: int) -> np.ndarray:
    """Zero all but the N largest |a| of every M consecutive entries along ``axis``."""
    moved = np.moveaxis(a, axis, -1)
    runs = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    order = np.argsort(-np.abs(runs), axis=-1, kind="stable")
    mask = np.zeros(runs.shape, dtype=bool)
    np.put_along_axis(mask, order[..., :n], True, axis=-1)
    out = np.where(mask, runs, np.zeros((), a.dtype)).reshape(moved.shape)
    return np.moveaxis(out, -1, axis).astype(a.dtype)


def nm_prune(
    model: ir.Model, n: int, m: int, *, exclude: tuple[str, ...] = ()
) -> tuple[list[SparseLayer], list[str]]:
    """Apply N:M in place; returns the touched tensors and the names left dense (with why)."""
    axes: dict[str, int] = {}
    for node in model.graph:
        if (
            node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
            and len(node.inputs) > 1
            and node.inputs[1]
        ):
            axes.setdefault(node.inputs[1].name, reduction_axis(node))
    layers, left = [], []
    for v in weight_values(model, exclude=exclude):
        a = v.const_value.numpy()
        axis = axes.get(v.name, 0)
        if a.shape[axis] % m:
            left.append(f"{v.name}: reduction length {a.shape[axis]} is not a multiple of {m}")
            continue
        before = _sparsity(a)
        out = apply_nm(a, axis, n, m)
        v.const_value = ir.tensor(out, name=v.name)
        layers.append(SparseLayer(v.name, tuple(a.shape), before, _sparsity(out)))
    return layers, left


def check_nm(a: np.ndarray, axis: int, n: int, m: int) -> bool:
    """True when every run of M along ``axis`` has at most N non-zeros."""
    moved = np.moveaxis(a, axis, -1)
    runs = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    return bool((np.count_nonzero(runs, axis=-1) <= n).all())
