"""Calibration and evaluation inputs: the shared data format, or synthesized feeds (loudly).

``FeedReader`` is ONNX Runtime's ``CalibrationDataReader`` over a list of feeds; ``load_feeds``
reads a dataset (``modelcrunch.data.load_dataset``) or, without one, synthesizes random inputs
(``modelcrunch.runtime.feeds.synthesize_feeds``) and marks them synthetic so the report can say
that accuracy is unknown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

logger = logging.getLogger(__name__)

SYNTHETIC_SAMPLES = 16
#: Samples stacked into one run when measuring fidelity (the model's batch axis permitting) ...
STACK_SAMPLES = 32
#: ... as long as the stacked inputs stay under this many bytes (activation memory grows with them),
#: and one sample runs in under this many seconds: stacking saves the per-run overhead, and slower
#: samples gain nothing from it (magika's 3.4 ms samples ran 1.2-1.4x slower stacked 32, PP-OCR
#: rec's 1.5x; the sample transformer's 0.5 ms ones 1.6x faster).
STACK_INPUT_BYTES = 2 << 20
STACK_BELOW_S = 0.002


class FeedReader(CalibrationDataReader):
    """Feeds one sample at a time to ORT's calibrators; rewindable for repeated calibrations."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self._feeds)


def feed_key(feed: Mapping[str, object]) -> tuple:
    """A feed's identity: its arrays' (a copied dict of the same arrays is the same feed)."""
    return tuple((name, id(value)) for name, value in feed.items())


class OutputRecord:
    """The float model's outputs on calibration samples, as the calibration run computed them, for
    the fidelity measurement's reference to reuse (``pipeline._Judge``) where the evaluation
    samples are the calibration samples. Up to ``budget`` bytes; by the sample's identity
    (``feed_key``; the record keeps the sample alive); ``take`` hands each over once."""

    def __init__(self, names: Sequence[str], budget: int) -> None:
        self.names = list(names)
        self._budget = budget
        self._bytes = 0
        self._kept: dict[tuple, tuple[Mapping, list[np.ndarray]]] = {}

    def add(self, sample: Mapping, outputs: Mapping[str, object]) -> None:
        values = [outputs.get(name) for name in self.names]
        key = feed_key(sample)
        if key in self._kept or not all(isinstance(v, np.ndarray) for v in values):
            return
        size = sum(v.nbytes for v in values)
        if self._bytes + size <= self._budget:
            self._kept[key] = (sample, values)
            self._bytes += size

    def take(self, samples: Sequence[Mapping]) -> list[list[np.ndarray]] | None:
        """The outputs of every one of ``samples``, or None (and nothing taken) if one is missing."""
        keys = [feed_key(sample) for sample in samples]
        if not all(key in self._kept for key in keys):
            return None
        outputs = [self._kept.pop(key)[1] for key in keys]
        self._bytes -= sum(v.nbytes for values in outputs for v in values)
        return outputs

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)


@dataclass(frozen=True)
class Feeds:
    samples: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    synthetic: bool
    source: str

    def __len__(self) -> int:
        return len(self.samples)

    def head(self, count: int) -> Feeds:
        """The first ``count`` samples (and their labels)."""
        if count >= len(self.samples):
            return self
        labels = None if self.labels is None else self.labels[:count]
        return Feeds(self.samples[:count], labels, self.synthetic, self.source)

    def split(self, holdout: float, seed: int = 0) -> tuple[Feeds, Feeds]:
        """(calibration, held out): the seeded split of ``modelcrunch.data.Dataset.split``."""
        from modelcrunch.data import Dataset

        labels = {} if self.labels is None else {"label": np.asarray(self.labels)}
        kept, held = Dataset(self.samples, labels).split(holdout, seed)

        def feeds(part: Dataset) -> Feeds:
            return Feeds(part.samples, part.labels.get("label"), self.synthetic, self.source)

        return feeds(kept), feeds(held)


