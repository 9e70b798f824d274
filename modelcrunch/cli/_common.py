"""What every command shares: option types, error handling, JSON output, progress bars.

Keep this module small: anything that is not CLI plumbing belongs in the library.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from modelcrunch.cli._guard import OptionError, check_options, describe_unexpected
from modelcrunch.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_GATE, ModelcrunchError
from modelcrunch.passes.guard import Quality
from modelcrunch.runtime.judge import Targets
from modelcrunch.runtime.semantics import parse_kind_overrides
from modelcrunch.shapes import parse_shape_overrides

# ---- shared option types -------------------------------------------------------------------
ModelArg = Annotated[Path, typer.Argument(help="Path to the .onnx model.", show_default=False)]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write the new model.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no human chatter.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")]
ShapeOpt = Annotated[
    list[str] | None,
    typer.Option("--shape", help="Fix an input's dynamic dims: NAME=1x3x224x224 (repeatable)."),
]
OverwriteInputOpt = Annotated[
    bool, typer.Option("--overwrite-input", help="Allow -o to name the input model itself.")
]
EvalOpt = Annotated[Path | None, typer.Option("--eval", help="Held-out data for the fidelity report.")]
NoMeasureOpt = Annotated[bool, typer.Option("--no-measure", help="Skip fidelity and latency measurement.")]


# ---- the quality judge's options (quantize, prune, factorize; runtime/judge.py) ---------------
def _fraction(flag: str) -> typer.models.OptionInfo:
    return typer.Option(flag, help=f"Task target: {TARGET_HELP[flag]} (0 switches the default off).")


TARGET_HELP = {
    "--min-cosine": "worst channel-group cosine (default 0.99 on generic outputs, per sample on embeddings)",
    "--min-top1-agreement": "top-1 agreement of class outputs along the class axis (default 0.99)",
    "--min-mask-iou": "per-sample mask IoU of probability maps, mean (default 0.985; worst: 0.085 less)",
    "--min-f1": "detection F1 against the original's decoded detections at IoU 0.5 (default 0.95)",
    "--min-string-agreement": "share of CTC-decoded strings identical to the original's (default 0.95)",
    "--min-decision-agreement": "scalar scores' decisions at 0.5 that agree (default 0.99)",
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
OutputKindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--output-kind",
        help="Judge output NAME as KIND: detection[:yolov8|yolov5|nms], classes, sequence, embedding, map, "
        "scalar, generic (repeatable; overrides the inference).",
    ),
]
TaskOpt = Annotated[
    str | None, typer.Option("--task", help="The kind of every output not named by --output-kind.")
]
MetricOpt = Annotated[
    str | None,
    typer.Option("--metric", help="Your own task figure: module:function or file.py:function (see README)."),
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


def quality_from(
    *,
    min_cosine: float | None,
    min_top1_agreement: float | None,
    min_mask_iou: float | None,
    min_f1: float | None,
    min_string_agreement: float | None,
    min_decision_agreement: float | None,
    max_drop: float | None,
    output_kind: list[str] | None,
    task: str | None,
    metric: str | None,
    holdout: float,
    reference: Path | None,
    keep_best: bool,
    require_faster: bool,
    allow_slower: bool,
) -> Quality:
    """The guard's options (``passes/guard.Quality``) from the shared quality options."""
    targets = Targets(
        min_cosine=min_cosine,
        min_top1=min_top1_agreement,
        min_strings=min_string_agreement,
        min_f1=min_f1,
        min_mask_iou=min_mask_iou,
        min_decisions=min_decision_agreement,
        max_drop=max_drop,
    )
    return Quality(
        targets=targets,
        kinds=parse_kind_overrides(output_kind, task),
        metric=metric,
        holdout=holdout,
        reference=reference,
        keep_best=keep_best,
        require_faster=require_faster,
        allow_slower=allow_slower,
    )


def exit_missed(passed: bool, summary: str) -> None:
    """After the report is rendered: exit 3 with one line when the quality target was missed."""
    if not passed:
        raise fail(summary, EXIT_GATE)


stdout = Console(highlight=False, soft_wrap=False)
if not stdout.is_terminal and "COLUMNS" not in os.environ:
    # Logs and pipes: wide enough that per-layer tables do not wrap into unreadable columns.
    stdout.width = 160
stderr = Console(stderr=True, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ModelcrunchError into one stderr line and its exit code (traceback only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_options(kwargs)
            return func(*args, **kwargs)
        except OptionError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT) from None
        except ModelcrunchError as exc:
            if kwargs.get("debug"):
                raise
            raise fail(str(exc).replace("\n", " "), exc.exit_code) from None
        except KeyboardInterrupt:
            raise  # the entry point says "interrupted" (exit 130), wherever the interrupt came
        except MemoryError:
            raise fail("out of memory", EXIT_FAILURE) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the promise: one line, never a traceback
            if kwargs.get("debug"):
                raise
            message, code = describe_unexpected(exc)
            raise fail(message, code) from None

    return wrapper


def shapes_option(values: list[str] | None) -> dict[str, list[int | str]]:
    return parse_shape_overrides(values or [])


def emit_json(document: Any) -> None:
    """Write one JSON document to stdout (nothing else may go to stdout with --json)."""
    text = json.dumps(_finite(document), indent=2, allow_nan=False, default=_json_default)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    """NaN and ±inf (a measurement that could not be made) become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalars
        return _finite(value.item())
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


ProgressFn = Callable[[str, int, int], None]


@contextmanager
def progress_bar(quiet: bool) -> Iterator[ProgressFn | None]:
    """A ``(description, done, total)`` callback drawing a rich bar on stderr, or None.

    Off with --quiet and whenever stderr is not a terminal (CI logs, pipes).
    """
    if quiet or not stderr.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        tasks: dict[str, Any] = {}

        def update(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = progress.add_task(description, total=total)
            progress.update(tasks[description], completed=done, total=total)

        yield update
