"""Process memory readings for the bench: resident set size now, and its peak since a reset.

Method (Linux): ``VmRSS`` and ``VmHWM`` from ``/proc/self/status``; the peak is reset before each
model's session is created by writing ``5`` to ``/proc/self/clear_refs``. A model's memory is
``VmHWM`` after its session creation and warm-up minus ``VmRSS`` just before its creation: the
peak growth its session caused, transient buffers included.

Limits, especially with several models in one process: memory freed by an earlier model (or by
Python) and reused by a later one is not counted again, so later models can read low; memory
the allocator keeps after a free still counts as resident; arena growth after warm-up (new
shapes) is missed; GPU memory is not seen. Where the peak cannot be reset (not Linux, or
clear_refs not writable), the RSS growth after warm-up is used instead (transients missed), and
where nothing can be read (no /proc, no ``resource``) memory is reported as None.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident set size in bytes (None where it cannot be read)."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    try:
        import resource  # noqa: PLC0415 - not on Windows

        # ru_maxrss is a peak, not the current RSS: the best this platform offers.
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return usage * 1024 if usage < 2**40 else usage  # KiB on Linux, bytes on macOS
    except (ImportError, OSError):
        return None


def reset_peak() -> bool:
    """Reset the process's VmHWM to the current RSS; False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``) so that memory an earlier model
    freed is not silently reused, uncounted, by the next one. No-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_bytes() -> int | None:
    """VmHWM (peak RSS since start or the last reset) in bytes."""
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else None


class MemoryProbe:
    """``with`` block measuring peak RSS growth (bytes) across it; ``growth`` is None if unreadable."""

    def __init__(self) -> None:
        self.growth: int | None = None
        self.method = "unavailable"

    def __enter__(self) -> MemoryProbe:
        release_free_memory()
        self._peak_reset = reset_peak()
        self._before = rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is None:
            return
        peak = peak_bytes() if self._peak_reset else None
        if peak is not None:
            self.growth, self.method = max(peak - self._before, 0), "peak-rss"
        else:
            after = rss_bytes()
            if after is not None:
                self.growth, self.method = max(after - self._before, 0), "rss-delta"
