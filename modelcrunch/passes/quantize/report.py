"""What ``quantize`` did and measured: frozen dataclasses with ``to_dict()`` (modelcrunch.quantize/1)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import onnx

from modelcrunch.io import node_subgraphs
from modelcrunch.passes.quantize.config import WEIGHTED_OP_TYPES

SCHEMA = "modelcrunch.quantize/1"


@dataclass(frozen=True)
class ExcludedNode:
    name: str
    op_type: str
    reason: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Candidate:
    """One mode tried (``auto`` tries several; an explicit mode is a single candidate)."""

    mode: str
    size_bytes: int
    latency_ratio: float | None  # candidate median / original median (interleaved); < 1 is faster
    worst_cosine: float | None
    accuracy: float | None
    meets_target: bool
    nodes_quantized: int
    nodes_excluded: int
    note: str = ""
    task_loss: float | None = None  # the judge's loss: share of the worst figure's allowance used
    task: str = ""  # the judge's summary

    @property
    def faster(self) -> bool:
        return self.latency_ratio is not None and self.latency_ratio < 1.0

    def to_dict(self) -> dict:
        loss = self.task_loss if self.task_loss is not None and math.isfinite(self.task_loss) else None
        return {**self.__dict__, "task_loss": loss, "faster": self.faster}


@dataclass(frozen=True)
class QuantizeReport:
    model: str
    output: str
    mode: str
    mode_reason: str
    size_before: int
    size_after: int
    fidelity: dict | None  # modelcrunch.runtime.fidelity.Fidelity.to_dict()
    latency: dict | None  # {"original_ms", "quantized_ms", "ratio", "threads", "batch"}
    nodes_quantized: list[str]
    nodes_excluded: list[ExcludedNode]
    op_counts: dict[str, int]  # op types added by quantization (QuantizeLinear, MatMulNBits, ...)
    candidates: list[Candidate]
    calibration: dict
    evaluation: dict
    target: dict
    preprocessing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verdict: dict | None = None  # modelcrunch.runtime.judge.Verdict.to_dict() of the chosen model

    @property
    def passed(self) -> bool:
        """Whether the chosen model met its quality target (the CLI exits 3 when not)."""
        return bool(self.target.get("passed", self.target.get("met", True)))

    @property
    def size_ratio(self) -> float:
        return self.size_after / self.size_before if self.size_before else 1.0

    @property
    def slower(self) -> bool:
        return bool(self.latency and self.latency.get("ratio") and self.latency["ratio"] >= 1.0)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "output": self.output,
            "mode": self.mode,
            "mode_reason": self.mode_reason,
            "size": {
                "before_bytes": self.size_before,
                "after_bytes": self.size_after,
                "ratio": self.size_ratio,
            },
            "fidelity": self.fidelity,
            "latency": self.latency,
            "nodes_quantized": self.nodes_quantized,
            "nodes_excluded": [n.to_dict() for n in self.nodes_excluded],
            "op_counts": self.op_counts,
            "candidates": [c.to_dict() for c in self.candidates],
            "calibration": self.calibration,
            "evaluation": self.evaluation,
            "target": self.target,
            "verdict": self.verdict,
            "passed": self.passed,
            "preprocessing": self.preprocessing,
            "warnings": self.warnings,
            "seconds": self.seconds,
        }


# ---- structural comparison -------------------------------------------------------------------

QUANT_OPS = (
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
    "DynamicQuantizeMatMul", "QLinearConv", "QLinearMatMul", "MatMulNBits", "GatherBlockQuantized", "Cast",
)  # fmt: skip


def _walk(graph: onnx.GraphProto, owner: str | None = None):
    for node in graph.node:
        yield node, graph, owner
        for sub in node_subgraphs(node):
            yield from _walk(sub, f"{node.op_type} '{node.name}'")


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts = Counter(node.op_type for node, _, _ in _walk(model.graph))
    return {op: counts[op] for op in QUANT_OPS if counts[op]}


def op_delta(before: onnx.ModelProto, after: onnx.ModelProto) -> dict[str, int]:
    """Quantization op types whose count changed: {op: count after - count before}."""
    a, b = op_counts(before), op_counts(after)
    return {op: b.get(op, 0) - a.get(op, 0) for op in QUANT_OPS if b.get(op, 0) != a.get(op, 0)}


def weighted_nodes(model: onnx.ModelProto) -> list[tuple[str, str, str | None]]:
    """(name, op_type, owning If/Loop or None) of layers with a constant weight, in graph order."""
    found = []
    for node, graph, owner in _walk(model.graph):
        inits = {t.name for t in graph.initializer}
        weight = node.input[0] if node.op_type == "Gather" else (node.input[1] if len(node.input) > 1 else "")
        if node.op_type in WEIGHTED_OP_TYPES and node.name and (weight in inits or owner is not None):
            found.append((node.name, node.op_type, owner))
    return found


def still_float(after: onnx.ModelProto, dtype_changed: bool = False) -> set[str]:
    """Names of weighted layers in ``after`` that still read a float weight directly."""
    result = set()
    for node, graph, _ in _walk(after.graph):
        if node.op_type not in WEIGHTED_OP_TYPES:
            continue
        floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
        weight = node.input[0] if node.op_type == "Gather" else (node.input[1] if len(node.input) > 1 else "")
        if weight in floats:
            result.add(node.name)
    return result
