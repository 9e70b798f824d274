"""Dynamic int8: int8 weights, activations quantized at run time, via ``quantize_dynamic``.

Rewrites ``MatMul(x, W)`` into ``MatMulInteger(DynamicQuantizeLinear(x), W_q)`` (+ scale Mul), Gemm
and Attention likewise; ``W_q = round(W / s)``, ``s = max|W| / 127`` (per column with
per-channel; ``/ 63`` with reduce_range, the default where the CPU's u8s8 kernels saturate:
``config.u8s8_saturates``). Only ops with constant weights are rewritten (``MatMulConstBOnly``).
Convolutions are left alone by default: ConvInteger has no fast CPU kernel and made every real CNN slower.

Limits: no calibration, so activations' scales are per batch; pays off only for MatMul-heavy
models (transformers, MLPs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onnxruntime import quantization as ortq


def quantize_dynamic_model(
    src: Path,
    dst: Path,
    *,
    op_types: Sequence[str],
    per_channel: bool,
    reduce_range: bool = False,
    nodes_to_quantize: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] = (),
) -> None:
    """Write the dynamically quantized ``src`` to ``dst``."""
    ortq.quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=list(op_types),
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=ortq.QuantType.QInt8,
        nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize is not None else None,
        nodes_to_exclude=list(nodes_to_exclude),
        extra_options={"MatMulConstBOnly": True},
    )
