"""The quality options that quantize, prune and factorize share (the judge's targets, kinds, data
split and the guard's switches), and the ``Quality`` they make. The kind and metric options
live in ``_common`` (bench takes them too)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcrunch.passes.guard import Quality


# ---- the quality judge's options (quantize, prune, factorize; runtime/judge.py) ---------------
def _fraction(flag: str) -> typer.models.OptionInfo:
    return typer.Option(flag, help=f"Task target: {TARGET_HELP[flag]} (0 switches the default off).")


TARGET_HELP = {
    "--min-cosine": "worst channel-group cosine (default 0.99 on generic outputs, per sample on embeddings)",
    "--min-top1-agreement": "top-1 agreement of class outputs along the class axis (default 0.99)",
    "--min-mask-iou": "per-sample mask IoU of probability maps, mean (default 0.985; worst: 0.085 less)",
    "--min-f1": "detection F1 against the original's decoded detections at IoU 0.5 (default 0.95)",
    "--min-string-agreement": "share of CTC-decoded strings identical to the original's (default 0.95)",
    "--min-decision-agreement": "scalar outputs: decisions at 0.5 (or 0) that agree; score closeness for "
    "scores outside [0, 1] (default 0.99)",
}
MinCosineOpt = Annotated[float | None, _fraction("--min-cosine")]
MinTop1Opt = Annotated[float | None, _fraction("--min-top1-agreement")]
MinMaskIouOpt = Annotated[float | None, _fraction("--min-mask-iou")]
MinF1Opt = Annotated[float | None, _fraction("--min-f1")]
MinStringsOpt = Annotated[float | None, _fraction("--min-string-agreement")]
MinDecisionsOpt = Annotated[float | None, _fraction("--min-decision-agreement")]
MaxDropOpt = Annotated[
    float | None, typer.Option("--max-drop", help="Task target: accuracy drop in points (needs labels).")
]
KeepBestOpt = Annotated[
    bool, typer.Option("--keep-best", help="Write the best model even when it misses the target (exit 3).")
]
HoldoutOpt = Annotated[
    float,
    typer.Option(
        "--holdout", help="Share of --calibration held out for the verdict when no --eval is given (0: none)."
    ),
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option("--reference", help="Judge against this model (the true original of a chained step)."),
]


RequireFasterOpt = Annotated[
    bool,
    typer.Option("--require-faster", help="Fail (exit 3) unless the result is faster than the original."),
]
AllowSlowerOpt = Annotated[
    bool, typer.Option("--allow-slower", help="Accept a result slower than the original (else exit 3).")
]


#: The parameter names the shared quality options have in every command that takes them.
QUALITY_OPTIONS = (
    "min_cosine", "min_top1_agreement", "min_mask_iou", "min_f1", "min_string_agreement",
    "min_decision_agreement", "max_drop", "output_kind", "task", "metric", "holdout", "reference",
    "keep_best", "require_faster", "allow_slower",
)  # fmt: skip


def quality_options(values: dict) -> dict:
    """The shared quality options, picked by name from a command's ``locals()``."""
    return {name: values[name] for name in QUALITY_OPTIONS}


def quality_from_locals(values: dict) -> Quality:
    """The guard's ``Quality`` from the shared options in a command's ``locals()``."""
    return Quality.from_options(**quality_options(values))
