"""Channel importance for a channel group, and the choice of channels to keep.

* ``l1`` / ``l2``: for every weight coupled to the group (producer filters, consumer input slices,
  depthwise filters) the per-channel norm ``s_t[i] = ||W_t[channel i]||``, normalised by its mean so
  tensors of different scale weigh the same, summed over tensors: ``score[i] = sum_t s_t[i] / mean(s_t)``.
* ``bn``: ``sum |gamma_i|`` over the group's BatchNorm scales (falls back to ``l2`` without BN).
* ``activation``: mean ``|x|`` per channel of the consumers' inputs on calibration data.

Selection: ``local`` removes ``floor(ratio * C)`` channels of every group; ``global`` ranks all
channels by their group-normalised score (score / mean score of its group) and removes the lowest
``ratio`` of all prunable channels, never leaving a group below its floor
``max(min_channels, ceil(min_keep_ratio * C))``. Kept counts are rounded *up* to ``round_to``
(groups of fewer than ``2 * round_to`` channels keep their exact count: rounding would keep them whole).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.groups import ChannelGroup, const_array
from modelcrunch.passes.prune.activations import iter_activations

WEIGHT_KINDS = ("weight_out", "weight_in", "depthwise")


def _param_rows(model: ir.Model, group: ChannelGroup, kinds: tuple[str, ...]) -> list[np.ndarray]:
    nodes = {n.name: n for n in model.graph}
    rows = []
    for p in group.params:
        if p.kind not in kinds:
            continue
        arr = np.moveaxis(const_array(nodes[p.node].inputs[p.input]).astype(np.float64), p.axis, 0)
        seg = arr[p.offset : p.offset + group.size * p.block]
        rows.append(seg.reshape(group.size, -1))
    return rows


def _normalised_sum(parts: list[np.ndarray], size: int) -> np.ndarray:
    total = np.zeros(size)
    for s in parts:
        mean = s.mean()
        total += s / mean if mean > 0 else s
    return total


def weight_scores(model: ir.Model, group: ChannelGroup, norm: str) -> np.ndarray:
    rows = _param_rows(model, group, WEIGHT_KINDS)
    if norm == "l1":
        parts = [np.abs(r).sum(axis=1) for r in rows]
    else:
        parts = [np.sqrt((r * r).sum(axis=1)) for r in rows]
    return _normalised_sum(parts, group.size)


def bn_scores(model: ir.Model, group: ChannelGroup) -> np.ndarray:
    rows = _param_rows(model, group, ("bn_scale",))
    if not rows:
        return weight_scores(model, group, "l2")
    return sum(np.abs(r).mean(axis=1) for r in rows)


def activation_scores(
    model: ir.Model, groups: list[ChannelGroup], feeds: Iterable[dict[str, np.ndarray]]
) -> dict[int, np.ndarray]:
    """Mean |x| per channel at the consumers' inputs, for every group, in one pass over ``feeds``."""
    nodes = {n.name: n for n in model.graph}
    taps: dict[int, list] = {}
    for g in groups:
        by_value = {m.value: m for m in g.members}
        taps[g.id] = [
            by_value[nodes[c].inputs[0].name] for c in g.consumers if nodes[c].inputs[0].name in by_value
        ]
    names = sorted({m.value for members in taps.values() for m in members})
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    axis_of = {m.value: m.axis for members in taps.values() for m in members}
    for batch in iter_activations(model, names, feeds):
        for name, x in batch.items():
            moved = np.moveaxis(np.abs(x.astype(np.float64)), axis_of[name], 0).reshape(
                x.shape[axis_of[name]], -1
            )
            sums[name] = sums.get(name, 0) + moved.sum(axis=1)
            counts[name] = counts.get(name, 0) + moved.shape[1]
    scores = {}
    for g in groups:
        parts = []
        for m in taps[g.id]:
            mean = sums[m.value] / max(counts[m.value], 1)
            parts.append(mean[m.offset : m.offset + g.size * m.block].reshape(g.size, m.block).mean(axis=1))
        scores[g.id] = _normalised_sum(parts, g.size) if parts else weight_scores(model, g, "l2")
    return scores


def _round_keep(keep: int, size: int, round_to: int, floor: int) -> int:
    keep = max(keep, floor)
    if 1 < round_to <= size // 2:  # a group under two multiples keeps its exact count
        keep = int(math.ceil(keep / round_to) * round_to)
    return min(keep, size)


def floor_of(size: int, min_channels: int, min_keep_ratio: float) -> int:
    return min(size, max(min_channels, int(math.ceil(min_keep_ratio * size))))


def select_local(
    scores: dict[int, np.ndarray], sizes: dict[int, int], ratio: float, *, min_channels: int, round_to: int
) -> dict[int, np.ndarray]:
    """Kept channel indices per group: the top ``C - floor(ratio*C)`` by score (ties keep lower index)."""
    kept = {}
    for gid, score in scores.items():
        size = sizes[gid]
        keep = _round_keep(size - int(math.floor(ratio * size)), size, round_to, min(min_channels, size))
        order = np.argsort(-score, kind="stable")
        kept[gid] = np.sort(order[:keep])
    return kept


def select_global(
    scores: dict[int, np.ndarray],
    sizes: dict[int, int],
    ratio: float,
    *,
    min_channels: int,
    min_keep_ratio: float,
    round_to: int,
) -> dict[int, np.ndarray]:
    """Remove the globally least important ``ratio`` of all channels, respecting per-group floors."""
    entries = []
    for gid, score in scores.items():
        mean = score.mean()
        norm = score / mean if mean > 0 else score
        entries += [(float(norm[i]), gid, i) for i in range(sizes[gid])]
    entries.sort()
    target = int(math.floor(ratio * sum(sizes.values())))
    remaining = dict(sizes)
    floors = {gid: floor_of(sizes[gid], min_channels, min_keep_ratio) for gid in sizes}
    removed: dict[int, set[int]] = {gid: set() for gid in sizes}
    count = 0
    for _, gid, i in entries:
        if count >= target:
            break
        if remaining[gid] <= floors[gid]:
            continue
        removed[gid].add(i)
        remaining[gid] -= 1
        count += 1
    kept = {}
    for gid, score in scores.items():
        keep = _round_keep(remaining[gid], sizes[gid], round_to, floors[gid])
        order = np.argsort(-score, kind="stable")
        kept[gid] = np.sort(order[:keep])
    return kept
