"""``modelcrunch factorize MODEL -o OUT``: low-rank factorization of MatMul/Gemm and Conv weights."""

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
from modelcrunch.render.factorize import render_factorize

Opt = typer.Option
Fraction = Annotated[float | None, Opt(show_default=False)]


@handle_errors
def factorize_cmd(
    model: ModelArg,
    output: OutputOpt,
    rank_ratio: Annotated[
        float | None, Opt(help="Rank = ratio × full rank, per layer.", show_default=False)
    ] = None,
    energy: Annotated[
        float | None,
        Opt(
            help="Keep this share of squared singular values (default: the lowest of 0.999 … 0.8 that "
            "meets the quality target).",
            show_default=False,
        ),
    ] = None,
    target_params: Annotated[
        float | None,
        Opt(help="Global budget: layers keep this share of their parameters.", show_default=False),
    ] = None,
    target_macs: Annotated[
        float | None, Opt(help="Global budget: layers keep this share of their MACs.", show_default=False)
    ] = None,
    method: Annotated[str, Opt(help="Conv method: channel | spatial | tucker (svd = channel).")] = "channel",
    round_to: Annotated[int, Opt(help="Round ranks up to a multiple of this.")] = 1,
    min_size: Annotated[int, Opt(help="Skip layers whose weight has fewer parameters.")] = 0,
    exclude: Annotated[list[str] | None, Opt(help="Node name (glob) or op type to leave alone.")] = None,
    calibration: Annotated[
        Path | None, Opt(help="Calibration data (.npz or folder): data-aware SVD.")
    ] = None,
    eval_data: EvalOpt = None,
    no_measure: NoMeasureOpt = False,
    distill: DistillFlag = False,
    distill_budget: DistillBudgetOpt = None,
    threads: Annotated[int | None, Opt(help="Threads for the measurements.")] = None,
    shape: ShapeOpt = None,
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
    batch: BatchOpt = None,
    overwrite_input: OverwriteInputOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Factorize MatMul/Gemm/Conv weights into low-rank pairs (SVD, channel, spatial, Tucker-2)."""
    distill_budget_s = check_distill_options(
        distill, calibration, distill_budget, overwrite_input=overwrite_input
    )
    shared = quality_options(locals())
    quality = Quality.from_options(**shared)
    calib = load_dataset(calibration) if calibration else None
    evaluation = load_dataset(eval_data) if eval_data else None
    with progress_bar(quiet) as on_progress:
        report = api.factorize(
            model,
            output,
            rank_ratio=rank_ratio,
            energy=energy,
            target_params=target_params,
            target_macs=target_macs,
            method=method,
            round_to=round_to,
            min_size=min_size,
            exclude=exclude or (),
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
        passed=report.extra.get("passed", True),
        verdict=report.extra.get("verdict"),
        written=report.extra.get("passed", True) or quality.keep_best,
        render=render_factorize,
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
