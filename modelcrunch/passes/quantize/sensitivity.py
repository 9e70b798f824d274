"""Accuracy guard: find the layers responsible for the loss and keep them in float.

Per-layer error is measured by quantizing one layer (or one group of consecutive layers) at a time
and comparing the model's outputs with the original on a few evaluation samples:
``loss(g) = 1 - worst output cosine`` of the model with only ``g`` quantized (with
``--max-channel-error``, also ``0.01 x`` the worst per-channel error of ``channels.py``; with a
top-1 or mask-IoU target, also the top-1 disagreement or ``1 - mask IoU``).
One candidate model exists at a time, so memory is bounded by a single model plus its outputs —
no intermediate tensor is ever marked as an output. At most ``MAX_PROBES`` probes run: with more
layers, consecutive layers (in graph order) are grouped, and more coarsely (at least
``MIN_PROBES`` groups) where the probes would take more than ``SENSITIVITY_SECONDS``; the count
search below reads a subset of the samples and confirms its answer on all of them
(``search_count``). Layers are then kept float worst-first,
as few as meet the fidelity target: counts 1, 2, 4, ... until one meets it, then a bisection
between the last miss and the first hit (the loss falls as more layers stay float, so this finds
the smallest count in O(log n) full measurements; on MiniLM it keeps 3 of 36 MatMuls float where
doubling alone kept 4). It gives up (target missed) before more than ``MAX_FLOAT_SHARE`` of the
groups would stay float.

This targets the known traps: a head whose output mixes very different ranges (caught by the
per-channel error of ``--max-channel-error``; a whole-tensor cosine hides it), normalisations
built from primitive ops (never in the int8 op list, and sensitive when they are), and the final
layers of a head.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelcrunch.runtime.fidelity import Fidelity
from modelcrunch.runtime.judge import Verdict

logger = logging.getLogger(__name__)

MAX_PROBES = 48
#: The sensitivity probes' time budget (seconds): past it, layers are probed in coarser groups ...
SENSITIVITY_SECONDS = 60.0
#: ... but never fewer than this many.
MIN_PROBES = 8
#: Keeping more than this share of the layers float is not quantization any more: give up.
MAX_FLOAT_SHARE = 0.5


@dataclass(frozen=True)
class Score:
    """A candidate's measured fidelity plus the worst per-channel error (``channels.py``)."""

    fidelity: Fidelity
    channel_error: float
    channel_weight: float = 0.0  # 0.01 when the channel-error gate is on, so it ranks layers too
    top1_weight: float = 0.0  # 1 when the top-1 agreement gate is on
    top1_outputs: tuple[str, ...] | None = None  # the outputs it reads (None: all)
    mask_weight: float = 0.0  # 1 when the mask-IoU gate is on
    mask_outputs: tuple[str, ...] | None = None  # the outputs it reads (None: all probability ones)
    verdict: Verdict | None = None  # the task judge's verdict (``runtime/judge.py``)

    @property
    def loss(self) -> float:
        """One number to rank by. With the judge's verdict: the share of the worst figure's allowance
        used (1 = at its target), or the weighted channel error. Else: cosine loss, or the (weighted)
        channel error, top-1 disagreement or mask-IoU loss."""
        if self.verdict is not None:
            channel = self.channel_weight * self.channel_error
            return max(self.verdict.rank_loss, channel if math.isfinite(channel) else math.inf)
        cosine = self.fidelity.worst_cosine
        if not math.isfinite(cosine) or not math.isfinite(self.channel_error):
            return math.inf
        top1 = self.fidelity.worst_top1_agreement_of(self.top1_outputs)
        disagreement = 0.0 if top1 is None else self.top1_weight * (1.0 - top1)
        mask = self.fidelity.worst_mask_iou_of(self.mask_outputs)
        mask_loss = 0.0 if mask is None else self.mask_weight * (1.0 - mask)
        return max(1.0 - cosine, self.channel_weight * self.channel_error, disagreement, mask_loss)

    def describe(self) -> str:
        if self.verdict is not None:
            worst = self.verdict.worst
            text = worst.text() if worst is not None else f"output cosine {self.fidelity.worst_cosine:.4f}"
            return text + (f", worst channel error {self.channel_error:.2f}" if self.channel_weight else "")
        text = f"output cosine {self.fidelity.worst_cosine:.4f}, worst channel error {self.channel_error:.2f}"
        top1 = self.fidelity.worst_top1_agreement_of(self.top1_outputs)
        text += f", top-1 agreement {top1:.2%}" if self.top1_weight and top1 is not None else ""
        mask = self.fidelity.worst_mask_iou_of(self.mask_outputs)
        return text + (f", mask IoU {mask:.4f}" if self.mask_weight and mask is not None else "")


