"""The result of a search: every measured point, the Pareto front, and the chosen point.

A point is *dominated* when another is at least as good in quality and every objective and
better in one. It is *infeasible* when it misses the quality target or a constraint
(``--max-latency-ratio``, ``--max-size``). The chosen point (``best.onnx``) is the feasible one with
the lowest first objective (ties: the higher quality); with no feasible point there is none, and
:meth:`Frontier.nearest` lists the points closest to meeting the constraints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelcrunch.search.measure import Figures
from modelcrunch.search.store import Record


@dataclass(frozen=True)
class Constraints:
    max_latency_ratio: float | None = None
    max_size_mb: float | None = None
    min_cosine: float | None = None
    max_drop: float | None = None

    def violation(self, f: Figures) -> float:
        """0 when ``f`` meets everything; otherwise the summed relative shortfalls."""
        out = max(-f.margin, 0.0)
        if self.max_latency_ratio is not None:
            out += max(f.latency_ratio / self.max_latency_ratio - 1.0, 0.0)
        if self.max_size_mb is not None:
            out += max(f.size_bytes / 1e6 / self.max_size_mb - 1.0, 0.0)
        return out

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Point:
    number: int
    key: str
    settings: dict  # the knobs moved from the original
    summary: str
    figures: Figures
    phase: str
    model: str | None
    status: str  # "frontier" | "dominated" | "infeasible"
    on_front: bool

    def to_dict(self) -> dict:
        return {
            "trial": self.number,
            "key": self.key,
            "status": self.status,
            "on_front": self.on_front,
            "phase": self.phase,
            "summary": self.summary,
            "settings": self.settings,
            "model": self.model,
            **{k: v for k, v in self.figures.to_dict().items() if k != "verdict"},
            "verdict": self.figures.verdict,
        }


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Both minimised."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Frontier:
    model: str
    objectives: tuple[str, ...]
    constraints: Constraints
    points: tuple[Point, ...]
    best: Point | None
    reason: str
    original: Figures | None
    space_size: int
    space: str
    budget_s: float
    elapsed_s: float
    measured_now: int  # candidates measured by this run (not read from the store)
    out_dir: str | None = None
    failures: tuple[dict, ...] = field(default_factory=tuple)

    @classmethod
    def from_records(
        cls, records: Sequence[Record], objectives: Sequence[str], constraints: Constraints, **kw
    ) -> Frontier:
        vectors = {
            r.number: [-r.figures.quality, *(r.figures.objective(o) for o in objectives)] for r in records
        }
        points = []
        for r in records:
            on_front = not any(dominates(vectors[o.number], vectors[r.number]) for o in records if o is not r)
            feasible = constraints.violation(r.figures) == 0
            status = "infeasible" if not feasible else "frontier" if on_front else "dominated"
            points.append(
                Point(
                    r.number,
                    r.key,
                    r.settings.changed(),
                    r.settings.summary(),
                    r.figures,
                    r.phase,
                    r.model,
                    status,
                    on_front,
                )
            )
        feasible = [p for p in points if p.status != "infeasible"]
        best, reason = None, "no point meets the constraints"
        if feasible:
            best = min(feasible, key=lambda p: (p.figures.objective(objectives[0]), -p.figures.quality))
            reason = f"lowest {objectives[0]} among the points that meet the quality target and constraints"
        original = next((r.figures for r in records if not r.settings.changed()), None)
        return cls(
            objectives=tuple(objectives),
            constraints=constraints,
            points=tuple(points),
            best=best,
            reason=reason,
            original=original,
            **kw,
        )

    @property
    def front(self) -> list[Point]:
        return sorted(
            (p for p in self.points if p.on_front), key=lambda p: p.figures.objective(self.objectives[0])
        )

    def nearest(self, n: int = 3) -> list[Point]:
        return sorted(self.points, key=lambda p: self.constraints.violation(p.figures))[:n]

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "objectives": list(self.objectives),
            "constraints": self.constraints.to_dict(),
            "search_space": {"size": self.space_size, "knobs": self.space},
            "budget_s": self.budget_s if math.isfinite(self.budget_s) else None,
            "elapsed_s": self.elapsed_s,
            "measured_now": self.measured_now,
            "out_dir": self.out_dir,
            "best": self.best.to_dict() if self.best else None,
            "best_reason": self.reason,
            "original": self.original.to_dict() if self.original else None,
            "front": [p.to_dict() for p in self.front],
            "points": [p.to_dict() for p in self.points],
            "failures": list(self.failures),
            "nearest": [p.to_dict() for p in self.nearest()] if self.best is None else [],
        }
