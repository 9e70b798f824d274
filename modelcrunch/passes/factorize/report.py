"""What ``factorize`` changed and measured: frozen dataclasses with ``to_dict()`` (schema below)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "modelcrunch.factorize/1"


@dataclass(frozen=True)
class LayerReport:
    """One MatMul/Gemm/Conv: factorized (with its ranks and errors) or skipped (with a reason)."""

    name: str
    op_type: str
    graph: str
    status: str  # "factorized" | "skipped"
    reason: str = ""
    method: str = ""
    shape: str = ""
    rank: tuple[int, ...] = ()
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    weight_error: float | None = None
    #: relative layer output error on the calibration data, plain SVD and the factors written
    output_error_plain: float | None = None
    output_error_data_aware: float | None = None
    data_aware: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rank"] = list(self.rank)
        return out


@dataclass(frozen=True)
class FactorizeReport:
    policy: dict[str, Any]
    method: str
    layers: tuple[LayerReport, ...]
    model_params_before: int
    model_params_after: int
    calibration_samples: int = 0
    notes: tuple[str, ...] = ()
    fidelity: dict[str, Any] | None = None
    benchmark: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def factorized(self) -> list[LayerReport]:
        return [layer for layer in self.layers if layer.status == "factorized"]

    @property
    def skipped(self) -> list[LayerReport]:
        return [layer for layer in self.layers if layer.status == "skipped"]

    def totals(self) -> dict[str, Any]:
        """Sums over every MatMul/Gemm/Conv (skipped layers count as unchanged)."""

        def total(key: str) -> int:
            return int(sum(getattr(layer, key) for layer in self.layers))

        return {
            "layers_factorized": len(self.factorized),
            "layers_skipped": len(self.skipped),
            "params_before": total("params_before"),
            "params_after": total("params_after"),
            "macs_before": total("macs_before"),
            "macs_after": total("macs_after"),
            "model_params_before": self.model_params_before,
            "model_params_after": self.model_params_after,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "policy": self.policy,
            "method": self.method,
            "calibration_samples": self.calibration_samples,
            "totals": self.totals(),
            "layers": [layer.to_dict() for layer in self.layers],
            "notes": list(self.notes),
            "fidelity": self.fidelity,
            "benchmark": self.benchmark,
            **self.extra,
        }
