"""Calibration and evaluation inputs: the shared data format, or synthesized feeds (loudly).

``FeedReader`` is ONNX Runtime's ``CalibrationDataReader`` over a list of feeds; ``load_feeds``
reads a dataset (``modelcrunch.data.load_dataset``) or, without one, synthesizes random inputs
(``modelcrunch.runtime.feeds.synthesize_feeds``) and marks them synthetic so the report can say
that accuracy is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

logger = logging.getLogger(__name__)

SYNTHETIC_SAMPLES = 16


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


@dataclass(frozen=True)
class Feeds:
    samples: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    synthetic: bool
    source: str

    def __len__(self) -> int:
        return len(self.samples)


def load_feeds(
    path: Path | None, model_path: Path, *, limit: int, provider: str = "cpu", shapes: Mapping | None = None
) -> Feeds:
    """Up to ``limit`` one-sample feeds from ``path``, or synthesized ones when ``path`` is None."""
    from modelcrunch.runtime.session import make_session

    session = make_session(model_path, provider=provider, optimization="basic")
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

    dataset = load_dataset(path, input_names=names)
    samples = [{k: v for k, v in sample.items() if k in names} for sample in dataset.samples[:limit]]
    labels = None
    if dataset.labels:
        key = "label" if "label" in dataset.labels else sorted(dataset.labels)[0]
        labels = np.asarray(dataset.labels[key])[: len(samples)]
    return Feeds(samples, labels, False, str(path))
