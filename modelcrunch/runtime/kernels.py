"""What ONNX Runtime's CPU kernels want from channel counts (the default of ``prune --round-to``).

ORT's CPU provider runs Conv in its blocked NCHWc layout, whose channel block is the SIMD width:
16 floats with AVX-512, 8 with AVX2. Channel counts off the block fall back to slower kernels or
are padded up to it, so a pruned layer with 45 channels costs as much as one with 48 or more.
Measured with ``benchmarks/bench_round_to.py`` (ORT 1.32, AVX-512 CPU, 3x3 Conv pair at 40x40,
1 thread, fastest of 25 interleaved rounds): 45 channels 1.78 ms, 47 1.83 ms, 48 1.23 ms;
49 channels 2.01 ms, 64 channels 2.04 ms. Rounding kept channels up to a multiple of 16 keeps
more channels at the same or lower latency.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: Channel multiple when the CPU's features cannot be read.
FALLBACK_MULTIPLE = 8


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def conv_channel_multiple() -> int:
    """The channel block of ORT's CPU Conv kernels here: 16 (AVX-512), 8 (AVX2 or unknown x86), 4 (ARM)."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return 4
    flags = _cpu_flags()
    if "avx512f" in flags:
        return 16
    return FALLBACK_MULTIPLE
