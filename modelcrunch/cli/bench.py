"""``modelcrunch bench MODEL [MODEL ...]``: latency, throughput, memory, size, fidelity, CI gates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelcrunch.cli._common import (
    DebugOpt,
    JsonOpt,
    MetricOpt,
    OutputKindOpt,
    QuietOpt,
    ShapeOpt,
    TaskOpt,
    emit_json,
    handle_errors,
    progress_bar,
    shapes_option,
    stdout,
)
from modelcrunch.errors import ModelcrunchError
from modelcrunch.render.bench import to_csv, to_markdown, to_tables
from modelcrunch.runtime.gates import GateLimits, enforce
from modelcrunch.runtime.report import BenchConfig, TaskGates, run_bench


def _gate(text: str) -> object:
    return typer.Option(help=f"Gate (exit 3): {text}", show_default=False, rich_help_panel="CI gates")


def _batches(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        batches = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ModelcrunchError(f"--batch '{value}': expected sizes like 1,8,32") from None
    if not batches or min(batches) < 1:
        raise ModelcrunchError(f"--batch '{value}': sizes must be positive integers")
    return batches


@handle_errors
def bench_cmd(
    models: Annotated[
        list[Path], typer.Argument(help="Models; the first is the baseline.", show_default=False)
    ],
    provider: Annotated[
        str, typer.Option("--provider", "-p", help="cpu|cuda|tensorrt|openvino|dml|coreml")
    ] = "cpu",
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (default: ORT's).")] = None,
    inter_threads: Annotated[int | None, typer.Option(help="Inter-op threads (with --parallel).")] = None,
    parallel: Annotated[bool, typer.Option(help="ORT parallel execution mode.")] = False,
    opt_level: Annotated[str, typer.Option("--opt-level", help="disable|basic|extended|all")] = "all",
    warmup: Annotated[int, typer.Option(help="Untimed runs per model first.")] = 10,
    runs: Annotated[int, typer.Option(help="Timed runs per model.")] = 100,
    duration: Annotated[float | None, typer.Option(help="Time budget in s (replaces --runs).")] = None,
    batch: Annotated[str | None, typer.Option(help="Batch sizes to sweep, e.g. 1,8,32.")] = None,
    shape: ShapeOpt = None,
    inputs: Annotated[Path | None, typer.Option(help="Real inputs: .npz or folder of .npz.")] = None,
    labels: Annotated[str | None, typer.Option(help="Label array in --inputs (default: 'label').")] = None,
    output: Annotated[str | None, typer.Option("--output", help="Output used for accuracy.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of synthesised inputs.")] = 0,
    max_latency_ratio: Annotated[
        float | None, _gate("candidate p50 latency / baseline's at most this.")
    ] = None,
    max_memory_ratio: Annotated[float | None, _gate("candidate memory / baseline's at most this.")] = None,
    max_size_ratio: Annotated[
        float | None, _gate("candidate size on disk / baseline's at most this.")
    ] = None,
    min_cosine: Annotated[float | None, _gate("worst output cosine similarity at least this.")] = None,
    min_top1_agreement: Annotated[
        float | None, _gate("top-1 agreement with the baseline at least this.")
    ] = None,
    max_accuracy_drop: Annotated[
        float | None, _gate("baseline accuracy - candidate's at most this (needs labels).")
    ] = None,
    min_f1: Annotated[
        float | None, _gate("detection F1 against the first model's decoded detections at least this.")
    ] = None,
    min_mask_iou: Annotated[
        float | None, _gate("per-sample mask IoU of probability maps (mean) at least this.")
    ] = None,
    min_string_agreement: Annotated[
        float | None, _gate("share of CTC-decoded strings identical to the first model's at least this.")
    ] = None,
    min_decision_agreement: Annotated[
        float | None, _gate("scalar decisions that agree (score closeness outside [0, 1]) at least this.")
    ] = None,
    task_targets: Annotated[
        bool,
        typer.Option(
            "--task-targets",
            help="Gate (exit 3): every output's default task target (those quantize/prune/factorize use).",
            rich_help_panel="CI gates",
        ),
    ] = False,
    output_kind: OutputKindOpt = None,
    task: TaskOpt = None,
    metric: MetricOpt = None,
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown table on stdout.")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Benchmark models interleaved (A, B, A, B, ...) and compare each with the first."""
    if json_out + csv_out + markdown > 1:
        raise ModelcrunchError("choose one of --json, --csv, --markdown")
    limits = GateLimits(
        max_latency_ratio, max_memory_ratio, max_size_ratio, min_cosine, min_top1_agreement, max_accuracy_drop
    )
    config = BenchConfig(
        models=models,
        provider=provider,
        threads=threads,
        inter_threads=inter_threads,
        parallel=parallel,
        optimization=opt_level,
        warmup=warmup,
        runs=runs,
        duration_s=duration,
        batches=_batches(batch),
        shapes=shapes_option(shape),
        inputs=inputs,
        labels=labels,
        output=output,
        seed=seed,
        limits=limits,
        task=TaskGates.from_options(
            min_f1=min_f1,
            min_mask_iou=min_mask_iou,
            min_string_agreement=min_string_agreement,
            min_decision_agreement=min_decision_agreement,
            task_targets=task_targets,
            output_kind=output_kind,
            task=task,
            metric=metric,
        ),
    )
    with progress_bar(quiet) as on_progress:
        report = run_bench(config, on_progress=on_progress)
    if json_out:
        emit_json(report.to_dict())
    elif csv_out or markdown:
        sys.stdout.write(to_csv(report) if csv_out else to_markdown(report))
    else:
        console = stdout if stdout.is_terminal else Console(width=130, highlight=False)  # CI logs: no "…"
        for table in to_tables(report):
            console.print(table)
    enforce(report.gates)
