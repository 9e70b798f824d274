"""Range-mixing guard: error of each output channel relative to that channel's own range.

A whole-tensor cosine hides the classic detector trap: boxes (~hundreds) and class scores (0..1)
share one output tensor, one int8 scale turns every score into 0 or one quantization step, and the
cosine stays at 0.9998 because the boxes dominate the norm. Here each slice along axis 1 (channels
of NCHW maps, rows of ``[N, 4 + classes, anchors]`` heads, features of ``[N, F]``) is judged alone:

    channel_error(c) = max |cand_c - ref_c| / max(max ref_c - min ref_c, max |ref_c|)

and the worst channel is reported. The range is floored at ``RANGE_FLOOR`` x the output's whole
range, so near-constant channels (a rare class's probability ~1e-5) do not count as broken.
Memory: per-channel running max/min only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelcrunch.runtime.session import Runner, make_session

RANGE_FLOOR = 1e-3


def _per_channel(array: np.ndarray) -> np.ndarray:
    """[channels, rest] view: axis 1 for rank >= 2, the whole tensor as one channel otherwise."""
    if array.ndim < 2:
        return array.reshape(1, -1)
    return np.moveaxis(array, 1, 0).reshape(array.shape[1], -1)


def worst_channel_error(
    reference: Path | ort.InferenceSession,
    candidate: Path | ort.InferenceSession,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    provider: str = "cpu",
    threads: int | None = None,
) -> float:
    """Max over float outputs and channels of ``channel_error`` (0 = identical; inf when non-finite).

    ``feeds`` may hold several samples each (stacked on axis 0): the statistics are the same.
    """
    ref_session, cand_session = (
        m if isinstance(m, Runner) else make_session(m, provider=provider, threads=threads)
        for m in (reference, candidate)
    )
    stats: dict[int, list[np.ndarray]] = {}
    for feed in feeds:
        for k, (r, c) in enumerate(
            zip(ref_session.run(None, feed), cand_session.run(None, feed), strict=True)
        ):
            if not np.issubdtype(r.dtype, np.floating) or r.shape != c.shape or r.size == 0:
                continue
            r2, c2 = _per_channel(r.astype(np.float64)), _per_channel(c.astype(np.float64))
            err = np.nan_to_num(np.abs(c2 - r2), nan=np.inf).max(axis=1)
            lo, hi = r2.min(axis=1), r2.max(axis=1)
            if k not in stats:
                stats[k] = [err, lo, hi]
            elif stats[k][0].shape == err.shape:
                stats[k] = [
                    np.maximum(stats[k][0], err),
                    np.minimum(stats[k][1], lo),
                    np.maximum(stats[k][2], hi),
                ]
    worst = 0.0
    for err, lo, hi in stats.values():
        whole = float(max(hi.max() - lo.min(), np.abs(hi).max(), np.abs(lo).max()))
        if whole > 0:
            scale = np.maximum(np.maximum(hi - lo, np.maximum(np.abs(hi), np.abs(lo))), RANGE_FLOOR * whole)
            worst = max(worst, float((err / scale).max()))
    return worst
