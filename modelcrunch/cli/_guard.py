"""The CLI's last line of defence: option ranges, and one line for any error that escapes.

* :func:`check_options` checks every command's options by name before the command runs: every
  float is finite, every integer fits in 32 bits, and the options in :data:`RANGES` lie in their
  range (``--threads 100000`` would start 100000 threads; ``--duration inf`` never ends).
* :func:`describe_unexpected` turns an exception that is not a ModelcrunchError into one line and
  an exit code: ONNX Runtime rejecting a model or inputs, a numerical (LAPACK) failure, or an OS
  error is bad input (exit 2); anything else is a bug in modelcrunch (exit 1, "please report").
"""

from __future__ import annotations

import math
import os
from typing import Any

from modelcrunch.errors import EXIT_BAD_INPUT, EXIT_FAILURE

#: The most intra/inter-op threads a session may be asked for (ONNX Runtime starts them all).
MAX_THREADS = max(64, 8 * (os.cpu_count() or 1))
#: The longest time budget a measurement may be given, in seconds.
MAX_SECONDS = 3600.0
MAX_RUNS = 10_000_000
INT32 = 2**31

# name: (low, high, low inclusive, high inclusive). None = unbounded.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "threads": (0, MAX_THREADS, True, True),
    "inter_threads": (0, MAX_THREADS, True, True),
    "duration": (0, MAX_SECONDS, False, True),
    "bench_seconds": (0, MAX_SECONDS, False, True),
    "warmup": (0, MAX_RUNS, True, True),
    "runs": (1, MAX_RUNS, True, True),
    "seed": (0, 2**32 - 1, True, True),
    "top": (0, None, True, True),
    "batch": (1, None, True, True),
    "ratio": (0, 1, True, False),
    "min_keep_ratio": (0, 1, True, True),
    "min_channels": (1, None, True, True),
    "round_to": (1, 2**16, True, True),
    "min_size": (0, None, True, True),
    "sparsity": (0, 1, True, False),
    "threshold": (0, None, True, True),
    "rank_ratio": (0, 1, False, True),
    "energy": (0, 1, False, True),
    "target_params": (0, 1, False, True),
    "target_macs": (0, 1, False, True),
    "min_cosine": (0, 1, True, True),
    "min_top1_agreement": (0, 1, True, True),
    "min_mask_iou": (0, 1, True, True),
    "min_f1": (0, 1, True, True),
    "min_string_agreement": (0, 1, True, True),
    "min_decision_agreement": (0, 1, True, True),
    "holdout": (0, 1, True, False),
    "max_drop": (0, None, True, True),
    "max_accuracy_drop": (0, 1, True, True),
    "max_channel_error": (0, None, True, True),
    "max_latency_ratio": (0, None, False, True),
    "max_memory_ratio": (0, None, False, True),
    "max_size_ratio": (0, None, False, True),
    "max_samples": (1, None, True, True),
    "eval_samples": (1, None, True, True),
    "block_size": (1, 2**16, True, True),
}


class OptionError(ValueError):
    """An option value out of range (the message is the one line to print)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _range_text(low: float | None, high: float | None, low_in: bool, high_in: bool) -> str:
    if low is not None and high is not None:
        return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
    if low is not None:
        return f"{'>=' if low_in else '>'} {low:g}"
    return f"{'<=' if high_in else '<'} {high:g}"


def check_options(options: dict[str, Any]) -> None:
    """Raise OptionError naming the first option whose value is out of range."""
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"{_flag(name)} {value}: must be a finite number")
        if isinstance(value, int) and not -INT32 <= value < INT32:
            raise OptionError(f"{_flag(name)} {value}: out of range")
        rule = RANGES.get(name)
        if rule is None:
            continue
        low, high, low_in, high_in = rule
        below = low is not None and (value < low or (value == low and not low_in))
        above = high is not None and (value > high or (value == high and not high_in))
        if below or above:
            raise OptionError(f"{_flag(name)} {value:g}: must be {_range_text(*rule)}")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def describe_unexpected(exc: BaseException) -> tuple[str, int]:
    """(one line, exit code) for an exception that is not a ModelcrunchError."""
    module = type(exc).__module__ or ""
    if module.startswith("onnxruntime"):
        return f"ONNX Runtime rejected the model or its inputs: {_first_line(exc)}", EXIT_BAD_INPUT
    if type(exc).__name__ == "LinAlgError":
        return (
            f"a numerical routine failed ({_first_line(exc)}); the weights or data may hold NaN/Inf",
            EXIT_BAD_INPUT,
        )
    if isinstance(exc, RecursionError):
        return "the model is nested too deeply to process", EXIT_BAD_INPUT
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{where}{exc.strerror or _first_line(exc)}", EXIT_BAD_INPUT
    return (
        f"internal error ({type(exc).__name__}: {_first_line(exc)}); please report it "
        "(run with --debug for the traceback)",
        EXIT_FAILURE,
    )
