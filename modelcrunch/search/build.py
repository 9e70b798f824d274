"""Build one candidate: structured prune (+ least-squares repair) → factorize → quantize.

Each stage is the library's own, in memory (``ir.Model`` in, ``ir.Model`` out), except the
quantizer, which is file-based today: it is called on paths in a temporary folder and its result
loaded back. Per-layer prune ratios reuse the prune pass's own scoring and selection
(``importance.weight_scores`` / ``select_local``) group by group; per-layer factorization runs the
factorize pass once per distinct energy, the other layers excluded.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.groups import find_groups
from modelcrunch.data import Dataset
from modelcrunch.errors import GateFailed
from modelcrunch.io import load_model
from modelcrunch.passes.factorize.core import FactorizeConfig, RankPolicy, factorize
from modelcrunch.passes.prune import importance as imp
from modelcrunch.passes.prune.repair import repair
from modelcrunch.passes.prune.structured import GroupDecision, apply, ensure_node_names
from modelcrunch.passes.quantize.config import QuantizeOptions
from modelcrunch.passes.quantize.pipeline import quantize_model
from modelcrunch.search.space import ROUND_TO, Settings

logger = logging.getLogger(__name__)

REPAIR_SAMPLES = 64
FACTORIZE_SAMPLES = 64


def prune(original: ir.Model, model: ir.Model, ratios: dict[str, float], calibration: Dataset) -> int:
    """Prune each group named by its first producer at its own ratio, then repair; groups pruned."""
    decisions = []
    for g in find_groups(model):
        ratio = ratios.get(g.producers[0]) if g.reason is None else None
        if not ratio:
            decisions.append(GroupDecision(g, None, "not chosen"))
            continue
        scores = {g.id: imp.weight_scores(model, g, "l2")}
        kept = imp.select_local(scores, {g.id: g.size}, ratio, min_channels=1, round_to=ROUND_TO)[g.id]
        decisions.append(GroupDecision(g, kept, None))
    pruned = [d for d in decisions if d.kept is not None and len(d.kept) < d.group.size]
    if not pruned:
        return 0
    apply(model, decisions)
    feeds = list(Dataset(calibration.samples[:REPAIR_SAMPLES]).batches(32))
    repair(original, model, decisions, feeds)
    return len(pruned)


def factorize_layers(model: ir.Model, energies: dict[str, float], calibration: Dataset) -> int:
    """Factorize each named layer at its energy (one factorize run per distinct energy)."""
    data = Dataset(calibration.samples[:FACTORIZE_SAMPLES])
    done = 0
    for energy in sorted(set(energies.values())):
        wanted = {name for name, e in energies.items() if e == energy}
        others = tuple(n.name for n in model.graph if n.name not in wanted)
        report = factorize(model, FactorizeConfig(policy=RankPolicy("energy", energy), exclude=others), data)
        done += sum(1 for layer in report.layers if layer.status == "factorized")
    return done


def _float_nodes(model: ir.Model, names: set[str]) -> list[str]:
    """Node names to keep in float: the named layers, and the factors that replaced them."""
    return [n.name for n in model.graph if any(n.name == x or n.name.startswith(x + "_lr") for x in names)]


def quantize(
    model: ir.Model, precision: str, floats: set[str], calibration: Dataset, threads: int | None
) -> ir.Model:
    """Run the quantize pipeline with one mode (no guard, no bench) on temporary files."""
    with tempfile.TemporaryDirectory(prefix="modelcrunch-search-") as tmp:
        src, out, calib = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx", Path(tmp) / "calib.npz"
        ir.save(model, src)
        names = calibration.input_names
        np.savez(calib, **{n: np.concatenate([s[n] for s in calibration.samples]) for n in names})
        options = QuantizeOptions(
            mode=precision,
            sensitivity=False,
            bench=False,
            per_token=False,
            exclude=tuple(_float_nodes(model, floats)),
            threads=threads,
            max_eval_samples=16,
            holdout=0.0,  # ``calibration`` is already the search's calibration share
            keep_best=True,  # the search's judge decides, not quantize's own target
        )
        try:
            quantize_model(src, out, options, calibration=calib)
        except GateFailed:
            if not out.is_file():  # keep_best wrote it; a missed target is the judge's to weigh
                raise
        return load_model(out)


def build(
    original: ir.Model, source: Path, settings: Settings, calibration: Dataset, *, threads: int | None = None
) -> ir.Model:
    """The candidate ``settings`` describes, built from a fresh copy of ``source``."""
    model = load_model(source)
    ensure_node_names(model)
    prune(original, model, settings.of_kind("prune"), calibration)
    factorize_layers(model, settings.of_kind("rank"), calibration)
    if settings.precision != "float":
        model = quantize(model, settings.precision, set(settings.of_kind("float")), calibration, threads)
    return model
