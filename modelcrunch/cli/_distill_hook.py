"""``--distill`` on ``prune`` and ``factorize``: fine-tune the written model against the input model.

Kept apart from ``cli/distill.py`` so the rewriting commands import only this (and PyTorch only when
``--distill`` is given). What can be checked before the rewrite is (calibration data, PyTorch, the
budget, the modes distillation would undo). After the rewrite, distillation trains on the command's
own calibration share only (the samples its judge holds out are never trained on), the same judge
then judges the distilled model, and its weights are written only when that verdict is no worse than
the rewritten model's. The command's exit code follows the final verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from modelcrunch.cli._common import emit_json, exit_missed, parse_duration, stdout
from modelcrunch.data import Dataset
from modelcrunch.errors import ModelcrunchError

Opt = typer.Option

DistillFlag = Annotated[
    bool,
    Opt(
        "--distill", help="Then fine-tune the result against the input model on --calibration (needs torch)."
    ),
]
DistillBudgetOpt = Annotated[
    str | None, Opt(help="--distill: stop training after this long (20m); without it, after 30 epochs.")
]


def check_distill_options(
    distill: bool,
    calibration: Path | None,
    budget: str | None,
    *,
    overwrite_input: bool = False,
    sparse: bool = False,
) -> float | None:
    """The --distill-budget in seconds; fails before the rewrite when --distill cannot run."""
    seconds = parse_duration(budget, "--distill-budget")
    if not distill:
        return seconds
    if calibration is None:
        raise ModelcrunchError("--distill needs --calibration (the unlabeled inputs it trains on)")
    if overwrite_input:
        raise ModelcrunchError(
            "--distill learns from the input model: it cannot be used with --overwrite-input"
        )
    if sparse:
        raise ModelcrunchError(
            "--distill retrains every weight and would fill the zeros of --sparsity/--threshold/--pattern "
            "back in; use it with --structured"
        )
    from modelcrunch.distill import require_torch

    require_torch()
    return seconds


@dataclass(frozen=True)
class Distilled:
    """What --distill did: the training report, the judge's verdicts before and after, and whether
    the distilled weights were written."""

    report: Any  # distill.train.DistillReport
    before: Any  # runtime.judge.Verdict of the rewritten model
    after: Any  # ... and of the distilled one
    kept: bool

    @property
    def verdict(self) -> Any:
        return self.after if self.kept else self.before

    def to_dict(self) -> dict:
        return {
            **self.report.to_dict(),
            "kept": self.kept,
            "verdict_before": self.before.to_dict(),
            "verdict_after": self.after.to_dict(),
        }


def distill_after(
    distill: bool,
    teacher: Path,
    output: Path,
    written: bool,
    calibration: Dataset | None,
    evaluation: Dataset | None,
    quality: Any,  # passes.guard.Quality
    budget_s: float | None,
    *,
    quiet: bool,
    threads: int | None,
) -> Distilled | None:
    """With --distill: distill the written ``output`` against ``teacher`` (the command's input)."""
    if not distill or calibration is None or not written:  # a missed target writes nothing
        return None
    from modelcrunch.distill.config import DistillConfig
    from modelcrunch.distill.train import distill_model
    from modelcrunch.io import load_model, save_model
    from modelcrunch.passes.guard import make_judge, split_data
    from modelcrunch.render.distill import distill_progress

    split = split_data(calibration, evaluation, quality)  # the command's own split (same seed)
    train = split.calibration if split.calibration is not None else calibration
    judge = make_judge(teacher, split, quality, fallback=[], threads=threads)
    student = load_model(output)
    before = judge(student)
    config = DistillConfig(time_budget=budget_s, threads=threads)
    try:
        with distill_progress(quiet) as (on_step, on_epoch):
            trained, report = distill_model(
                student, load_model(teacher), train, config, on_step=on_step, on_epoch=on_epoch
            )
    except ModelcrunchError as exc:
        raise type(exc)(
            f"{output} is written, undistilled ({before.summary()}); --distill failed: {exc}"
        ) from exc
    paths = {"student": str(output), "teacher": str(teacher), "output": str(output)}
    report = type(report)(**{**report.__dict__, "paths": paths})
    after = judge(trained)
    kept = (after.passed, -after.rank_loss) >= (before.passed, -before.rank_loss)
    if kept:
        feed = {n: train.samples[0][n] for n in (v.name for v in trained.graph.inputs)}
        save_model(trained, output, source=teacher, run_feed=feed)
    return Distilled(report, before, after, kept)


def finish(
    report: Any,
    *,
    passed: bool,
    verdict: dict | None,
    written: bool,
    render: Callable[[Any, Any], None],
    distill: bool,
    model: Path,
    output: Path,
    calibration: Dataset | None,
    evaluation: Dataset | None,
    quality: Any,
    budget_s: float | None,
    json_out: bool,
    quiet: bool,
    threads: int | None,
) -> None:
    """The end of prune and factorize: --distill on what was written, the report (table or JSON),
    and the exit code of the final verdict."""
    from modelcrunch.render.verdict import miss_line

    distilled = distill_after(
        distill,
        model,
        output,
        written,
        calibration,
        evaluation,
        quality,
        budget_s,
        quiet=quiet,
        threads=threads,
    )
    final = passed_after(passed, distilled, report.notes)
    if json_out:
        extra = {"distill": distilled.to_dict(), "passed": final} if distilled else {}
        emit_json({**report.to_dict(), **extra})
    elif not quiet:
        render(report, stdout)
        if distilled:
            render_distilled(distilled, stdout)
    exit_missed(final, miss_line(distilled.verdict.to_dict() if distilled else verdict, report.notes))


def slower(notes: tuple[str, ...] | list[str]) -> bool:
    """Whether a command's notes say its result failed the speed check (distillation cannot help)."""
    from modelcrunch.render.verdict import speed_notes

    return bool(speed_notes(notes))


def passed_after(passed: bool, distilled: Distilled | None, notes: tuple[str, ...] | list[str]) -> bool:
    """The command's final pass: its own, or the verdict of what --distill left at -o (and speed)."""
    return passed if distilled is None else distilled.verdict.passed and not slower(notes)


def render_distilled(distilled: Distilled, console: Any) -> None:
    from modelcrunch.render.distill import render_distill
    from modelcrunch.render.verdict import verdict_table

    render_distill(distilled.report, console)
    console.print(verdict_table(distilled.after.to_dict(), title="quality after distillation"))
    console.print(
        "distilled weights written"
        if distilled.kept
        else "distillation did not improve the verdict: the rewritten model is kept as it was"
    )
