"""``modelcrunch.optimize``: the measured Pareto search as one library call.

Reads the model and the calibration data once, splits off a seeded held-out share (quality is
judged only on it; calibration and repair see only the rest), opens the store, then spends the
budget (``strategy``): the original, the sensitivity tables, the greedy path, the sampler — with
``workers`` local processes sharing the study for the sampler. Every candidate is written with
``io.save_model`` (checker + ONNX Runtime) and measured before it counts. The fastest feasible
points are then re-timed together in one interleaved run (``_decide``). Finally writes
``pareto.json``, ``candidates.csv``, ``best.onnx`` and ``report.html``, keeps the front's models and
removes the dominated ones. Raises :class:`ConstraintsUnmet` (exit 3) when no point is feasible,
after writing everything.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from modelcrunch.data import HOLDOUT, load_dataset
from modelcrunch.errors import GateFailed, ModelcrunchError
from modelcrunch.io import load_model, save_model
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.judge import Judge, targets_from
from modelcrunch.search import output, strategy
from modelcrunch.search.build import build
from modelcrunch.search.frontier import Constraints, Frontier
from modelcrunch.search.measure import OBJECTIVES, Figures, Measurer
from modelcrunch.search.space import KINDS, SearchSpace, Settings, discover
from modelcrunch.search.store import Record, Store, storage_url

logger = logging.getLogger(__name__)

Event = Callable[[Frontier, str], None]
#: Shares of the time budget after which the sensitivity tables, then the greedy path, give way
#: (the original is always measured first; the sampler gets what is left).
SENSITIVITY_SHARE = 0.5
GREEDY_SHARE = 0.8


class ConstraintsUnmet(GateFailed):
    """No measured point meets the constraints; ``frontier`` holds them all (exit 3)."""

    def __init__(self, message: str, frontier: Frontier) -> None:
        super().__init__(message)
        self.frontier = frontier


@dataclass(frozen=True)
class Job:
    """Everything a worker process needs to join the search (picklable)."""

    model: Path
    calibration: Path
    out_dir: Path
    objectives: tuple[str, ...]
    constraints: Constraints
    storage: str
    study: str
    threads: int | None
    provider: str
    seed: int
    bench_seconds: float
    knobs: tuple[str, ...] = KINDS
    worker: int = 0  # 0: the main process; extra workers seed their sampler apart
    holdout: float = HOLDOUT


class _Context:
    """The loaded model, data, judge and store of one process."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.original = load_model(job.model)
        self.space = discover(self.original, job.knobs)
        data = load_dataset(job.calibration, [v.name for v in self.original.graph.inputs])
        if len(data) < 2:
            raise ModelcrunchError(
                f"{job.calibration}: optimize needs at least 2 samples (a share is held out)"
            )
        self.calibration, self.held_out = data.split(job.holdout, job.seed)
        targets = targets_from(min_cosine=job.constraints.min_cosine, max_drop=job.constraints.max_drop)
        judge = Judge(
            self.original,
            self.held_out,
            targets=targets,
            threads=job.threads,
            provider=job.provider,
            describe=f"{len(self.held_out)} held-out samples",
        )
        self.measure = Measurer(
            job.model,
            judge,
            self.held_out,
            threads=job.threads,
            provider=job.provider,
            bench_seconds=job.bench_seconds,
        )
        self.store = Store(job.storage, job.study, self.space, job.objectives, job.seed + 7919 * job.worker)
        self.models = job.out_dir / "models"

    def work(self, settings: Settings) -> tuple[Figures, str]:
        if not settings.changed():
            return self.measure(self.job.model), str(self.job.model)
        model = build(self.original, self.job.model, settings, self.calibration, threads=self.job.threads)
        path = self.models / f"{settings.key}.onnx"
        save_model(model, path, source=self.job.model, run_feed=self.held_out.samples[0])
        return self.measure(path), str(path)

    def evaluate(self, settings: Settings | None, phase: str) -> tuple[Record | None, bool]:
        return self.store.evaluate(settings, phase, self.work)


