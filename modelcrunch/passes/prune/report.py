"""What ``modelcrunch prune`` changed and measured: frozen dataclasses with ``to_dict()``.

Per-layer parameters and MACs are computed from the graph: shapes from ``onnx.shape_inference``,
symbolic dims (batch) counted as 1. MACs of Conv = ``Cout·Ho·Wo·(Cin/g)·prod(k)``; ConvTranspose =
``Cin·H·W·(Cout/g)·prod(k)``; Gemm/MatMul = ``prod(output dims)·K``. Other ops are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.groups import GraphFacts, const_array

SCHEMA = "modelcrunch.prune/1"
LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class LayerStats:
    name: str
    op_type: str
    in_channels: int
    out_channels: int
    params: int
    macs: int


def _prod(dims) -> int:
    return int(np.prod([1 if d is None else d for d in dims], dtype=np.int64))


def layer_stats(model: ir.Model) -> dict[str, LayerStats]:
    """Parameters and MACs (batch 1) of every Conv/ConvTranspose/Gemm/MatMul with a constant weight."""
    facts = GraphFacts(model)
    stats = {}
    for node in model.graph:
        if node.op_type not in LINEAR_OPS or len(node.inputs) < 2:
            continue
        w = const_array(node.inputs[1])
        if w is None:
            continue
        params = int(w.size) + sum(
            int(const_array(v).size) for v in node.inputs[2:] if v is not None and const_array(v) is not None
        )
        out_shape = facts.shape(node.outputs[0]) or ()
        attr = node.attributes.get("group")
        group = attr.value if attr is not None else 1
        if node.op_type == "Conv":
            cin, cout = w.shape[1] * group, w.shape[0]
            macs = _prod(out_shape[1:]) * int(np.prod(w.shape[1:]))
        elif node.op_type == "ConvTranspose":
            cin, cout = w.shape[0], w.shape[1] * group
            macs = _prod((facts.shape(node.inputs[0]) or ())[1:]) * int(np.prod(w.shape[1:]))
        else:
            trans = node.attributes.get("transB")
            k, n = (w.shape[1], w.shape[0]) if trans is not None and trans.value else (w.shape[0], w.shape[1])
            cin, cout = k, n
            macs = _prod(out_shape[:-1]) * n * k if out_shape else n * k
        stats[node.name] = LayerStats(node.name, node.op_type, int(cin), int(cout), params, int(macs))
    return stats


@dataclass(frozen=True)
class LayerChange:
    name: str
    op_type: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class SkippedGroup:
    producers: tuple[str, ...]
    channels: int
    reason: str

    def to_dict(self) -> dict:
        return {"producers": list(self.producers), "channels": self.channels, "reason": self.reason}


@dataclass(frozen=True)
class PruneReport:
    model: str
    output: str
    mode: str  # "structured" | "magnitude" | "nm"
    options: dict
    layers: tuple[LayerChange, ...] = ()
    groups_total: int = 0
    groups_pruned: int = 0
    skipped: tuple[SkippedGroup, ...] = ()
    sparsity: tuple = ()  # SparseLayer
    left_dense: tuple[str, ...] = ()
    repaired: tuple = ()  # RepairedLayer
    sparse_storage: object | None = None  # SparseStorage
    size_before: int = 0
    size_after: int = 0
    fidelity_before_repair: object | None = None  # runtime.fidelity.Fidelity
    fidelity: object | None = None
    latency: object | None = None  # runtime.bench.BenchResult
    notes: tuple[str, ...] = field(default_factory=tuple)
    verdict: dict | None = None  # runtime.judge.Verdict.to_dict()
    passed: bool = True  # met the quality target and not slower (else exit 3)
    search: tuple = ()  # the ratios tried by the strength search (guard.Attempt.to_dict())

    @property
    def params_before(self) -> int:
        return sum(x.params_before for x in self.layers)

    @property
    def params_after(self) -> int:
        return sum(x.params_after for x in self.layers)

    @property
    def macs_before(self) -> int:
        return sum(x.macs_before for x in self.layers)

    @property
    def macs_after(self) -> int:
        return sum(x.macs_after for x in self.layers)

    @property
    def macs_ratio(self) -> float | None:
        return self.macs_after / self.macs_before if self.macs_before else None

    def to_dict(self) -> dict:
        def d(x):
            return None if x is None else x.to_dict()

        return {
            "schema": SCHEMA,
            "model": self.model,
            "output": self.output,
            "mode": self.mode,
            "options": self.options,
            "totals": {
                "params_before": self.params_before,
                "params_after": self.params_after,
                "macs_before": self.macs_before,
                "macs_after": self.macs_after,
                "macs_ratio": self.macs_ratio,
                "size_before": self.size_before,
                "size_after": self.size_after,
                "groups_total": self.groups_total,
                "groups_pruned": self.groups_pruned,
                "groups_skipped": len(self.skipped),
            },
            "layers": [x.to_dict() for x in self.layers],
            "skipped_groups": [x.to_dict() for x in self.skipped],
            "sparsity": [x.to_dict() for x in self.sparsity],
            "left_dense": list(self.left_dense),
            "repaired_layers": [x.to_dict() for x in self.repaired],
            "sparse_storage": d(self.sparse_storage),
            "fidelity_before_repair": d(self.fidelity_before_repair),
            "fidelity": d(self.fidelity),
            "latency": d(self.latency),
            "notes": list(self.notes),
            "verdict": self.verdict,
            "passed": self.passed,
            "search": list(self.search),
        }


def compare_layers(before: dict[str, LayerStats], after: dict[str, LayerStats]) -> tuple[LayerChange, ...]:
    changes = []
    for name, b in before.items():
        a = after.get(name, b)
        changes.append(
            LayerChange(
                name,
                b.op_type,
                b.in_channels,
                a.in_channels,
                b.out_channels,
                a.out_channels,
                b.params,
                a.params,
                b.macs,
                a.macs,
            )
        )
    return tuple(changes)
