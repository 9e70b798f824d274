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
    stdout,
)
from modelcrunch.data import Dataset, load_dataset
from modelcrunch.distill import require_torch
from modelcrunch.distill.config import DistillConfig
from modelcrunch.errors import ModelcrunchError
from modelcrunch.render.distill import distill_progress, render_distill

Opt = typer.Option


def parse_duration(text: str | None) -> float | None:
    """``90``, ``90s``, ``20m`` or ``1.5h`` → seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    value, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(value) * unit
    except ValueError:
        raise ModelcrunchError(
            f"--time-budget: '{text}' is not a duration (e.g. 300, 90s, 20m, 1h)"
        ) from None
    if seconds <= 0:
        raise ModelcrunchError("--time-budget must be > 0")
    return seconds


# ---- --distill on prune / factorize ----------------------------------------------------------
DistillFlag = Annotated[
    bool,
    Opt(
        "--distill", help="Then fine-tune the result against the input model on --calibration (needs torch)."
    ),
]
DistillBudgetOpt = Annotated[str | None, Opt(help="--distill: stop training after this long (20m).")]


def check_distill_options(distill: bool, calibration: Path | None) -> None:
    """Fail before the rewrite, not after it, when --distill cannot run."""
    if not distill:
        return
    if calibration is None:
        raise ModelcrunchError("--distill needs --calibration (the unlabeled inputs it trains on)")
    require_torch()


def distill_after(
    distill: bool,
    teacher: Path,
    output: Path,
    data: Dataset | None,
    budget: str | None,
    *,
    quiet: bool,
    threads,
):
    """With --distill: distill the written ``output`` against ``teacher`` (the command's input) in place."""
    if not distill or data is None or not output.exists():  # a missed target writes nothing
        return None
    from modelcrunch.distill.pipeline import distill_file

    config = DistillConfig(time_budget=parse_duration(budget), threads=threads)
    with distill_progress(quiet) as (on_step, on_epoch):
        return distill_file(
            output, teacher, data, output, config, overwrite_input=True, on_step=on_step, on_epoch=on_epoch
        )


@handle_errors
def distill_cmd(
    model: ModelArg,
    output: OutputOpt,
    teacher: Annotated[Path, Opt(help="The model the student learns to imitate.", show_default=False)],
    data: Annotated[Path, Opt(help="Unlabeled inputs (.npz or folder of .npz).", show_default=False)],
    epochs: Annotated[int, Opt(help="Passes over the training samples at most.")] = 30,
    batch_size: Annotated[int, Opt(help="Samples per step.")] = 16,
    lr: Annotated[float, Opt(help="Adam learning rate.")] = 1e-4,
    temperature: Annotated[float, Opt(help="Softmax temperature of the class-score loss.")] = 2.0,
    holdout: Annotated[float, Opt(help="Share of the samples held out for the figure.")] = 0.2,
    patience: Annotated[int, Opt(help="Stop after this many epochs without a better figure.")] = 5,
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