#: build(nodes_to_quantize or None for all, nodes_to_exclude) -> path of the candidate model
Build = Callable[[Sequence[str] | None, Sequence[str]], Path]
Measure = Callable[[Path], Score]


def cached(build: Build) -> Build:
    """``build`` run once per distinct arguments: the count search measures a count on a subset and
    then on every sample (``search_count``), from the same model."""
    paths: dict[tuple, Path] = {}

    def once(only: Sequence[str] | None, exclude: Sequence[str]) -> Path:
        key = (None if only is None else tuple(only), tuple(exclude))
        if key not in paths:
            paths[key] = build(only, exclude)
        return paths[key]

    return once


@dataclass(frozen=True)
class LayerLoss:
    nodes: tuple[str, ...]
    score: Score  # with only these nodes quantized

    @property
    def loss(self) -> float:
        return self.score.loss


def groups(nodes: Sequence[str], max_groups: int = MAX_PROBES) -> list[tuple[str, ...]]:
    """Consecutive nodes grouped so that there are at most ``max_groups`` groups."""
    size = max(1, math.ceil(len(nodes) / max_groups))
    return [tuple(nodes[i : i + size]) for i in range(0, len(nodes), size)]


def rank_layers(
    candidates: Sequence[str],
    build: Build,
    measure: Measure,
    *,
    on_progress: Callable | None = None,
    seconds: float | None = None,
) -> list[LayerLoss]:
    """Loss of each candidate group quantized alone, worst first.

    Where the first probe shows that ``MAX_PROBES`` probes would take more than ``seconds``
    (``SENSITIVITY_SECONDS``; big inputs, slow models), the other layers are grouped more coarsely
    (at least ``MIN_PROBES`` groups in all)."""
    seconds = SENSITIVITY_SECONDS if seconds is None else seconds
    results = []
    parts = groups(candidates)
    step, started = 0, time.perf_counter()
    while step < len(parts):
        part = parts[step]
        results.append(LayerLoss(part, measure(build(list(part), []))))
        step += 1
        if step == 1 and len(parts) > MIN_PROBES:
            per_probe = time.perf_counter() - started
            fit = max(MIN_PROBES, int(seconds / max(per_probe, 1e-9)))
            if fit < len(parts):
                rest = [n for p in parts[1:] for n in p]
                parts = [parts[0], *groups(rest, fit - 1)]
                logger.info(
                    "sensitivity: %d groups (%.1f s a probe, %.0f s budget)", len(parts), per_probe, seconds
                )
        if on_progress is not None:
            on_progress("sensitivity", step, len(parts))
    return sorted(results, key=lambda r: r.loss, reverse=True)


@dataclass(frozen=True)
class GuardResult:
    path: Path
    score: Score
    excluded: dict[str, str]  # node → reason
    met: bool
    ranking: tuple[LayerLoss, ...] = ()  # the sensitivity ranking, worst first (empty: none ran)
    floats: int = 0  # how many of its groups (the worst) are kept float


def float_limit(ranking: Sequence[LayerLoss]) -> int:
    """The most groups of ``ranking`` that may be kept float (``MAX_FLOAT_SHARE``)."""
    return max(1, int(len(ranking) * MAX_FLOAT_SHARE))


