"""``modelcrunch distill STUDENT --teacher TEACHER --data DATA -o OUT``: teacher-student fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcrunch.cli._common import (
    DebugOpt,
    JsonOpt,
    ModelArg,
    OutputOpt,
    OverwriteInputOpt,
    QuietOpt,
    emit_json,
    handle_errors,
    parse_duration,
    stdout,
)
from modelcrunch.data import load_dataset
from modelcrunch.distill import require_torch
from modelcrunch.distill.config import DistillConfig
from modelcrunch.render.distill import distill_progress, render_distill

Opt = typer.Option


@handle_errors
def distill_cmd(
    model: ModelArg,
    output: OutputOpt,
    teacher: Annotated[Path, Opt(help="The model the student learns to imitate.", show_default=False)],
    data: Annotated[Path, Opt(help="Unlabeled inputs (.npz or folder of .npz).", show_default=False)],
    epochs: Annotated[
        int | None,
        Opt(help="Passes over the training samples at most (default 30; no cap with --time-budget)."),
    ] = None,
    batch_size: Annotated[int, Opt(help="Samples per step.")] = 16,
    lr: Annotated[float, Opt(help="Adam learning rate.")] = 1e-4,
    temperature: Annotated[float, Opt(help="Softmax temperature of the class-score loss.")] = 2.0,
    holdout: Annotated[float, Opt(help="Share of the samples held out for the figure.")] = 0.2,
    patience: Annotated[
        int, Opt(help="Stop after this many epochs without a better figure or a 1 % lower held-out loss.")
    ] = 5,
    time_budget: Annotated[str | None, Opt(help="Stop training after this long (300, 20m, 1h).")] = None,
    seed: Annotated[int, Opt(help="Seed of the split, the shuffles and the augmentations.")] = 0,
    augment: Annotated[str, Opt(help="auto | none | image | audio | text.")] = "auto",
    tolerance: Annotated[float, Opt(help="Max translation error vs ONNX Runtime (share of range).")] = 1e-3,
    threads: Annotated[int | None, Opt(help="Torch and ONNX Runtime threads.")] = None,
    feature_match: Annotated[
        float, Opt(help="Weight of matching intermediate values that keep name and shape (0: off).")
    ] = 0.0,
    checkpoint: Annotated[
        Path | None, Opt(help="Folder for checkpoints (each epoch, and on Ctrl-C).")
    ] = None,
    resume: Annotated[bool, Opt("--resume", help="Continue from the checkpoint in --checkpoint.")] = False,
    overwrite_input: OverwriteInputOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fine-tune STUDENT's weights to imitate TEACHER on unlabeled data (needs modelcrunch[distill])."""
    config = DistillConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        temperature=temperature,
        holdout=holdout,
        patience=patience,
        time_budget=parse_duration(time_budget),
        seed=seed,
        augment=augment,
        tolerance=tolerance,
        threads=threads,
        feature_match=feature_match,
        checkpoint=checkpoint,
        resume=resume,
    )
    require_torch()
    from modelcrunch.distill.pipeline import distill_file

    dataset = load_dataset(data)
    with distill_progress(quiet) as (on_step, on_epoch):
        report = distill_file(
            model,
            teacher,
            dataset,
            output,
            config,
            overwrite_input=overwrite_input,
            on_step=on_step,
            on_epoch=on_epoch,
        )
    if json_out:
        emit_json(report.to_dict())
    elif not quiet:
        render_distill(report, stdout)
