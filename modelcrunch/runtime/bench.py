"""Latency, throughput, memory and size of one or several models, measured interleaved.

Protocol:

1. For each model in order: create its session (timed; memory probe started), run ``warmup``
   iterations, close the memory probe (see :mod:`modelcrunch.runtime.memory`).
2. Timed runs, interleaved round-robin with the order reversed every other round (A B, B A, A B,
   …) so that drift (thermal, frequency, other load) and order effects fall on every model alike:
   ``runs`` rounds, or as many rounds as fit in ``time_budget_s`` (at least ``min_runs``). Each
   run is one ``session.run`` timed with ``perf_counter_ns``; feeds cycle through ``feeds``.
3. With several models, sessions are created with spinning off (``session.intra_op`` /
   ``inter_op.allow_spinning = 0``) so an idle session's threads do not steal cores from the
   one being timed.

Per model: min, p50, p90, p99, mean and stdev latency (ms); throughput = items per run (the
leading dim of the first input) / p50 latency (the median, robust to a few stalled runs);
session-creation time; memory; size on disk.
Ratios to the first model (the baseline): latency p50, throughput, size, memory.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper

from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import model_size_bytes
from modelcrunch.runtime.memory import MemoryProbe
from modelcrunch.runtime.session import make_session, model_path, run_checked

logger = logging.getLogger(__name__)

Feed = Mapping[str, np.ndarray]
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Latency:
    """Latency statistics in milliseconds over ``runs`` timed runs."""

    runs: int
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> Latency:
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        stdev = statistics.stdev(ms.tolist()) if len(ms) > 1 else 0.0
        return cls(len(ms), float(ms.min()), float(p50), float(p90), float(p99), float(ms.mean()), stdev)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ModelBench:
    name: str
    path: str | None
    providers: list[str]
    batch: int
    latency: Latency
    throughput: float  # items / s
    session_create_ms: float
    memory_bytes: int | None
    size_bytes: int

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "providers": self.providers,
            "batch": self.batch,
            "latency_ms": self.latency.to_dict(),
            "throughput_items_per_s": self.throughput,
            "session_create_ms": self.session_create_ms,
            "memory_bytes": self.memory_bytes,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class Ratios:
    """A model's figures divided by the baseline's (None where either is unknown)."""

    latency: float
    throughput: float
    size: float
    memory: float | None
    latency_ci: tuple[float, float] | None = None  # 95 % bootstrap interval of the latency ratio

    def to_dict(self) -> dict:
        return {**self.__dict__, "latency_ci": None if self.latency_ci is None else list(self.latency_ci)}


#: Bootstrap resamples of the paired rounds for the latency ratio's confidence interval.
BOOTSTRAP = 400


def ratio_interval(
    base_ns: Sequence[int], model_ns: Sequence[int], *, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """A ``level`` confidence interval of median(model) / median(base) over interleaved rounds.

    Round ``i`` timed both models back to back, so rounds are resampled in pairs (the machine's
    load at that moment hits both): percentile bootstrap over ``BOOTSTRAP`` resamples.
    """
    n = min(len(base_ns), len(model_ns))
    if n < 5:
        return None
    base = np.asarray(base_ns[:n], dtype=np.float64)
    model = np.asarray(model_ns[:n], dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))
    ratios = np.median(model[picks], axis=1) / np.maximum(np.median(base[picks], axis=1), 1e-9)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class BenchResult:
    models: list[ModelBench]
    ratios: list[Ratios]  # one per model, the baseline's own being all 1.0
    provider: str
    threads: int | None
    warmup: int
    interleaved: bool
    memory_method: str
    extra: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return self.models[0].batch

    def to_dict(self) -> dict:
        return {
            "batch": self.batch,
            "provider": self.provider,
            "threads": self.threads,
            "warmup": self.warmup,
            "interleaved": self.interleaved,
            "memory_method": self.memory_method,
            "models": [
                {**m.to_dict(), "ratios": r.to_dict()} for m, r in zip(self.models, self.ratios, strict=True)
            ],
        }


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def _label(model: str | os.PathLike | ir.Model, index: int) -> tuple[str, str | None]:
    if isinstance(model, ir.Model):
        return (model.graph.name or f"model{index}"), None
    return os.fspath(model), os.fspath(model)


def _prime_runtime() -> None:
    """Run a one-node model once so ONNX Runtime's one-time set-up (environment, kernel registries,
    lazily loaded code) is not charged to the first model's memory and creation time."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "prime", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.zeros(1, np.float32)})