def _study_name(model: Path, objectives: Sequence[str], constraints: Constraints, seed: int, knobs) -> str:  # noqa: ANN001
    digest = hashlib.sha1(model.read_bytes()).hexdigest()[:10]
    quality = f"c{constraints.min_cosine}-d{constraints.max_drop}"
    return f"optimize-{digest}-{'-'.join(objectives)}-{quality}-{'-'.join(knobs)}-s{seed}"


#: The sampler stops after this many draws in a row that were all measured before (space exhausted).
EXHAUSTED_AFTER = 25


def _sampler_loop(ctx: _Context, deadline: float, trials: float, step=None) -> int:  # noqa: ANN001
    done = repeats = 0
    while time.monotonic() < deadline and done < trials and repeats < EXHAUSTED_AFTER:
        measured = step(None, "sampler") if step is not None else ctx.evaluate(None, "sampler")[1]
        done += measured
        repeats = 0 if measured else repeats + 1
    return done


def _worker(job: Job, deadline_in: float, trials: float) -> None:
    """Entry point of an extra worker process: join the study and run the sampler."""
    logging.basicConfig(level=logging.WARNING)
    _sampler_loop(_Context(job), time.monotonic() + deadline_in, trials)


def optimize(
    model: str | os.PathLike,
    calibration: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    objectives: Sequence[str] = ("latency", "size"),
    max_latency_ratio: float | None = None,
    max_size_mb: float | None = None,
    min_cosine: float | None = None,
    max_drop: float | None = None,
    time_budget_s: float = 900.0,
    max_trials: int | None = None,
    provider: str = "cpu",
    threads: int | None = 2,
    storage: str | None = None,
    workers: int = 1,
    seed: int = 0,
    bench_seconds: float = 1.0,
    knobs: Sequence[str] = KINDS,
    sensitivity: bool = True,
    greedy: bool = True,
    on_event: Event | None = None,
) -> Frontier:
    """Search prune × factorize × precision per layer; return the measured frontier (module docstring)."""
    started = time.monotonic()
    model, calibration, out_dir = Path(model), Path(calibration), Path(out_dir)
    objectives = tuple(dict.fromkeys(objectives)) or ("latency",)
    bad = [o for o in objectives if o not in OBJECTIVES]
    if bad:
        raise ModelcrunchError(f"--objective {bad[0]}: choose from {', '.join(OBJECTIVES)}")
    if not model.is_file():
        raise ModelcrunchError(f"{model}: no such model file")
    if not calibration.exists():
        raise ModelcrunchError(f"{calibration}: no such calibration data")
    if workers < 1 or time_budget_s <= 0:
        raise ModelcrunchError("--workers and --time-budget must be positive")
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelcrunchError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    constraints = Constraints(max_latency_ratio, max_size_mb, min_cosine, max_drop)
    job = Job(
        model.resolve(),
        calibration.resolve(),
        out_dir.resolve(),
        objectives,
        constraints,
        storage_url(out_dir, storage),
        _study_name(model, objectives, constraints, seed, knobs),
        threads,
        provider,
        seed,
        bench_seconds,
        tuple(knobs),
    )
    ctx = _Context(job)
    initial = len(ctx.store.records())
    trials = math.inf if max_trials is None else max_trials
    deadline = started + time_budget_s
    done = 0

    def snapshot() -> Frontier:
        return _frontier(ctx, job, started, time_budget_s, initial)

    def step(settings: Settings | None, phase: str) -> tuple[Record | None, bool]:
        nonlocal done
        record, measured = ctx.evaluate(settings, phase)
        done += measured
        if on_event is not None:
            on_event(snapshot(), phase)
        return record, measured

    if on_event is not None:
        on_event(snapshot(), "start")
    for settings in strategy.sensitivity_plan(ctx.space) if sensitivity else [ctx.space.neutral()]:
        if time.monotonic() >= started + SENSITIVITY_SHARE * time_budget_s or done >= trials:
            break
        step(settings, "sensitivity")
    if greedy:
        for settings in strategy.composites(ctx.space, ctx.store.records(), objectives[0]):
            if time.monotonic() >= started + GREEDY_SHARE * time_budget_s or done >= trials:
                break
            step(settings, "composite")
        for settings, tell in strategy.greedy_steps(ctx.space, ctx.store.records, objectives[0]):
            if time.monotonic() >= started + GREEDY_SHARE * time_budget_s or done >= trials:
                break
            tell(step(settings, "greedy")[0])
    left = trials - done
    if workers > 1 and time.monotonic() < deadline and left > 0:
        _run_workers(ctx, job, deadline, left, workers)
    else:
        _sampler_loop(ctx, deadline, left, lambda s, phase: step(s, phase)[1])
    frontier = _frontier(ctx, job, started, time_budget_s, initial, decide=True)
    frontier = output.write(frontier, out_dir)
    if frontier.best is None:
        near = "; ".join(
            f"#{p.number} {p.summary}: quality {p.figures.quality:.4f}, "
            f"{p.figures.latency_ratio:.2f}x latency, "
            f"{p.figures.size_bytes / 1e6:.2f} MB"
            for p in frontier.nearest()
        )
        raise ConstraintsUnmet(f"no candidate meets the constraints; nearest: {near}", frontier)
    return frontier


