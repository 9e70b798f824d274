"""Exceptions that the CLI turns into one line on stderr and a documented exit code.

Exit codes (documented in the README):

* 0 — success
* 1 — failure: the work could not be done (e.g. a produced model failed verification)
* 2 — bad usage or bad input (missing file, not an ONNX model, bad option value, ...)
* 3 — a quality or speed gate failed

Real bugs are *not* ModelcrunchErrors: they stay loud (traceback) so they get fixed.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_GATE = 3


class ModelcrunchError(Exception):
    """An error that is the user's fault (bad input, bad option): one line, exit code 2."""

    exit_code: int = EXIT_BAD_INPUT


class VerificationError(ModelcrunchError):
    """A model modelcrunch produced did not pass the checker or does not run: exit code 1."""

    exit_code = EXIT_FAILURE


class GateFailed(ModelcrunchError):
    """A quality/speed gate the user asked for failed: exit code 3."""

    exit_code = EXIT_GATE
