"""How far a candidate model's outputs are from a reference's on the same inputs.

Per output, accumulated over every batch (``r`` reference, ``c`` candidate, ``d = c - r``, all in
float64, sums over every element of every batch):

* ``max_abs``  = max |d|
* ``rel_l2``   = ||d||_2 / ||r||_2                       (0 when identical)
* ``cosine``   = <r, c> / (||r||_2 ||c||_2)               (1 when identical; 1 if both are all zero)
* ``snr_db``   = 10 log10(||r||^2 / ||d||^2)              (+inf when identical)
* ``top1_agreement`` = share of rows whose argmax over the last axis agrees, for
  classifier-shaped outputs (float, rank >= 2, last axis > 1); None otherwise.
* ``mask_iou`` = |R & C| / |R | C| with ``R = r > 0.5``, ``C = c > 0.5``: how segmentation and
  text-detection maps are scored, for outputs whose reference values all lie in [0, 1]
  (probabilities); None otherwise, and 1 when neither mask has a pixel.

Accuracy (with labels): argmax over the last axis of the first output (or the one named) against
the labels, flattened. Where either output holds NaN/inf, ``nonfinite`` counts those elements and
max_abs, rel_l2, cosine and snr_db are NaN (null in JSON); gates treat a non-finite value as failing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.errors import ModelcrunchError
from modelcrunch.runtime.session import Runner, make_session, run_checked

ModelOrSession = str | os.PathLike | ir.Model | Runner
Outputs = Mapping[str, np.ndarray] | Sequence[np.ndarray]


@dataclass(frozen=True)
class OutputFidelity:
    name: str
    max_abs: float
    rel_l2: float
    cosine: float
    snr_db: float
    top1_agreement: float | None
    nonfinite: int = 0  # NaN/inf elements in either output: every other figure is then NaN
    mask_iou: float | None = None  # IoU of the > 0.5 masks, for probability outputs

    @property
    def exact(self) -> bool:
        return self.max_abs == 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "max_abs": finite_or_none(self.max_abs),
            "rel_l2": finite_or_none(self.rel_l2),
            "cosine": finite_or_none(self.cosine),
            "snr_db": finite_or_none(self.snr_db),  # null when identical (+inf) or non-finite
            "top1_agreement": self.top1_agreement,
            "mask_iou": self.mask_iou,
            "exact": self.exact,
            "nonfinite": self.nonfinite,
        }


@dataclass(frozen=True)
class Fidelity:
    outputs: list[OutputFidelity]
    samples: int = 0
    accuracy_reference: float | None = None
    accuracy_candidate: float | None = None

    @property
    def worst_cosine(self) -> float:
        cosines = [o.cosine for o in self.outputs]
        return float("nan") if any(math.isnan(c) for c in cosines) else min(cosines, default=1.0)

    @property
    def worst_top1_agreement(self) -> float | None:
        return self.worst_top1_agreement_of(None)

    def worst_top1_agreement_of(self, names: Collection[str] | None) -> float | None:
        """Worst top-1 agreement over the named outputs (None: every classifier-shaped one)."""
        return self._worst("top1_agreement", names)

    def worst_mask_iou_of(self, names: Collection[str] | None) -> float | None:
        """Worst mask IoU over the named outputs (None: every probability output)."""
        return self._worst("mask_iou", names)

    def _worst(self, figure: str, names: Collection[str] | None) -> float | None:
        """The lowest ``figure`` of the named outputs that have one (None: no output has it)."""
        values = [
            value
            for o in self.outputs
            if (value := getattr(o, figure)) is not None and (names is None or o.name in names)
        ]
        return min(values) if values else None

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy_reference is None or self.accuracy_candidate is None:
            return None
        return self.accuracy_reference - self.accuracy_candidate

    @property
    def exact(self) -> bool:
        return all(o.exact for o in self.outputs)

    def to_dict(self) -> dict:
        return {
            "samples": self.samples,
            "exact": self.exact,
            "worst_cosine": finite_or_none(self.worst_cosine),
            "accuracy_reference": self.accuracy_reference,
            "accuracy_candidate": self.accuracy_candidate,
            "accuracy_drop": self.accuracy_drop,
            "outputs": [o.to_dict() for o in self.outputs],
        }


def finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


class _OutputStats:
    """Streaming sums for one output (see the module docstring for the formulas)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.max_abs = 0.0
        self.ref_sq = self.cand_sq = self.diff_sq = self.dot = 0.0
        self.agree = self.rows = 0
        self.nonfinite = 0  # elements where either model produced NaN/inf
        self.classifier = True
        self.probability = True  # every reference value so far lies in [0, 1]
        self.mask_inter = self.mask_union = 0

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        if ref.shape != cand.shape:
            raise ModelcrunchError(
                f"output '{self.name}': candidate shape {list(cand.shape)} "
                f"differs from reference {list(ref.shape)}"
            )
        r, c = ref.astype(np.float64, copy=False), cand.astype(np.float64, copy=False)
        d = c - r
        self.nonfinite += int(d.size - np.count_nonzero(np.isfinite(d)))
        if d.size and not self.nonfinite:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(d))))
        self.ref_sq += float(np.sum(r * r))
        self.cand_sq += float(np.sum(c * c))
        self.diff_sq += float(np.sum(d * d))
        self.dot += float(np.sum(r * c))
        if ref.ndim >= 2 and ref.shape[-1] > 1 and ref.dtype.kind == "f" and self.classifier:
            self.agree += int(np.sum(np.argmax(ref, axis=-1) == np.argmax(cand, axis=-1)))
            self.rows += int(np.prod(ref.shape[:-1]))
        else:
            self.classifier = False
        if self.probability:
            if ref.dtype.kind == "f" and ref.size and float(np.min(ref)) >= 0.0 and float(np.max(ref)) <= 1.0:
                r_mask, c_mask = ref > 0.5, cand > 0.5
                self.mask_inter += int(np.count_nonzero(r_mask & c_mask))
                self.mask_union += int(np.count_nonzero(r_mask | c_mask))
            else:
                self.probability = False

    def result(self) -> OutputFidelity:
        top1 = self.agree / self.rows if self.classifier and self.rows else None
        mask_iou = None
        if self.probability:
            mask_iou = self.mask_inter / self.mask_union if self.mask_union else 1.0
        if self.nonfinite:
            nan = math.nan
            return OutputFidelity(self.name, nan, nan, nan, nan, top1, self.nonfinite, mask_iou)
        identical = self.diff_sq == 0.0 and not math.isnan(self.max_abs)
        ref_norm, cand_norm = math.sqrt(self.ref_sq), math.sqrt(self.cand_sq)
        if identical:
            rel_l2, cosine, snr = 0.0, 1.0, math.inf
        else:
            rel_l2 = math.sqrt(self.diff_sq) / ref_norm if ref_norm > 0 else math.inf
            cosine = self.dot / (ref_norm * cand_norm) if ref_norm > 0 and cand_norm > 0 else 0.0
            snr = 10 * math.log10(self.ref_sq / self.diff_sq) if self.ref_sq > 0 else -math.inf
        return OutputFidelity(self.name, self.max_abs, rel_l2, cosine, snr, top1, mask_iou=mask_iou)


