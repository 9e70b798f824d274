"""``modelcrunch optimize MODEL --calibration DATA -o OUT_DIR``: measured Pareto search."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live

from modelcrunch.cli._common import (
    DebugOpt,
    JsonOpt,
    ModelArg,
    QuietOpt,
    emit_json,
    handle_errors,
    parse_duration,
    stderr,
    stdout,
)
from modelcrunch.errors import ModelcrunchError
from modelcrunch.render import optimize as render

Opt = typer.Option


@handle_errors
def optimize_cmd(
    model: ModelArg,
    calibration: Annotated[Path, Opt(help="Calibration data (.npz or folder); a seeded share is held out.")],
    out_dir: Annotated[Path, Opt("--output", "-o", help="Folder for the front, best.onnx and the report.")],
    objective: Annotated[
        list[str] | None, Opt(help="latency | size | ram (repeatable; first decides best).")
    ] = None,
    max_latency_ratio: Annotated[
        float | None, Opt(help="Constraint: latency / original at most this.")
    ] = None,
    max_size: Annotated[float | None, Opt(help="Constraint: model size at most this many MB.")] = None,
    min_cosine: Annotated[
        float | None, Opt(help="Quality target: worst output cosine (default 0.99).")
    ] = None,
    max_drop: Annotated[
        float | None, Opt(help="Quality target: accuracy drop in points (needs labels).")
    ] = None,
    time_budget: Annotated[str, Opt(help="Wall-clock budget: 90s, 15m, 1h.")] = "15m",
    trials: Annotated[int | None, Opt(help="Stop after this many new measured candidates.")] = None,
    provider: Annotated[str, Opt(help="Execution provider the latency is measured on.")] = "cpu",
    threads: Annotated[int | None, Opt(help="Intra-op threads for measuring.")] = 2,
    storage: Annotated[str | None, Opt(help="Optuna storage URL (default: SQLite in OUT_DIR).")] = None,
    workers: Annotated[int, Opt(help="Local worker processes sharing the study.")] = 1,
    seed: Annotated[int, Opt(help="Seed of the held-out split and the sampler.")] = 0,
    bench_seconds: Annotated[float, Opt(help="Seconds of interleaved timing per candidate.")] = 1.0,
    knobs: Annotated[str, Opt(help="What to search: any of prune,rank,precision,float.")] = (
        "prune,rank,precision,float"
    ),
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Search prune x factorize x precision per layer; keep the measured Pareto front."""
    from modelcrunch.search.api import ConstraintsUnmet, optimize, space_of

    budget = parse_duration(time_budget)
    if not model.is_file():
        raise ModelcrunchError(f"{model}: no such model file")
    kinds = tuple(k.strip() for k in knobs.split(",") if k.strip())
    space = space_of(model, kinds)
    if not quiet:
        stderr.print(f"search space: {space.describe()}; budget {budget:.0f} s", markup=False, soft_wrap=True)
    live = (
        Live(console=stderr, refresh_per_second=4, transient=True)
        if stderr.is_terminal and not quiet
        else None
    )

    def on_event(frontier, phase: str) -> None:  # noqa: ANN001
        if live is not None:
            live.update(render.live_view(frontier, phase))
        elif not quiet and phase != "start":
            stderr.print(render.progress_line(frontier, phase), markup=False, highlight=False, soft_wrap=True)

    unmet = None
    with live if live is not None else nullcontext():
        try:
            frontier = optimize(
                model, calibration, out_dir,
                objectives=tuple(objective or ("latency", "size")),
                max_latency_ratio=max_latency_ratio, max_size_mb=max_size,
                min_cosine=min_cosine, max_drop=max_drop,
                time_budget_s=budget, max_trials=trials, provider=provider, threads=threads,
                storage=storage, workers=workers, seed=seed, bench_seconds=bench_seconds, knobs=kinds,
                on_event=on_event,
            )  # fmt: skip
        except ConstraintsUnmet as exc:
            frontier, unmet = exc.frontier, exc
    if as_json:
        emit_json(frontier.to_dict())
    else:
        stdout.print(render.summary(frontier))
    if unmet is not None:
        raise unmet
