"""``--mode auto``: which modes to try, and which result to keep.

Candidates follow the model's content: static int8 where there are convolutions (QLinearConv pays
on CPU), dynamic int8 and static int8 where there are constant-weight MatMul/Gemm, MatMulNBits
where there are MatMuls, and always the storage-only int8 form (≈4x smaller at unchanged speed,
the fall-back). Choice: the fastest candidate that meets the fidelity target and is faster than
the original by more than the noise margin; otherwise the smallest that meets the target (and
the report says that none was faster); otherwise the most faithful one (and it says so).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import onnx

from modelcrunch.passes.quantize.config import Mode
from modelcrunch.passes.quantize.report import Candidate

#: A candidate counts as faster only below this latency ratio (interleaved medians are noisy).
FASTER_BELOW = 0.97
#: ... and counts as "unchanged speed" up to this ratio.
NOT_SLOWER_BELOW = 1.05


def candidate_modes(model: onnx.ModelProto) -> list[Mode]:
    inits = {t.name for t in model.graph.initializer}
    ops = Counter(node.op_type for node in model.graph.node)
    const_matmuls = sum(
        1 for node in model.graph.node
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits
    )  # fmt: skip
    modes: list[Mode] = []
    if ops["Conv"]:
        modes.append(Mode.STATIC)
    if const_matmuls:
        modes.append(Mode.DYNAMIC)
        if Mode.STATIC not in modes:
            modes.append(Mode.STATIC)
        if not ops["Conv"]:
            modes.append(Mode.WEIGHT_ONLY)
    modes.append(Mode.STORAGE)
    return modes


def choose(candidates: Sequence[Candidate]) -> tuple[int, str]:
    """Index of the candidate to keep, and why."""
    meeting = [i for i, c in enumerate(candidates) if c.meets_target and c.nodes_quantized > 0]
    faster = [
        i
        for i in meeting
        if candidates[i].latency_ratio is not None and candidates[i].latency_ratio < FASTER_BELOW
    ]
    if faster:
        best = min(faster, key=lambda i: candidates[i].latency_ratio or math.inf)
        return best, (
            f"fastest candidate meeting the fidelity target ({candidates[best].latency_ratio:.2f}x latency "
            f"of the original)"
        )
    if meeting and all(candidates[i].latency_ratio is None for i in meeting):
        best = min(meeting, key=lambda i: candidates[i].size_bytes)
        return best, "latency not measured (--no-bench); kept the smallest that meets the fidelity target"
    not_slower = [i for i in meeting if (candidates[i].latency_ratio or math.inf) <= NOT_SLOWER_BELOW]
    if not_slower:
        best = min(not_slower, key=lambda i: candidates[i].size_bytes)
        return best, (
            "no candidate was faster than the original; kept the smallest that meets the fidelity target "
            f"at unchanged speed ({candidates[best].latency_ratio:.2f}x latency)"
        )
    if meeting:
        best = min(meeting, key=lambda i: candidates[i].latency_ratio or math.inf)
        return (
            best,
            "every candidate meeting the fidelity target is SLOWER than the original; kept the fastest",
        )
    best = min(range(len(candidates)), key=lambda i: _loss(candidates[i]))
    return best, "NO candidate met the fidelity target; kept the most faithful one"


def too_slow(candidate: Candidate) -> bool:
    """Slower than the original beyond the noise margin (``NOT_SLOWER_BELOW``)."""
    return candidate.latency_ratio is not None and candidate.latency_ratio > NOT_SLOWER_BELOW


def _loss(candidate: Candidate) -> float:
    if candidate.task_loss is not None and math.isfinite(candidate.task_loss):
        return candidate.task_loss
    return 1.0 - _finite(candidate.worst_cosine) + (0.0 if candidate.task_loss is None else math.inf)


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf
