"""``modelcrunch prune MODEL -o OUT``: structured channel pruning, magnitude or N:M sparsity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcrunch import api
from modelcrunch.cli._common import (
    BatchOpt,
    DebugOpt,
    EvalOpt,
    JsonOpt,
    MetricOpt,
    ModelArg,
    NoMeasureOpt,
    OutputKindOpt,
    OutputOpt,
    OverwriteInputOpt,
    QuietOpt,
    ShapeOpt,
    TaskOpt,
    handle_errors,
    progress_bar,
)
from modelcrunch.cli._distill_hook import (
    DistillBudgetOpt,
    DistillFlag,
    check_distill_options,
    finish,
)
from modelcrunch.cli._quality import (
    AllowSlowerOpt,
    HoldoutOpt,
    KeepBestOpt,
    MaxDropOpt,
    MinCosineOpt,
    MinDecisionsOpt,
    MinF1Opt,
    MinMaskIouOpt,
    MinStringsOpt,
    MinTop1Opt,
    ReferenceOpt,
    RequireFasterOpt,
    quality_options,
)
from modelcrunch.data import load_dataset
from modelcrunch.passes.guard import Quality
from modelcrunch.render.prune import render_prune

Opt = typer.Option


@handle_errors
def prune_cmd(
    model: ModelArg,
    output: OutputOpt,
    structured: Annotated[
        bool, Opt("--structured", help="Remove whole channels (smaller dense model).")
    ] = False,
    ratio: Annotated[
        float | None,
        Opt(
            help="Structured: fraction of channels to remove (default: the strongest of 0.1 … 0.7 that "
            "meets the quality target).",
            show_default=False,
        ),
    ] = None,
    importance: Annotated[str, Opt(help="l1 | l2 | bn | activation (needs --calibration).")] = "l2",
    scope: Annotated[str, Opt(help="local (per layer) | global (ranking across layers).")] = "local",
    min_channels: Annotated[int, Opt(help="Structured: never keep fewer channels per group.")] = 1,
    min_keep_ratio: Annotated[
        float, Opt(help="Global structured: keep at least this share per group.")
    ] = 0.1,
    round_to: Annotated[
        int | None,
        Opt(
            help="Round kept channel counts up to a multiple of this "
            "(default: the CPU Conv kernels' block, 16 with AVX-512, 8 with AVX2; 1 = exact ratio).",
            show_default=False,
        ),
    ] = None,
    heads: Annotated[bool, Opt("--heads", help="Structured: also prune whole attention heads.")] = False,
    exclude: Annotated[list[str] | None, Opt(help="Node/initializer name or op type to leave alone.")] = None,
    calibration: Annotated[Path | None, Opt(help="Calibration data (.npz or folder) for repair.")] = None,
    eval_data: EvalOpt = None,
    no_repair: Annotated[bool, Opt("--no-repair", help="Skip the least-squares repair.")] = False,
    repair_target: Annotated[
        str,
        Opt(
            "--repair-target",
            help="What repair fits a layer feeding a residual Add to: block (the Add's output) or layer.",
        ),
    ] = "layer",
    sparsity: Annotated[float | None, Opt(help="Unstructured: fraction of weights set to zero.")] = None,
    threshold: Annotated[float | None, Opt(help="Unstructured: zero weights with |w| below this.")] = None,
    pattern: Annotated[str | None, Opt(help="N:M sparsity along the reduction axis, e.g. 2:4.")] = None,
    all_weights: Annotated[bool, Opt("--all-weights", help="Unstructured: all float weights.")] = False,
    sparse_storage: Annotated[bool, Opt("--sparse-storage", help="Store sparse weights sparsely.")] = False,
    no_measure: NoMeasureOpt = False,
    distill: DistillFlag = False,
    distill_budget: DistillBudgetOpt = None,
    threads: Annotated[int | None, Opt(help="Threads for the latency measurement.")] = None,
    min_cosine: MinCosineOpt = None,
    min_top1_agreement: MinTop1Opt = None,
    min_mask_iou: MinMaskIouOpt = None,
    min_f1: MinF1Opt = None,
    min_string_agreement: MinStringsOpt = None,
    min_decision_agreement: MinDecisionsOpt = None,
    max_drop: MaxDropOpt = None,
    output_kind: OutputKindOpt = None,
    task: TaskOpt = None,
    metric: MetricOpt = None,
    holdout: HoldoutOpt = 0.2,
    reference: ReferenceOpt = None,
    keep_best: KeepBestOpt = False,
    require_faster: RequireFasterOpt = False,
    allow_slower: AllowSlowerOpt = False,
    shape: ShapeOpt = None,
    batch: BatchOpt = None,
    overwrite_input: OverwriteInputOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Prune a model: structured channels (--structured), magnitude (--sparsity) or N:M (--pattern)."""
    distill_budget_s = check_distill_options(
        distill,
        calibration,
        distill_budget,
        overwrite_input=overwrite_input,
        sparse=not structured,
    )
    shared = quality_options(locals())
    quality = Quality.from_options(**shared)
    calib = load_dataset(calibration) if calibration else None
    evaluation = load_dataset(eval_data) if eval_data else None
    with progress_bar(quiet) as on_progress:
        report = api.prune(
            model,
            output,
            structured=structured,
            ratio=ratio,
            importance=importance,
            scope=scope,
            min_channels=min_channels,
            min_keep_ratio=min_keep_ratio,
            round_to=round_to,
            heads=heads,
            exclude=exclude or (),
            sparsity=sparsity,
            threshold=threshold,
            pattern=pattern,
            all_weights=all_weights,
            sparse_storage=sparse_storage,
            repair=not no_repair,
            repair_target=repair_target,
            measure=not no_measure,
            threads=threads,
            calibration=calib,
            evaluation=evaluation,
            shape=shape,
            batch=batch,
            overwrite_input=overwrite_input,
            on_progress=on_progress,
            **shared,
        )
    finish(
        report,
        passed=report.passed,
        verdict=report.verdict,
        written=report.output is not None,
        render=render_prune,
        distill=distill,
        model=model,
        output=output,
        calibration=calib,
        evaluation=evaluation,
        quality=quality,
        budget_s=distill_budget_s,
        json_out=json_out,
        quiet=quiet,
        threads=threads,
    )
