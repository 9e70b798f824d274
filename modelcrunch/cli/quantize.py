"""``modelcrunch quantize MODEL -o OUT``: int8 / int4 / fp16 / bf16 that stays accurate and gets faster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcrunch.cli._common import (
    BatchOpt,
    DebugOpt,
    JsonOpt,
    MetricOpt,
    ModelArg,
    OutputKindOpt,
    OutputOpt,
    OverwriteInputOpt,
    QuietOpt,
    ShapeOpt,
    TaskOpt,
    emit_json,
    exit_missed,
    handle_errors,
    progress_bar,
    shapes_option,
    stderr,
    stdout,
)
from modelcrunch.cli._quality import (
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
)  # fmt: skip
from modelcrunch.passes.quantize import (
    CalibrationMethod,
    Mode,
    Precision,
    QuantFormat,
    QuantizeOptions,
    WeightAlgorithm,
    quantize_model,
)  # fmt: skip
from modelcrunch.render.quantize import render_quantize, render_warnings
from modelcrunch.runtime.semantics import parse_kind_overrides

DataOpt = Annotated[Path | None, typer.Option(help="Data in the shared format (.npz stacked, or a folder).")]


@handle_errors
def quantize_cmd(
    model: ModelArg,
    output: OutputOpt,
    mode: Annotated[
        Mode,
        typer.Option(
            help="What to quantize to; auto tries several and keeps the best. fp16 computes in half "
            "precision (a GPU speed feature); bf16 stores weights only (2x smaller, fp32 compute and speed)."
        ),
    ] = Mode.AUTO,
    calibration: DataOpt = None,
    eval_data: Annotated[
        Path | None,
        typer.Option(
            "--eval", help="Held-out data for fidelity (labels → accuracy); default: the calibration data."
        ),
    ] = None,
    method: Annotated[
        CalibrationMethod, typer.Option(help="Static calibration method.")
    ] = CalibrationMethod.MINMAX,
    precision: Annotated[Precision, typer.Option(help="Activation/weight int8 types.")] = Precision.U8S8,
    quant_format: Annotated[
        QuantFormat, typer.Option("--format", help="Static output format.")
    ] = QuantFormat.QDQ,
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor")] = True,
    reduce_range: Annotated[
        bool | None,
        typer.Option(
            "--reduce-range/--full-range",
            help="7-bit int8 weights (default: only on x86 CPUs without VNNI, whose u8s8 kernels saturate).",
        ),
    ] = None,
    bits: Annotated[int, typer.Option(help="weight-only: 4 or 8 bits.")] = 4,
    block_size: Annotated[int, typer.Option(help="weight-only: block size (power of two ≥ 16).")] = 32,
    accuracy_level: Annotated[int, typer.Option(help="weight-only MatMulNBits compute: 4=int8, 0=fp32.")] = 4,
    algorithm: Annotated[WeightAlgorithm, typer.Option(help="weight-only rounding.")] = WeightAlgorithm.RTN,
    exclude: Annotated[list[str] | None, typer.Option(help="Node name to keep float (repeatable).")] = None,
    op_types: Annotated[str | None, typer.Option(help="Comma-separated op types to quantize.")] = None,
    min_cosine: MinCosineOpt = None,
    max_drop: MaxDropOpt = None,
    max_channel_error: Annotated[
        float | None,
        typer.Option(help="Gate: worst output-channel error / that channel's scale (detector heads)."),
    ] = None,
    min_top1_agreement: MinTop1Opt = None,
    min_mask_iou: MinMaskIouOpt = None,
    min_f1: MinF1Opt = None,
    min_string_agreement: MinStringsOpt = None,
    min_decision_agreement: MinDecisionsOpt = None,
    output_kind: OutputKindOpt = None,
    task: TaskOpt = None,
    metric: MetricOpt = None,
    holdout: HoldoutOpt = 0.2,
    reference: ReferenceOpt = None,
    keep_best: KeepBestOpt = False,
    allow_slower: Annotated[
        bool, typer.Option("--allow-slower", help="auto: accept a result slower than the original (exit 0).")
    ] = False,
    require_faster: Annotated[bool, typer.Option(help="Fail (exit 3) unless the result is faster.")] = False,
    sensitivity: Annotated[bool, typer.Option(help="Keep the worst layers float to meet the target.")] = True,
    gptq: Annotated[
        bool,
        typer.Option(
            help="storage, weight-only: GPTQ rounding of int8/int4 weights from calibration data.",
        ),
    ] = True,
    bias_correction: Annotated[
        bool,
        typer.Option(
            help="static: fold each int8 layer's mean output shift into its bias (kept if no worse)."
        ),
    ] = True,
    fuse: Annotated[
        bool,
        typer.Option(
            help="static/dynamic/storage: fold scalar Mul/Add into Convs, fuse HardSwish first (exact)."
        ),
    ] = True,
    compact: Annotated[
        bool,
        typer.Option(help="dynamic/static: store weights they leave float (embeddings...) as int8 too."),
    ] = True,
    per_token: Annotated[
        bool,
        typer.Option(help="dynamic: sensitive MatMuls get per-token int8 activations before staying float."),
    ] = True,
    bench: Annotated[bool, typer.Option(help="Benchmark against the original (interleaved).")] = True,
    bench_seconds: Annotated[float, typer.Option(min=0.1, help="Benchmark time budget.")] = 4.0,
    threads: Annotated[int, typer.Option(min=0, help="Intra-op threads for measurements.")] = 2,
    max_samples: Annotated[int, typer.Option(min=1, help="Calibration samples used at most.")] = 128,
    eval_samples: Annotated[int, typer.Option(min=1, help="Fidelity samples used at most.")] = 256,
    provider: Annotated[str, typer.Option(help="Execution provider for measurements.")] = "cpu",
    shape: ShapeOpt = None,
    batch: BatchOpt = None,
    overwrite_input: OverwriteInputOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Quantize MODEL (int8 dynamic/static, int4 weight-only, int8/bf16 storage, fp16), then measure it."""
    options = QuantizeOptions(
        mode=mode,
        calibration_method=method,
        precision=precision,
        quant_format=quant_format,
        per_channel=per_channel,
        reduce_range=reduce_range,
        bits=bits,
        block_size=block_size,
        accuracy_level=accuracy_level,
        weight_algorithm=algorithm,
        exclude=tuple(exclude or ()),
        op_types=tuple(t.strip() for t in op_types.split(",") if t.strip()) if op_types else None,
        min_cosine=min_cosine,
        max_drop=max_drop,
        max_channel_error=max_channel_error,
        min_top1_agreement=min_top1_agreement,
        min_mask_iou=min_mask_iou,
        min_f1=min_f1,
        min_string_agreement=min_string_agreement,
        min_decision_agreement=min_decision_agreement,
        output_kinds=tuple(parse_kind_overrides(output_kind, task).items()),
        metric=metric,
        holdout=holdout,
        keep_best=keep_best,
        allow_slower=allow_slower,
        require_faster=require_faster,
        sensitivity=sensitivity,
        gptq=gptq,
        bias_correction=bias_correction,
        fuse=fuse,
        compact=compact,
        per_token=per_token,
        bench=bench,
        bench_seconds=bench_seconds,
        threads=threads or None,
        max_calibration_samples=max_samples,
        max_eval_samples=eval_samples,
        provider=provider,
    )
    with progress_bar(quiet) as on_progress:
        report = quantize_model(
            model,
            output,
            options,
            calibration=calibration,
            evaluation=eval_data,
            overwrite_input=overwrite_input,
            shapes=shapes_option(shape),
            batch=batch,
            reference_model=reference,
            on_progress=on_progress,
        )
    if not quiet:
        render_warnings(report, stderr)
    if json_out:
        emit_json(report.to_dict())
    else:
        render_quantize(report, stdout)
    if report.target.get("slower"):
        exit_missed(False, "the quantized model is slower than the original (--allow-slower accepts it)")
    exit_missed(report.passed, f"quality target missed: {report.target.get('task') or 'see the report'}")