def _run_workers(ctx: _Context, job: Job, deadline: float, left: float, workers: int) -> int:
    """The sampler on ``workers`` processes (this one included) sharing the study."""
    share = left / workers
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(target=_worker, args=(replace(job, worker=i), deadline - time.monotonic(), share))
        for i in range(1, workers)
    ]
    for p in procs:
        p.start()
    try:
        done = _sampler_loop(ctx, deadline, share)
    finally:
        for p in procs:
            p.join()
    return done


def _frontier(
    ctx: _Context, job: Job, started: float, budget: float, initial: int, *, decide: bool = False
) -> Frontier:
    records = ctx.store.records()
    if decide and job.objectives[0] == "latency":
        records = _decide(ctx, job, records)
    return Frontier.from_records(
        records,
        job.objectives,
        job.constraints,
        model=str(job.model),
        space_size=ctx.space.size,
        space=ctx.space.describe(),
        budget_s=budget,
        elapsed_s=time.monotonic() - started,
        measured_now=len(records) - initial,
        out_dir=str(job.out_dir),
        failures=tuple(ctx.store.failures()),
    )


#: The final decision re-times this many of the fastest feasible points together, interleaved.
DECIDE_TOP = 5


def _decide(ctx: _Context, job: Job, records: list[Record]) -> list[Record]:
    """Measured decides: the fastest feasible candidates are timed again in ONE interleaved run
    with the original (3x the per-candidate time each), and those latencies replace their
    search-time ones (``phase`` gets ``+decided``), so the choice of best.onnx does not rest on
    separate short runs on a noisy machine."""
    feasible = [
        r
        for r in records
        if r.settings.changed()
        and r.model
        and Path(r.model).is_file()
        and job.constraints.violation(r.figures) == 0
    ]
    top = sorted(feasible, key=lambda r: r.figures.latency_ratio)[:DECIDE_TOP]
    if len(top) < 2:
        return records
    bench = benchmark(
        [job.model, *(Path(r.model) for r in top)],
        ctx.held_out.samples[0],
        provider=job.provider,
        threads=job.threads,
        time_budget_s=3 * job.bench_seconds * (len(top) + 1),
        warmup=5,
    )
    timed = {
        r.number: (ratio.latency, model.latency.p50_ms)
        for r, model, ratio in zip(top, bench.models[1:], bench.ratios[1:], strict=True)
    }
    out = []
    for r in records:
        if r.number in timed:
            ratio, ms = timed[r.number]
            figures = replace(r.figures, latency_ratio=float(ratio), latency_ms=float(ms))
            r = replace(r, figures=figures, phase=r.phase + "+decided")
        out.append(r)
    return out


def space_of(model: str | os.PathLike, knobs: Sequence[str] = KINDS) -> SearchSpace:
    """The search space ``optimize`` would explore on ``model`` (to print before starting)."""
    return discover(load_model(Path(model)), tuple(knobs))
