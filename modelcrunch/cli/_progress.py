"""Progress for logs: plain periodic lines with an ETA when stderr is not a terminal (CI, pipes).

``[1m05s] repairing layers: 12/59 (20%), ETA 4m20s`` at most every ``MODELCRUNCH_PROGRESS_INTERVAL``
seconds (default 10); the ETA extrapolates the current phase's own rate. A run shorter than the
interval prints nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TextIO

DEFAULT_INTERVAL_S = 10.0


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class PlainProgress:
    """A ``(description, done, total)`` callback writing throttled plain lines to ``stream``."""

    def __init__(
        self,
        stream: TextIO,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s is None:
            try:
                interval_s = float(os.environ.get("MODELCRUNCH_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S))
            except ValueError:
                interval_s = DEFAULT_INTERVAL_S
        self.stream, self.interval_s, self.clock = stream, interval_s, clock
        self.started = self.last = clock()
        self.phases: dict[str, tuple[float, int, int]] = {}  # begun, done then, latest done

    def __call__(self, description: str, done: int, total: int) -> None:
        now = self.clock()
        begun, done_then, latest = self.phases.get(description, (now, done, done))
        if done < latest:  # the same phase begun again (a second candidate's sensitivity)
            begun, done_then = now, done
        self.phases[description] = (begun, done_then, done)
        if now - self.last < self.interval_s:
            return
        self.last = now
        line = f"[{_duration(now - self.started)}] {description}: {done}/{total}"
        if total > 0:
            line += f" ({min(done / total, 1):.0%})"
        if total > done > done_then and now > begun:
            rate = (done - done_then) / (now - begun)
            line += f", ETA {_duration((total - done) / rate)}"
        self.stream.write(line + "\n")
        self.stream.flush()
