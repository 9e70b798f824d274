"""Memory budgets: refuse, in one line, an allocation that cannot fit, before making it.

The budget is the smaller of the memory the system reports available (``MemAvailable``) and what
is left of the process's address-space limit (``RLIMIT_AS``, as CI sandboxes set). Callers reserve
from the sizes they are about to allocate (an array's ``shape × itemsize``, read from a file's
header before its data), with a share for the copies the work makes of it.
"""

from __future__ import annotations

import math
import os
import resource

from modelcrunch.errors import ModelcrunchError

#: The share of the budget one input (a dataset, a synthesized feed) may take: the commands hold
#: a few copies of their data (samples, batches, the reference's and the candidate's outputs).
DATA_SHARE = 0.25
_GB = 2**30


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_left() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(soft - used, 0)


def available_bytes() -> int:
    """Memory this process can still use (bytes), as far as the system says."""
    limits = [v for v in (_meminfo("MemAvailable"), _address_space_left()) if v is not None]
    if not limits:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return 2**62
    return min(limits)


def nbytes(shape: tuple[int, ...] | list[int], itemsize: int) -> int:
    """Bytes of an array of ``shape`` (Python integers: no overflow on absurd dims)."""
    return math.prod(int(d) for d in shape) * int(itemsize)


def reserve(size: int, what: str, *, share: float = DATA_SHARE) -> None:
    """Raise ModelcrunchError unless ``size`` bytes fit in ``share`` of the memory available."""
    budget = int(available_bytes() * share)
    if size > budget:
        raise ModelcrunchError(
            f"{what} needs {size / _GB:.3g} GB of memory; modelcrunch allows one input "
            f"{share:.0%} of the {budget / share / _GB:.3g} GB available"
        )
