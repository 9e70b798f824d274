"""Kernel-aware defaults of structured pruning: the default --round-to and the not-faster note."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from modelcrunch.passes.prune.importance import select_local
from modelcrunch.passes.prune.pipeline import _speed_notes
from modelcrunch.runtime.kernels import conv_channel_multiple


def _latency(base_ms: float, new_ms: float):
    model = lambda ms: SimpleNamespace(latency=SimpleNamespace(p50_ms=ms))  # noqa: E731
    return SimpleNamespace(models=[model(base_ms), model(new_ms)])


def test_default_multiple_is_a_kernel_block():
    assert conv_channel_multiple() in (4, 8, 16)


def test_not_faster_note():
    assert _speed_notes(_latency(10.0, 7.0), 16) == []
    (note,) = _speed_notes(_latency(10.0, 10.1), 1)
    assert "NOT faster" in note and "--round-to 1" in note
    assert "NOT faster" in _speed_notes(_latency(10.0, 9.9), 16)[0]


def test_rounding_keeps_small_groups_prunable():
    scores = {0: np.arange(64.0), 1: np.arange(8.0)}
    kept = select_local(scores, {0: 64, 1: 8}, 0.3, min_channels=1, round_to=16)
    assert len(kept[0]) == 48  # 45 rounded up to the block
    assert len(kept[1]) == 6  # 8 channels: under two blocks, exact count