def benchmark(
    models: Sequence[str | os.PathLike | ir.Model],
    feeds: Feed | Sequence[Feed],
    *,
    provider: str = "cpu",
    threads: int | None = None,
    warmup: int = 10,
    runs: int = 100,
    time_budget_s: float | None = None,
    min_runs: int = 5,
    optimization: str = "all",
    inter_threads: int | None = None,
    parallel: bool = False,
    spinning: bool | None = None,
    names: Sequence[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> BenchResult:
    """Measure ``models`` on ``feeds`` (one feed dict, or several used in turn); see the module docstring.

    ``spinning``: None = on for one model, off for several.
    """
    if not models:
        raise ModelcrunchError("benchmark: no models given")
    if runs < 1 or warmup < 0 or (time_budget_s is not None and time_budget_s <= 0):
        raise ModelcrunchError("benchmark: runs must be >= 1, warmup >= 0 and the duration > 0")
    feed_list = [dict(feeds)] if isinstance(feeds, Mapping) else [dict(f) for f in feeds]
    if not feed_list or not feed_list[0]:
        raise ModelcrunchError("benchmark: no input feeds")
    items = int(next(iter(feed_list[0].values())).shape[0]) if next(iter(feed_list[0].values())).ndim else 1
    spin = len(models) == 1 if spinning is None else spinning

    _prime_runtime()
    sessions, create_ms, memory, sizes, method = [], [], [], [], "unavailable"
    for index, model in enumerate(models):
        with MemoryProbe() as probe:
            start = time.perf_counter_ns()
            session = make_session(
                model,
                provider=provider,
                threads=threads,
                optimization=optimization,
                spinning=spin,
                inter_threads=inter_threads,
                parallel=parallel,
            )
            create_ms.append((time.perf_counter_ns() - start) / 1e6)
            for i in range(max(warmup, 1)):  # at least one checked run before timing
                run_checked(session, feed_list[i % len(feed_list)], name=_label(model, index)[0])
        sessions.append(session)
        memory.append(probe.growth)
        method = probe.method
        if isinstance(model, ir.Model):
            with model_path(model) as path:
                sizes.append(model_size_bytes(path))
        else:
            sizes.append(model_size_bytes(model))
        if on_progress is not None:
            on_progress("sessions", index + 1, len(models))

    timings: list[list[int]] = [[] for _ in sessions]
    order = list(range(len(sessions)))
    deadline = None if time_budget_s is None else time.perf_counter() + time_budget_s
    total = runs if deadline is None else 100
    rounds, started = 0, time.perf_counter()
    while True:
        if deadline is None:
            if rounds >= runs:
                break
        elif rounds >= min_runs and time.perf_counter() >= deadline:
            break
        feed = feed_list[rounds % len(feed_list)]
        for k in order if rounds % 2 == 0 else reversed(order):
            start = time.perf_counter_ns()
            sessions[k].run(None, feed)
            timings[k].append(time.perf_counter_ns() - start)
        rounds += 1
        if on_progress is not None:
            done = (
                rounds
                if deadline is None
                else min(100, int(100 * (time.perf_counter() - started) / time_budget_s))
            )
            on_progress("measuring", done, total)

    results = []
    for index, model in enumerate(models):
        latency = Latency.from_ns(timings[index])
        name, path = _label(model, index)
        results.append(
            ModelBench(
                name=names[index] if names else name,
                path=path,
                providers=list(sessions[index].get_providers()),
                batch=items,
                latency=latency,
                throughput=items / (latency.p50_ms / 1e3) if latency.p50_ms > 0 else math.inf,
                session_create_ms=create_ms[index],
                memory_bytes=memory[index],
                size_bytes=sizes[index],
            )
        )
    base = results[0]
    ratios = [
        Ratios(
            latency=m.latency.p50_ms / base.latency.p50_ms if base.latency.p50_ms > 0 else 1.0,
            throughput=m.throughput / base.throughput if base.throughput > 0 else 1.0,
            size=m.size_bytes / base.size_bytes,
            memory=_ratio(m.memory_bytes, base.memory_bytes),
            latency_ci=None if index == 0 else ratio_interval(timings[0], timings[index]),
        )
        for index, m in enumerate(results)
    ]
    return BenchResult(results, ratios, provider, threads, warmup, len(models) > 1, method)
