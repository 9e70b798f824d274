"""im2col of a 2-D Conv's input: the rows ``x`` that make ``Conv(x) = rows @ W.reshape(O, -1).T``.

One row per output pixel, ``C·kh·kw`` columns in ``W[o].reshape(-1)``'s order, at the Conv's strides,
dilations and pads (``auto_pad`` SAME_* resolved on the actual input size). Shared by prune's
least-squares repair, factorize's input statistics and quantize's GPTQ rounding.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.channels import attr_value


def conv_pads(node: ir.Node, shape: tuple[int, ...], kernel: tuple[int, int]) -> list[int]:
    """``[top, left, bottom, right]`` of a 2-D Conv on an input of ``shape``."""
    strides = list(attr_value(node, "strides", [1, 1]))
    dilations = list(attr_value(node, "dilations", [1, 1]))
    auto_pad = attr_value(node, "auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(shape[2:], kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else large)
            end.append(large if auto_pad == "SAME_UPPER" else small)
        return begin + end
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    return list(attr_value(node, "pads", [0, 0, 0, 0]))


def im2col(
    x: np.ndarray,
    node: ir.Node,
    kernel: tuple[int, int],
    *,
    rows: int | None = None,
    rng: np.random.Generator | None = None,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """Patches ``(N·Ho·Wo, C·kh·kw)`` of ``x`` ``[N, C, H, W]``; with ``rows``, at most that many,
    drawn by ``rng`` (``choice`` without replacement, in its order) before the windows are copied;
    with ``at``, the rows of those flat output-pixel indices only."""
    kh, kw = kernel
    sh, sw = attr_value(node, "strides", [1, 1])
    dh, dw = attr_value(node, "dilations", [1, 1])
    top, left, bottom, right = conv_pads(node, x.shape, kernel)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    windows = np.lib.stride_tricks.sliding_window_view(xp, span, axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # (n, C, Ho, Wo, kh, kw)
    n, c, ho, wo = windows.shape[:4]
    if at is not None:
        b, i, j = np.unravel_index(at, (n, ho, wo))
        return windows[b, :, i, j].reshape(len(at), c * kh * kw)
    if rows is None or n * ho * wo <= rows:
        return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    rng = rng if rng is not None else np.random.default_rng(0)
    b, i, j = np.unravel_index(rng.choice(n * ho * wo, rows, replace=False), (n, ho, wo))
    return windows[b, :, i, j].reshape(rows, c * kh * kw)  # advanced indices first: (rows, C, kh, kw)
