"""The quality guard that prune and factorize share with quantize: which samples judge, against
which original, to which targets; and the search for the strongest setting that meets them.

* **Held out by default.** With only calibration data, :data:`modelcrunch.data.HOLDOUT` (20 %) of
  its samples, chosen with a fixed seed, are kept out of calibration and repair and judge the
  result; ``--eval`` data judges instead when given; without data, seeded random inputs do (and
  the report says the task figures are then meaningless).
* **Against the true original.** ``--reference ORIGINAL.onnx`` judges a chained step (prune, then
  quantize) against the model the user started from.
* **Strongest setting that meets the target.** :func:`strongest` searches an ordered list of
  strengths (weakest first) by bisection, taking the verdict as monotone in the strength: about
  ``log2(n) + 1`` attempts, each one compressed, repaired and judged.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from modelcrunch.data import HOLDOUT, Dataset
from modelcrunch.runtime.judge import Judge, Targets, Verdict, load_metric
from modelcrunch.runtime.semantics import parse_kind_overrides

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: A pruned/factorized model slower than the original beyond this latency ratio is not a success
#: (nor one whose whole 95 % interval lies above ``SLOWER_INTERVAL_ABOVE``; ``speed_verdict``).
SLOWER_ABOVE = 1.05
#: With an interval: slower when all of it lies above this (identical copies differ by up to ~2 %).
SLOWER_INTERVAL_ABOVE = 1.03
#: The strength search's time budget (seconds): past it, no stronger level is tried.
SEARCH_SECONDS = 150.0
#: A level that misses by more than this many times its allowance (``Verdict.loss``) sends the search
#: straight to the weakest level: the levels in between are unlikely to pass, and each try is costly.
FAR_MISS = 3.0


@dataclass(frozen=True)
class Quality:
    """What the guard judges by (the options every compressing command shares)."""

    targets: Targets = field(default_factory=Targets)
    kinds: Mapping[str, str] = field(default_factory=dict)
    metric: str | None = None
    holdout: float = HOLDOUT
    reference: Path | None = None  # the true original (a chained step); default: the input model
    keep_best: bool = False  # write the result even when it misses the target (exit 3 all the same)
    require_faster: bool = False  # exit 3 unless the result is faster than the original
    allow_slower: bool = False  # a result slower than the original is not a failure

    @classmethod
    def from_options(
        cls,
        *,
        min_cosine: float | None = None,
        min_top1_agreement: float | None = None,
        min_mask_iou: float | None = None,
        min_f1: float | None = None,
        min_string_agreement: float | None = None,
        min_decision_agreement: float | None = None,
        max_drop: float | None = None,
        output_kind: Sequence[str] | Mapping[str, str] | None = None,
        task: str | None = None,
        metric: str | None = None,
        holdout: float = HOLDOUT,
        reference: str | os.PathLike | None = None,
        keep_best: bool = False,
        require_faster: bool = False,
        allow_slower: bool = False,
    ) -> Quality:
        """From the shared quality options, by their command-line names (``output_kind``: a
        ``{name: kind}`` mapping or ``NAME=KIND`` strings)."""
        targets = Targets(
            min_cosine=min_cosine,
            min_top1=min_top1_agreement,
            min_strings=min_string_agreement,
            min_f1=min_f1,
            min_mask_iou=min_mask_iou,
            min_decisions=min_decision_agreement,
            max_drop=max_drop,
        )
        return cls(
            targets=targets,
            kinds=parse_kind_overrides(output_kind, task),
            metric=metric,
            holdout=holdout,
            reference=Path(reference) if reference is not None else None,
            keep_best=keep_best,
            require_faster=require_faster,
            allow_slower=allow_slower,
        )


@dataclass(frozen=True)
class Split:
    calibration: Dataset | None  # what calibration and repair may read
    judged: Dataset | list | None  # what the verdict is computed on
    describe: str


def split_data(calibration: Dataset | None, evaluation: Dataset | None, quality: Quality) -> Split:
    """Which samples calibrate and which judge (module docstring)."""
    if evaluation is not None:
        return Split(calibration, evaluation, f"{len(evaluation)} samples of --eval {evaluation.source}")
    if calibration is None:
        return Split(None, None, "synthesized random inputs (no data given: task figures mean little)")
    if quality.holdout > 0 and len(calibration) >= 2:
        kept, held = calibration.split(quality.holdout)
        return Split(
            kept,
            held,
            f"{len(held)} held-out samples ({quality.holdout:.0%} of --calibration, seed 0; "
            f"calibrated and repaired on the other {len(kept)})",
        )
    return Split(calibration, calibration, f"{len(calibration)} calibration samples (nothing held out)")


def make_judge(
    source: Path,
    split: Split,
    quality: Quality,
    *,
    fallback: Sequence[Mapping[str, np.ndarray]],
    threads: int | None = None,
) -> Judge:
    """The judge of a run: against ``--reference`` or ``source``, on the split's judged samples
    (``fallback`` feeds without data)."""
    reference = quality.reference or source
    describe = split.describe + (f", against --reference {quality.reference}" if quality.reference else "")
    return Judge(
        reference,
        split.judged if split.judged is not None else list(fallback),
        targets=quality.targets,
        kinds=dict(quality.kinds),
        metric=load_metric(quality.metric) if quality.metric else None,
        threads=threads,
        describe=describe,
    )


@dataclass(frozen=True)
class Attempt(Generic[T]):
    strength: float
    result: T
    verdict: Verdict

    def to_dict(self) -> dict:
        worst = self.verdict.worst
        return {
            "strength": self.strength,
            "passed": self.verdict.passed,
            "loss": self.verdict.loss if self.verdict.loss != float("inf") else None,
            "worst": None if worst is None else worst.text(),
        }


def strongest(
    levels: Sequence[float],
    attempt: Callable[[float], tuple[T, Verdict]],
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
    seconds: float | None = None,
) -> tuple[Attempt[T] | None, list[Attempt[T]]]:
    """The strongest of ``levels`` (weakest first) whose verdict passes, by bisection; and every
    attempt made. None when even the weakest misses (the attempts then hold the weakest's result).

    After a level misses by more than ``FAR_MISS`` times its allowance, the weakest level is tried
    next (a sensitive model: the levels between rarely pass).
    Past ``seconds`` (``SEARCH_SECONDS``; slow models, where one attempt takes minutes) the search
    stops at the strongest level that passed so far, or tries the weakest level last."""
    seconds = SEARCH_SECONDS if seconds is None else seconds
    started = time.monotonic()
    tried: dict[int, Attempt[T]] = {}
    low, high = -1, len(levels)  # levels[:low+1] pass, levels[high:] miss (as far as known)
    budget = max(1, int(np.ceil(np.log2(len(levels) + 1))) + 1)

    def run(index: int) -> Attempt[T]:
        if index not in tried:
            result, verdict = attempt(levels[index])
            tried[index] = Attempt(levels[index], result, verdict)
            logger.info("strength %s: %s", levels[index], verdict.summary())
            if on_progress is not None:
                on_progress("strength search", len(tried), budget)
        return tried[index]

    while high - low > 1:
        if time.monotonic() - started > seconds and (low >= 0 or 0 in tried):
            logger.info("strength search: stopped after %.0f s (its time budget)", time.monotonic() - started)
            break
        middle = (low + high) // 2 if time.monotonic() - started <= seconds else 0
        if low < 0 and 0 not in tried and any(t.verdict.loss > FAR_MISS for t in tried.values()):
            middle = 0  # a far miss: the weakest level next
        if run(middle).verdict.passed:
            low = middle
        else:
            high = middle
    attempts = [tried[i] for i in sorted(tried)]
    if low >= 0:
        return tried[low], attempts
    if 0 not in tried:
        run(0)
        attempts = [tried[i] for i in sorted(tried)]
    return None, attempts


#: A latency measurement that reads slower while its interval still holds 1.0 is taken again, this long.
RECHECK_SECONDS = 20.0


def timed(bench: Callable[[float], T], seconds: float, notes: list[str]) -> T:
    """``bench(seconds)`` (a ``runtime.bench.BenchResult`` of the original then the candidate); taken
    again for ``max(4 x seconds, RECHECK_SECONDS)`` when it reads slower than ``SLOWER_ABOVE`` but its
    95 % interval still includes 1.0 (a slow model gets few rounds in a short budget), and
    ``notes`` says so: a verdict of "slower" then rests on the longer measurement."""
    result = bench(seconds)
    first = result.ratios[1]  # type: ignore[attr-defined]
    interval = first.latency_ci
    if first.latency > SLOWER_ABOVE and interval is not None and interval[0] <= 1.0:
        longer = max(4 * seconds, RECHECK_SECONDS)
        notes.append(
            f"latency re-measured for {longer:.0f} s: the first {seconds:.0f} s read {first.latency:.2f}x "
            f"(95 % interval {interval[0]:.3f}-{interval[1]:.3f}), too uncertain to call"
        )
        result = bench(longer)
    return result


def speed_verdict(
    ratio: float | None, quality: Quality, interval: tuple[float, float] | None = None
) -> tuple[bool, str | None]:
    """(passes, why not) for a measured latency ratio against the original. Slower means a ratio
    above ``SLOWER_ABOVE``, or the whole 95 % interval of the interleaved ratio
    (``bench.ratio_interval``) above ``SLOWER_INTERVAL_ABOVE``: the bootstrap sees round-to-round
    noise, not the order and cache effects that put identical copies at 0.986-1.012 here, so an
    identical-speed model is not called slower, and a measurably slower one never passes."""
    if ratio is None:
        return (not quality.require_faster), ("--require-faster: latency was not measured"
                                               if quality.require_faster else None)  # fmt: skip
    if quality.require_faster and ratio >= 0.97:
        return False, f"--require-faster: {ratio:.2f}x the original's latency is not faster"
    slower = ratio > SLOWER_ABOVE or (interval is not None and interval[0] > SLOWER_INTERVAL_ABOVE)
    if slower and not quality.allow_slower:
        measured = f" (95 % interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
        return (
            False,
            f"{ratio:.2f}x the original's latency{measured}: SLOWER than the original "
            "(--allow-slower accepts it)",
        )
    return True, None
