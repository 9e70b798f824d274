"""Measure one written candidate: quality on held-out data (the judge), latency interleaved
against the original on the target provider, file size, and the session's memory.

Only measured figures leave this module; nothing here predicts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from modelcrunch.data import Dataset
from modelcrunch.io import model_size_bytes
from modelcrunch.runtime.bench import benchmark

OBJECTIVES = ("latency", "size", "ram")


@dataclass(frozen=True)
class Figures:
    quality: float  # the judge's normalised figure, 1.0 = identical
    passed: bool  # the judge's verdict at the quality target
    margin: float
    latency_ratio: float  # candidate / original p50, interleaved
    latency_ms: float
    size_bytes: int
    ram_bytes: int | None
    verdict: dict

    def objective(self, name: str) -> float:
        if name == "latency":
            return self.latency_ratio
        if name == "size":
            return float(self.size_bytes)
        return float(self.ram_bytes) if self.ram_bytes is not None else math.inf

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Figures:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _finite(value: float, default: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else default


def _clean(value: object) -> object:
    """JSON-safe: non-finite floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class Measurer:
    def __init__(
        self,
        reference: Path,
        judge,
        held_out: Dataset,
        *,
        threads: int | None,
        provider: str,
        bench_seconds: float,
    ) -> None:  # noqa: ANN001
        self.reference, self.judge = reference, judge
        self.feed = held_out.samples[0]
        self.threads, self.provider, self.bench_seconds = threads, provider, bench_seconds

    def __call__(self, candidate: Path) -> Figures:
        verdict = self.judge(candidate)
        itself = Path(candidate).resolve() == Path(self.reference).resolve()
        bench = benchmark(
            [self.reference] if itself else [self.reference, candidate],
            self.feed,
            provider=self.provider,
            threads=self.threads,
            time_budget_s=self.bench_seconds,
            warmup=5,
        )
        model = bench.models[-1]
        return Figures(
            quality=_finite(verdict.quality, 0.0),
            passed=bool(verdict.passed),
            margin=_finite(verdict.margin, 1.0 if verdict.passed else -1.0),
            latency_ratio=1.0 if itself else float(bench.ratios[1].latency),
            latency_ms=float(model.latency.p50_ms),
            size_bytes=model_size_bytes(candidate),
            ram_bytes=model.memory_bytes,
            verdict=_clean(verdict.to_dict()),
        )