def load_feeds(
    path: Path | None,
    session,
    *,
    limit: int,
    shapes: Mapping | None = None,  # noqa: ANN001
) -> Feeds:
    """Up to ``limit`` one-sample feeds from ``path``, or synthesized ones when ``path`` is None.

    ``session``: the original model's ONNX Runtime session (input names, types and shapes).
    """
    names = [i.name for i in session.get_inputs()]
    if path is None:
        from modelcrunch.runtime.feeds import synthesize_feeds

        samples = [
            {
                k: np.asarray(v) for k, v in synthesize_feeds(session, shapes=shapes, seed=seed).items()
            }  # 0-d bools
            for seed in range(min(limit, SYNTHETIC_SAMPLES))
        ]
        return Feeds(samples, None, True, "synthesized")
    from modelcrunch.data import load_dataset
    from modelcrunch.runtime.feeds import check_dataset

    dataset = load_dataset(path, input_names=names)
    samples = [{k: v for k, v in sample.items() if k in names} for sample in dataset.samples[:limit]]
    check_dataset(session, samples, str(path))
    labels = None
    if dataset.labels:
        key = "label" if "label" in dataset.labels else sorted(dataset.labels)[0]
        labels = np.asarray(dataset.labels[key])[: len(samples)]
    return Feeds(samples, labels, False, str(path))


def stack(samples: Sequence[dict[str, np.ndarray]], size: int) -> list[dict[str, np.ndarray]]:
    """Consecutive one-sample feeds concatenated along axis 0, ``size`` samples per feed."""
    if size <= 1:
        return list(samples)
    return [
        {name: np.concatenate([s[name] for s in samples[i : i + size]]) for name in samples[i]}
        for i in range(0, len(samples), size)
    ]


def stacked_parts(
    samples: Sequence[dict[str, np.ndarray]], size: int
) -> tuple[list[dict[str, np.ndarray]], dict[tuple, Sequence[dict[str, np.ndarray]]]]:
    """``stack(samples, size)``, and the samples stacked into each of its feeds, by ``feed_key``."""
    feeds = stack(samples, size)
    return feeds, {feed_key(f): samples[i * size : (i + 1) * size] for i, f in enumerate(feeds)}


def batched(session, samples: Sequence[dict[str, np.ndarray]]) -> int:  # noqa: ANN001
    """How many ``samples`` to stack per run of ``session`` (fidelity measurement): up to 32, or 1.

    Stacking pays for fast samples (one run per 32 samples instead of 32 runs, same outputs per
    sample; timed here on the first sample against ``STACK_BELOW_S``) but is only safe where every
    input has a free leading axis, all samples agree on the other axes, and a stacked run gives
    outputs whose leading axis is the stack (a model may reshape to a fixed batch of 1); checked
    here by one trial run. Memory: the stacked inputs stay under ``STACK_INPUT_BYTES``, so large
    images are still run one at a time.
    """
    if len(samples) < 2:
        return 1
    per_sample = sum(v.nbytes for v in samples[0].values())
    size = min(STACK_SAMPLES, len(samples), STACK_INPUT_BYTES // max(per_sample, 1))
    if size < 2:
        return 1
    for spec in session.get_inputs():
        if not spec.shape or isinstance(spec.shape[0], int):
            return 1
        shapes = {s[spec.name].shape for s in samples if spec.name in s}
        if len(shapes) != 1 or not next(iter(shapes)) or next(iter(shapes))[0] != 1:
            return 1
    trial = stack(samples[:2], 2)[0]
    try:
        session.run(None, samples[0])  # the first run allocates
        started = time.perf_counter()
        session.run(None, samples[0])
        if time.perf_counter() - started >= STACK_BELOW_S:
            return 1
        outputs = session.run(None, trial)
    except Exception as exc:  # noqa: BLE001 - any failure means "measure one at a time"
        logger.info("stacked samples do not run (%s); measuring one sample at a time", exc)
        return 1
    return size if all(np.ndim(o) and np.shape(o)[0] == 2 for o in outputs) else 1