def keep_worst_float(
    ranking: Sequence[LayerLoss],
    count: int,
    build: Build,
    measure: Measure,
    meets: Callable[[Score], bool],
    *,
    base_exclude: Sequence[str],
    target: str,
) -> GuardResult:
    """The candidate with the ``count`` worst groups of ``ranking`` kept float, measured."""
    excluded = {
        node: f"quantized alone: {r.score.describe()} (sensitivity rank {i + 1}); kept float to meet {target}"
        for i, r in enumerate(ranking[:count])
        for node in r.nodes
    }
    path = build(None, [*base_exclude, *excluded])
    score = measure(path)
    logger.info("sensitivity: %d layers float -> loss %.5f", len(excluded), score.loss)
    return GuardResult(path, score, excluded, meets(score), tuple(ranking), count)


def guard(
    candidates: Sequence[str],
    build: Build,
    measure: Measure,
    probe: Measure,
    meets: Callable[[Score], bool],
    *,
    base_exclude: Sequence[str] = (),
    target: str,
    on_progress: Callable | None = None,
    search: Measure | None = None,
) -> GuardResult:
    """Quantize everything; if the target is missed, keep the worst layers float until it is met.

    ``measure`` is the full held-out measurement; ``probe`` a cheap one (few samples) for ranking;
    ``search`` (default ``measure``) a mid-sized one for the count search, whose answer is then
    confirmed with ``measure`` (``search_count``).
    """
    build = cached(build)
    path = build(None, base_exclude)
    score = measure(path)
    if meets(score) or not candidates:
        return GuardResult(path, score, {}, meets(score))
    ranking = [r for r in rank_layers(candidates, build, probe, on_progress=on_progress) if r.loss > 0]

    def attempt(count: int, how: Measure) -> GuardResult:
        return keep_worst_float(ranking, count, build, how, meets, base_exclude=base_exclude, target=target)

    return search_count(float_limit(ranking), attempt, measure, search, on_progress=on_progress)


def search_count(
    limit: int,
    attempt: Callable[[int, Measure], GuardResult],
    measure: Measure,
    search: Measure | None = None,
    *,
    on_progress: Callable | None = None,
) -> GuardResult:
    """The attempt with the smallest count in ``1..limit`` that meets the target (``smallest_count``),
    or the most float one, missed. With ``search``, the counts are searched on it and the count it
    finds is measured with ``measure``; where that misses, the search goes on above it with ``measure``
    (so the answer always meets the target on the full measurement, or is reported missed)."""
    tried: dict[tuple[int, bool], GuardResult] = {}

    def run(count: int, full: bool) -> GuardResult:
        if (count, full) not in tried:
            tried[count, full] = attempt(count, measure if full or search is None else search)
            if on_progress is not None:
                expected = max(len(tried), 2 * limit.bit_length())  # doubling, then bisection
                on_progress("keeping sensitive layers float", len(tried), expected)
        return tried[count, full]

    cheap = search is not None and search is not measure
    hit = smallest_count(limit, lambda count: run(count, not cheap).met)
    if hit is not None and cheap:
        if run(hit, True).met:
            return tried[hit, True]
        above = smallest_count(limit - hit, lambda extra: run(hit + extra, True).met)
        hit = None if above is None else hit + above
        cheap = False
    if hit is None:
        return run(limit, True)  # the most float attempt, missed (measured in full)
    return tried[hit, not cheap]


def smallest_count(limit: int, met: Callable[[int], bool]) -> int | None:
    """The smallest count in ``1..limit`` for which ``met`` holds, taking ``met`` as monotone
    (more layers kept float, more fidelity): counts 1, 2, 4, ... up to ``limit`` until one meets,
    then a bisection between the last miss and that hit. None when ``met(limit)`` fails too (or
    ``limit < 1``)."""
    if limit < 1:
        return None
    miss, hit = 0, None
    for count in sorted({min(2**k, limit) for k in range(limit.bit_length() + 1)}):
        if met(count):
            hit = count
            break
        miss = count
    if hit is None:
        return None
    while hit - miss > 1:
        middle = (miss + hit) // 2
        if met(middle):
            hit = middle
        else:
            miss = middle
    return hit
