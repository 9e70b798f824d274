"""TEMPORARY stand-in for ``modelcrunch.runtime.judge`` (issue #16), to be deleted when it lands.

Implements only the part of the Judge API the search uses (``Judge(reference, held_out, targets)``,
``judge(candidate) -> Verdict`` with ``passed`` / ``quality`` / ``margin`` / ``to_dict``) over
``runtime.fidelity.measure_fidelity``: quality is the worst output cosine, lowered by the accuracy
drop (in points / 100) where the data has labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelcrunch.data import Dataset
from modelcrunch.runtime.fidelity import measure_fidelity


@dataclass(frozen=True)
class Targets:
    min_cosine: float = 0.99
    max_drop: float | None = None  # accuracy points


@dataclass(frozen=True)
class Verdict:
    passed: bool
    quality: float
    margin: float
    samples: int
    cosine: float
    accuracy_drop: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _labels(data: Dataset):  # noqa: ANN202
    for key in ("label", "labels", "target", "y"):
        if key in data.labels:
            return data.labels[key]
    return None


class Judge:
    def __init__(
        self, reference, held_out: Dataset, targets: Targets | None = None, *, threads=None, provider="cpu"
    ) -> None:  # noqa: ANN001
        self.reference, self.held_out = reference, held_out
        self.targets = targets or Targets()
        self.threads, self.provider = threads, provider

    def __call__(self, candidate) -> Verdict:  # noqa: ANN001
        labels = _labels(self.held_out)
        fid = measure_fidelity(
            self.reference, candidate, list(self.held_out.batches(32)), labels=labels, threads=self.threads
        )
        cosine, drop = fid.worst_cosine, fid.accuracy_drop
        quality = cosine - max(drop or 0.0, 0.0) / 100.0
        margin = cosine - self.targets.min_cosine
        if self.targets.max_drop is not None and drop is not None:
            margin = min(margin, (self.targets.max_drop - drop) / 100.0)
        return Verdict(margin >= 0, quality, margin, fid.samples, cosine, drop)