def _named(outputs: Outputs, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    if isinstance(outputs, Mapping):
        return {k: np.asarray(v) for k, v in outputs.items()}
    names = names or [f"output_{i}" for i in range(len(outputs))]
    return {n: np.asarray(v) for n, v in zip(names, outputs, strict=True)}


def _pair(
    ref: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Match outputs by name, else by position when the counts agree."""
    if set(ref) == set(cand):
        return [(n, ref[n], cand[n]) for n in ref]
    if len(ref) == len(cand):
        return [(n, r, c) for (n, r), c in zip(ref.items(), cand.values(), strict=True)]
    raise ModelcrunchError(f"the models have different outputs: {sorted(ref)} vs {sorted(cand)}")


def compare_outputs(reference: Outputs, candidate: Outputs) -> Fidelity:
    """Fidelity of one set of outputs (dict by name, or lists in the same order)."""
    pairs = _pair(_named(reference), _named(candidate))
    stats = []
    for name, r, c in pairs:
        s = _OutputStats(name)
        s.update(r, c)
        stats.append(s.result())
    samples = int(pairs[0][1].shape[0]) if pairs and pairs[0][1].ndim else 1
    return Fidelity(stats, samples)


# --------------------------------------------------------------------------------------------
# Running models over feeds
# --------------------------------------------------------------------------------------------


def as_session(model: ModelOrSession, *, provider: str = "cpu", threads: int | None = None) -> Runner:
    return model if isinstance(model, Runner) else make_session(model, provider=provider, threads=threads)


def _predictions(outputs: dict[str, np.ndarray], output: str | None) -> np.ndarray:
    if output is not None and output not in outputs:
        raise ModelcrunchError(f"--output '{output}': no such output (outputs: {', '.join(outputs)})")
    logits = outputs[output] if output is not None else next(iter(outputs.values()))
    if logits.ndim == 0 or logits.shape[-1] < 2:
        return logits.reshape(-1)
    return np.argmax(logits, axis=-1).reshape(-1)


@dataclass(frozen=True)
class Evaluation:
    """Accuracies of every model (None without labels) and fidelity of each model after the first."""

    accuracies: list[float | None]
    fidelity: list[Fidelity]
    samples: int


def evaluate(
    models: Sequence[ModelOrSession],
    feeds: Iterable[Mapping[str, np.ndarray]],
    *,
    labels: np.ndarray | None = None,
    output: str | None = None,
    provider: str = "cpu",
    threads: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    total: int | None = None,
) -> Evaluation:
    """Run every model on every feed once; compare each model after the first with the first."""
    sessions = [as_session(m, provider=provider, threads=threads) for m in models]
    names = [o.name for o in sessions[0].get_outputs()]
    stats = [[_OutputStats(n) for n in names] for _ in sessions[1:]]
    predictions: list[list[np.ndarray]] = [[] for _ in sessions]
    samples = 0
    for step, feed in enumerate(feeds, 1):
        results = [
            dict(zip([o.name for o in s.get_outputs()], run_checked(s, feed, name=f"model {k}"), strict=True))
            for k, s in enumerate(sessions)
        ]
        samples += int(next(iter(feed.values())).shape[0]) if feed else 1
        for k, result in enumerate(results[1:]):
            for s, (_, r, c) in zip(stats[k], _pair(results[0], result), strict=True):
                s.update(r, c)
        if labels is not None:
            for k, result in enumerate(results):
                predictions[k].append(_predictions(result, output))
        if on_progress is not None:
            on_progress("fidelity", step, total or step)
    accuracies: list[float | None] = [None] * len(sessions)
    if labels is not None:
        truth = np.asarray(labels).reshape(-1)
        for k, parts in enumerate(predictions):
            pred = np.concatenate(parts) if parts else np.empty(0)
            if pred.shape[0] != truth.shape[0]:
                raise ModelcrunchError(
                    f"labels: {truth.shape[0]} labels for {pred.shape[0]} predictions "
                    "(one label per sample is needed)"
                )
            accuracies[k] = float(np.mean(pred == truth)) if truth.size else None
    fidelity = [
        Fidelity([s.result() for s in model_stats], samples, accuracies[0], accuracies[k + 1])
        for k, model_stats in enumerate(stats)
    ]
    return Evaluation(accuracies, fidelity, samples)


def measure_fidelity(
    reference: ModelOrSession,
    candidate: ModelOrSession,
    feeds: Iterable[Mapping[str, np.ndarray]],
    *,
    labels: np.ndarray | None = None,
    provider: str = "cpu",
    output: str | None = None,
    threads: int | None = None,
) -> Fidelity:
    """Fidelity of ``candidate`` against ``reference`` over all ``feeds`` (and accuracies with labels)."""
    return evaluate(
        [reference, candidate], feeds, labels=labels, output=output, provider=provider, threads=threads
    ).fidelity[0]
