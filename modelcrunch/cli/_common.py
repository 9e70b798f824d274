"""What every command shares: option types, error handling, JSON output, progress bars.

Keep this module small: anything that is not CLI plumbing belongs in the library.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
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
from modelcrunch.cli._progress import PlainProgress
from modelcrunch.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_GATE, ModelcrunchError
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
BatchOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Set every input's first symbolic dim (e.g. batch) to N."),
]
OverwriteInputOpt = Annotated[
    bool, typer.Option("--overwrite-input", help="Allow -o to name the input model itself.")
]
EvalOpt = Annotated[Path | None, typer.Option("--eval", help="Held-out data for the fidelity report.")]
NoMeasureOpt = Annotated[bool, typer.Option("--no-measure", help="Skip fidelity and latency measurement.")]


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

    Off with --quiet. When stderr is not a terminal (CI logs, pipes): plain periodic lines with an
    ETA instead (``cli/_progress.py``).
    """
    if quiet:
        yield None
        return
    if not stderr.is_terminal:
        yield PlainProgress(sys.stderr)
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


def parse_duration(text: str | None, option: str = "--time-budget") -> float | None:
    """``90``, ``90s``, ``15m`` or ``1.5h`` -> seconds (``None`` stays ``None``)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ModelcrunchError(f"{option} {text!r}: give a positive duration such as 90s, 15m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


# ---- the quality judge's kind and metric options (quantize, prune, factorize, bench) ----------
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
