"""CI gates on a bench report: limits on ratios to the baseline and on fidelity.

Every candidate (each model after the first) is checked against every limit given; with a
batch sweep the ratio gates are checked at every batch size. The latency gate reads the 95 %
bootstrap interval of the interleaved ratio (``bench.ratio_interval``): it fails only when the
whole interval lies above the limit, and the message states the interval. A value that is NaN or infinite
fails its gate (a NaN cosine must never pass ``--min-cosine``). ``enforce`` raises GateFailed
(exit 3) naming each failed gate, its value and its limit. ``task_gates`` turns the quality judge's
gated task figures (detection F1, mask IoU, string and decision agreement; ``runtime/judge.py``)
into gates of the same form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from modelcrunch.errors import GateFailed, ModelcrunchError
from modelcrunch.runtime.bench import BenchResult
from modelcrunch.runtime.fidelity import Fidelity
from modelcrunch.runtime.judge import Verdict


@dataclass(frozen=True)
class GateLimits:
    max_latency_ratio: float | None = None
    max_memory_ratio: float | None = None
    max_size_ratio: float | None = None
    min_cosine: float | None = None
    min_top1_agreement: float | None = None
    max_accuracy_drop: float | None = None

    def given(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    @property
    def needs_fidelity(self) -> bool:
        return any(g in self.given() for g in ("min_cosine", "min_top1_agreement", "max_accuracy_drop"))


@dataclass(frozen=True)
class GateResult:
    gate: str  # e.g. "latency ratio"
    model: str
    value: float | None
    limit: float
    passed: bool
    upper: bool  # True: value must be <= limit
    batch: int | None = None

    @property
    def message(self) -> str:
        op = ">" if self.upper else "<"
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        where = f"model {self.model}" + (f", batch {self.batch}" if self.batch is not None else "")
        return f"gate failed: {self.gate} {value} {op} {self.limit:g} ({where})"

    def to_dict(self) -> dict:
        value = self.value if self.value is not None and math.isfinite(self.value) else None
        return {
            "gate": self.gate,
            "model": self.model,
            "batch": self.batch,
            "value": value,
            "limit": self.limit,
            "passed": self.passed,
        }


def _check(
    gate: str, model: str, value: float | None, limit: float, upper: bool, batch: int | None = None
) -> GateResult:
    ok = value is not None and math.isfinite(value) and (value <= limit if upper else value >= limit)
    return GateResult(gate, model, value, limit, ok, upper, batch)


def _latency_check(
    model: str, ratio: float, interval: tuple[float, float], limit: float, batch: int | None
) -> GateResult:
    """The latency gate respects noise: it fails only when the whole 95 % interval of the
    interleaved ratio lies above the limit (a median alone flips on an identical model)."""
    low, high = interval
    passed = math.isfinite(low) and low <= limit
    label = f"latency ratio (95 % interval {low:.3f}-{high:.3f})"
    return GateResult(label, model, ratio, limit, passed, True, batch)


RATIO_GATES: dict[str, tuple[str, Callable]] = {
    "max_latency_ratio": ("latency ratio", lambda r: r.latency),
    "max_memory_ratio": ("memory ratio", lambda r: r.memory),
    "max_size_ratio": ("size ratio", lambda r: r.size),
}


def check_gates(
    limits: GateLimits,
    results: Sequence[BenchResult],
    fidelity: Sequence[Fidelity],
    model_names: Sequence[str],
) -> list[GateResult]:
    """Every gate for every candidate; ``fidelity[k]`` belongs to ``model_names[k + 1]``."""
    given = limits.given()
    if given and len(model_names) < 2:
        raise ModelcrunchError(
            f"--{given[0].replace('_', '-')} compares models: give a baseline and a candidate"
        )
    gates: list[GateResult] = []
    sweep = len(results) > 1
    for key, (label, pick) in RATIO_GATES.items():
        limit = getattr(limits, key)
        if limit is None:
            continue
        for result in results:
            for name, ratios in zip(model_names[1:], result.ratios[1:], strict=True):
                batch = result.batch if sweep else None
                if key == "max_latency_ratio" and ratios.latency_ci is not None:
                    gates.append(_latency_check(name, ratios.latency, ratios.latency_ci, limit, batch))
                else:
                    gates.append(_check(label, name, pick(ratios), limit, True, batch))
    for name, fid in zip(model_names[1:], fidelity, strict=True):
        if limits.min_cosine is not None:
            gates.append(_check("cosine", name, fid.worst_cosine, limits.min_cosine, False))
        if limits.min_top1_agreement is not None:
            if fid.worst_top1_agreement is None:
                raise ModelcrunchError(
                    "--min-top1-agreement: no output is classifier-shaped ([N, C] with C > 1)"
                )
            gates.append(
                _check("top-1 agreement", name, fid.worst_top1_agreement, limits.min_top1_agreement, False)
            )
        if limits.max_accuracy_drop is not None:
            if fid.accuracy_drop is None:
                raise ModelcrunchError(
                    "--max-accuracy-drop needs labels: pass --inputs DATA with a label array"
                )
            gates.append(_check("accuracy drop", name, fid.accuracy_drop, limits.max_accuracy_drop, True))
    return gates


def task_gates(verdicts: Sequence[Verdict], model_names: Sequence[str]) -> list[GateResult]:
    """One gate per gated task figure of each candidate's verdict (``model_names[k + 1]``)."""
    gates = []
    for name, verdict in zip(model_names[1:], verdicts, strict=True):
        for figure in verdict.gated:
            label = f"{figure.output}: {figure.figure}" if figure.output != "*" else figure.figure
            value = figure.value if math.isfinite(figure.value) else None
            gates.append(GateResult(label, name, value, figure.target, figure.passed, figure.upper))
    return gates


def enforce(gates: Sequence[GateResult]) -> None:
    """Raise GateFailed naming every failed gate (one line)."""
    failed = [g.message for g in gates if not g.passed]
    if failed:
        raise GateFailed("; ".join(failed))
