"""``--distill`` on ``prune`` and ``factorize``: fine-tune the written model against the input model.

Kept apart from ``cli/distill.py`` so the rewriting commands import only this (and PyTorch only when
``--distill`` is given); everything is checked before the rewrite starts, not after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcrunch.cli._common import parse_duration
from modelcrunch.data import Dataset
from modelcrunch.errors import ModelcrunchError

Opt = typer.Option

DistillFlag = Annotated[
    bool,
    Opt(
        "--distill", help="Then fine-tune the result against the input model on --calibration (needs torch)."
    ),
]
DistillBudgetOpt = Annotated[str | None, Opt(help="--distill: stop training after this long (20m).")]


def check_distill_options(distill: bool, calibration: Path | None, budget: str | None) -> float | None:
    """The --distill-budget in seconds; fails before the rewrite when --distill cannot run."""
    seconds = parse_duration(budget, "--distill-budget")
    if not distill:
        return seconds
    if calibration is None:
        raise ModelcrunchError("--distill needs --calibration (the unlabeled inputs it trains on)")
    from modelcrunch.distill import require_torch

    require_torch()
    return seconds


def distill_after(
    distill: bool,
    teacher: Path,
    output: Path,
    data: Dataset | None,
    budget_s: float | None,
    *,
    quiet: bool,
    threads: int | None,
):
    """With --distill: distill the written ``output`` against ``teacher`` (the command's input) in place."""
    if not distill or data is None or not output.exists():  # a missed target writes nothing
        return None
    from modelcrunch.distill.config import DistillConfig
    from modelcrunch.distill.pipeline import distill_file
    from modelcrunch.render.distill import distill_progress

    config = DistillConfig(time_budget=budget_s, threads=threads)
    with distill_progress(quiet) as (on_step, on_epoch):
        return distill_file(
            output, teacher, data, output, config, overwrite_input=True, on_step=on_step, on_epoch=on_epoch
        )
