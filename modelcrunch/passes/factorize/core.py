"""The factorize pass: pick layers, choose ranks, write the factors, report every layer.

Flow: ``find_layers`` (every MatMul/Gemm/Conv of every graph, or a skip reason) → optional
calibration statistics (``calibration.collect_grams``) → one decomposition per layer (SVD for
MatMul/Gemm, the chosen conv method) → ranks from the policy (``modelcrunch.analysis.ranks``) →
layers whose factors would not be smaller are skipped ("no saving") → the node is replaced by its
factor chain. With calibration the written factors are the whitened-SVD ones and each layer also
reports the output error plain SVD would have had at the same rank.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from modelcrunch.analysis import ranks as rank_rules
from modelcrunch.analysis.shapes import infer_shapes
from modelcrunch.data import Dataset
from modelcrunch.errors import ModelcrunchError
from modelcrunch.passes.factorize.calibration import calibration_problem, collect_grams
from modelcrunch.passes.factorize.conv_channel import ConvChannel
from modelcrunch.passes.factorize.conv_spatial import ConvSpatial
from modelcrunch.passes.factorize.conv_tucker import ConvTucker
from modelcrunch.passes.factorize.layers import Layer, find_layers
from modelcrunch.passes.factorize.linear import LinearSvd
from modelcrunch.passes.factorize.lowrank import (
    MatrixDecomposition,
    NameScope,
    output_error,
    replace_layer,
    weight_error,
)
from modelcrunch.passes.factorize.report import FactorizeReport, LayerReport

logger = logging.getLogger(__name__)

CONV_METHODS = ("svd", "channel", "spatial", "tucker")
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RankPolicy:
    """Exactly one of: rank ratio, energy, or a global parameter/MAC budget (all in (0, 1])."""

    kind: str  # "ratio" | "energy" | "params" | "macs"
    value: float
    round_to: int = 1

    @classmethod
    def from_options(
        cls,
        *,
        rank_ratio: float | None = None,
        energy: float | None = None,
        target_params: float | None = None,
        target_macs: float | None = None,
        round_to: int = 1,
    ) -> RankPolicy:
        given = {
            k: v
            for k, v in (
                ("ratio", rank_ratio),
                ("energy", energy),
                ("params", target_params),
                ("macs", target_macs),
            )
            if v is not None
        }
        flags = {
            "ratio": "--rank-ratio",
            "energy": "--energy",
            "params": "--target-params",
            "macs": "--target-macs",
        }
        if len(given) > 1:
            raise ModelcrunchError(f"choose one of {', '.join(flags[k] for k in given)}, not several")
        kind, value = next(iter(given.items())) if given else ("energy", 0.95)
        if not 0.0 < value <= 1.0:
            raise ModelcrunchError(f"{flags[kind]} must be in (0, 1], got {value}")
        if round_to < 1:
            raise ModelcrunchError(f"--round-to must be >= 1, got {round_to}")
        return cls(kind, float(value), int(round_to))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "round_to": self.round_to}


@dataclass(frozen=True)
class FactorizeConfig:
    policy: RankPolicy = field(default_factory=lambda: RankPolicy("energy", 0.95))
    method: str = "channel"  # for Conv; "svd" is an alias of "channel"
    min_size: int = 0
    exclude: Sequence[str] = ()
    data_aware: bool = True  # use calibration statistics when a dataset is given
    #: rank selection from the whitened spectra (True) or the plain weight spectra (False, "equal rank")
    data_aware_ranks: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.method not in CONV_METHODS:
            raise ModelcrunchError(f"--method must be one of {', '.join(CONV_METHODS)}, not '{self.method}'")
        if self.min_size < 0:
            raise ModelcrunchError(f"--min-size must be >= 0, got {self.min_size}")


def _decomposition(layer: Layer, method: str, gram: np.ndarray | None) -> tuple[MatrixDecomposition, str]:
    """The decomposition for ``layer`` and a note when the conv method had to change."""
    if layer.kind == "linear":
        return LinearSvd(layer, gram), ""
    kernel = layer.matrix.shape
    pointwise = all(k == 1 for k in kernel[2:])
    if method == "spatial" and not ConvSpatial.applies(kernel):
        return ConvChannel(
            layer, gram
        ), "spatial SVD needs a 2-D kernel larger than 1 in both axes; used channel"
    if method == "spatial":
        return ConvSpatial(layer), ""
    if method == "tucker" and pointwise:
        return ConvChannel(layer, gram), "1×1 conv: Tucker-2 adds nothing over channel; used channel"
    if method == "tucker":
        return ConvTucker(layer), ""
    return ConvChannel(layer, gram), ""


def _ranks_by_rule(decomp: MatrixDecomposition, policy: RankPolicy, data_aware: bool) -> tuple[int, ...]:
    if policy.kind == "ratio":
        return tuple(rank_rules.rank_for_ratio(m, policy.value, policy.round_to) for m in decomp.max_ranks)
    return tuple(
        rank_rules.rank_for_energy(e, policy.value, policy.round_to) for e in decomp.energies(data_aware)
    )


def _budget_item(
    key: str, decomp: MatrixDecomposition, data_aware: bool, round_to: int
) -> rank_rules.BudgetItem:
    params, macs = decomp.layer.params, decomp.layer.macs
    if isinstance(decomp, ConvTucker):
        ladder = decomp.ladder(round_to)
    else:
        top = decomp.max_ranks[0]
        ladder = sorted({rank_rules.round_rank(r, round_to, top) for r in range(1, top + 1)}, reverse=True)
        ladder = [(r,) for r in ladder]
    options = []
    for ranks in ladder:
        p, m = decomp.cost(ranks)
        if p < params:
            options.append(rank_rules.RankOption(ranks, p, m, decomp.loss(ranks, data_aware)))
    return rank_rules.BudgetItem(key, params, macs, tuple(options))


def _choose_ranks(
    decomps: dict[str, MatrixDecomposition], policy: RankPolicy, data_aware: dict[str, bool]
) -> dict[str, tuple[int, ...] | None]:
    if policy.kind in ("ratio", "energy"):
        return {k: _ranks_by_rule(d, policy, data_aware[k]) for k, d in decomps.items()}
    items = [_budget_item(k, d, data_aware[k], policy.round_to) for k, d in decomps.items()]
    chosen = rank_rules.allocate_budget(items, policy.value, policy.kind)
    return {k: (chosen[k].ranks if k in chosen else None) for k in decomps}


def _param_count(model: ir.Model) -> int:
    return sum(
        math.prod(v.const_value.shape.numpy()) if v.const_value is not None else 0
        for g in model.graphs()
        for v in g.initializers.values()
    )


def _skip(layer: Layer, reason: str, method: str = "") -> LayerReport:
    return LayerReport(
        layer.name,
        layer.op_type,
        layer.in_graph,
        "skipped",
        reason,
        method,
        layer.shape_text,
        (),
        layer.params,
        layer.params,
        layer.macs,
        layer.macs,
    )


def factorize(
    model: ir.Model,
    config: FactorizeConfig,
    calibration: Dataset | None = None,
    *,
    shapes: dict[str, list[int | str]] | None = None,
    on_progress: ProgressFn | None = None,
    gram_cache: dict[str, np.ndarray] | None = None,
) -> FactorizeReport:
    """Factorize ``model`` in place and return the report (see the module docstring).

    ``gram_cache``: the calibration statistics of an earlier call on the same model and data (a
    strength search factorizes fresh copies at several ranks); filled on the first call.

    ``shapes`` (``--shape``) fixes dynamic input dims for MAC counting; a symbolic batch dim counts
    as 1 (MACs per sample), and any other dim left unknown counts as 1, which the notes say.
    """
    params_before = _param_count(model)
    try:  # declared shapes on intermediate values (used when collecting calibration activations)
        ShapeInferencePass()(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises many types
        logger.warning("shape inference failed (%s); MACs are counted per output position", exc)
    table, _ = infer_shapes(model, shapes, batch=1)
    unknown_dims: set[str] = set()

    def shape_of(value: ir.Value):
        shape = table.shape(value) or value.shape
        if shape is not None and any(not isinstance(d, int) or d <= 0 for d in shape):
            unknown_dims.add(value.name or "?")
        return shape

    layers, skipped = find_layers(model, exclude=config.exclude, min_size=config.min_size, shape_of=shape_of)
    notes: list[str] = []
    if unknown_dims:
        notes.append(
            f"{len(unknown_dims)} layer shape(s) have unknown dims, counted as 1 in MACs "
            "(MACs per position); pass --shape NAME=DIMS to count them"
        )
    grams: dict[str, np.ndarray] = {}
    if calibration is not None and config.data_aware and layers:
        if gram_cache:
            grams = gram_cache
        else:
            grams = collect_grams(
                model, layers, calibration, batch_size=config.batch_size, on_progress=on_progress
            )
            if gram_cache is not None:
                gram_cache.update(grams)
    decomps: dict[str, MatrixDecomposition] = {}
    method_notes: dict[str, str] = {}
    for i, layer in enumerate(layers, start=1):
        decomps[layer.key], method_notes[layer.key] = _decomposition(
            layer, config.method, grams.get(layer.key)
        )
        if on_progress is not None:
            on_progress("decomposing", i, len(layers))
    data_aware = {k: d.white is not None and config.data_aware_ranks for k, d in decomps.items()}
    chosen = _choose_ranks(decomps, config.policy, data_aware)

    names = NameScope(model)
    reports: list[tuple[int, LayerReport]] = [
        (
            s.seq,
            LayerReport(
                s.name, s.op_type, s.graph, "skipped", s.reason, params_before=s.params, params_after=s.params
            ),
        )
        for s in skipped
    ]
    for layer in layers:
        decomp, ranks = decomps[layer.key], chosen[layer.key]
        if ranks is None:
            reports.append(
                (layer.seq, _skip(layer, "kept whole: the global budget was met without it", decomp.method))
            )
            continue
        params_after, macs_after = decomp.cost(ranks)
        if params_after >= layer.params:
            reports.append((layer.seq, _skip(layer, _no_saving(layer, ranks, params_after), decomp.method)))
            continue
        reports.append(
            (
                layer.seq,
                _rewrite(
                    layer, decomp, ranks, names, calibration is not None, method_notes[layer.key], model
                ),
            )
        )
    if calibration is not None and not config.data_aware:
        notes.append("data-aware factorization disabled: plain SVD factors written")
    return FactorizeReport(
        policy=config.policy.to_dict(),
        method=config.method,
        layers=tuple(report for _, report in sorted(reports, key=lambda pair: pair[0])),
        model_params_before=params_before,
        model_params_after=_param_count(model),
        calibration_samples=len(calibration) if calibration is not None else 0,
        notes=tuple(notes),
    )


def _no_saving(layer: Layer, ranks: tuple[int, ...], params_after: int) -> str:
    rank_text = "×".join(map(str, ranks))
    if layer.kind == "linear":
        k, n = layer.matrix.shape
        return f"no saving: rank {rank_text}·({k}+{n}) = {params_after} ≥ {k}·{n} = {layer.params}"
    return f"no saving at rank {rank_text}: {params_after} ≥ {layer.params} parameters"


def _rewrite(
    layer: Layer,
    decomp: MatrixDecomposition,
    ranks: tuple[int, ...],
    names: NameScope,
    calibrated: bool,
    note: str,
    model: ir.Model,
) -> LayerReport:
    use_data = decomp.white is not None
    factors = decomp.factors(ranks, data_aware=use_data)
    approx = decomp.product(factors)
    err_plain = err_data = None
    if decomp.gram is not None:
        plain_approx = decomp.product(decomp.factors(ranks, data_aware=False))
        err_plain = output_error(decomp.matrix, plain_approx, decomp.gram)
        err_data = output_error(decomp.matrix, approx, decomp.gram)
    elif calibrated:
        why = calibration_problem(layer, model) or f"method {decomp.method} has no data-aware variant"
        note = "; ".join(filter(None, [note, f"plain SVD ({why})"]))
    params_after, macs_after = decomp.cost(ranks)
    replace_layer(layer, decomp.emit(factors, names))
    logger.info("factorized %s at rank %s", layer.name, ranks)
    return LayerReport(
        layer.name,
        layer.op_type,
        layer.in_graph,
        "factorized",
        note,
        decomp.method,
        layer.shape_text,
        ranks,
        layer.params,
        params_after,
        layer.macs,
        macs_after,
        weight_error(layer.matrix, decomp.from_matrix(approx)),
        err_plain,
        err_data,
        use_data,
    )
