"""``modelcrunch prune`` as one library call: load, prune (structured, magnitude or N:M), repair,
save (verified), optionally store sparse, then measure fidelity and interleaved latency vs the
original. The CLI only parses options, calls :func:`prune_file` and renders the report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from modelcrunch.analysis.quantized import optimized_layers, summary
from modelcrunch.data import Dataset
from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import load_model, model_size_bytes, stage_model
from modelcrunch.passes.prune import report as rep
from modelcrunch.passes.prune.magnitude import magnitude_prune
from modelcrunch.passes.prune.nm import nm_prune
from modelcrunch.passes.prune.repair import repair
from modelcrunch.passes.prune.sparse_storage import store_sparse
from modelcrunch.passes.prune.structured import StructuredOptions, ensure_node_names, prune_structured
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.feeds import check_dataset, synthesize_feeds
from modelcrunch.runtime.fidelity import measure_fidelity
from modelcrunch.runtime.session import make_session
from modelcrunch.shapes import data_batch, with_data_shapes

logger = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None] | None

DENSE_NOTE = (
    "unstructured/N:M sparsity keeps tensor shapes: dense CPU kernels are not faster; it saves "
    "file size only with --sparse-storage or compression, and N:M needs sparse GPU kernels"
)


@dataclass(frozen=True)
class PruneConfig:
    structured: StructuredOptions | None = None
    sparsity: float | None = None
    threshold: float | None = None
    pattern: tuple[int, int] | None = None
    scope: str = "local"
    all_weights: bool = False
    exclude: tuple[str, ...] = ()
    sparse_storage: bool = False
    repair: bool = True
    calib_batch: int = 32
    measure: bool = True
    bench_batch: int = 1
    threads: int | None = None
    bench_seconds: float = 4.0
    shapes: dict[str, list[int | str]] | None = None  # --shape: open input dims fixed (data fills the rest)
    batch: int | None = None  # --batch: the first symbolic dim of synthesized inputs

    @property
    def mode(self) -> str:
        if self.structured is not None:
            return "structured"
        return "nm" if self.pattern is not None else "magnitude"


def _labels(ds: Dataset | None) -> np.ndarray | None:
    if ds is None:
        return None
    for key in ("label", "labels", "target", "y"):
        if key in ds.labels:
            return ds.labels[key]
    return None


def _fidelity(reference, candidate, data: Dataset | None, batch: int, fallback: dict):
    feeds = list(data.batches(batch)) if data is not None else [fallback]
    return measure_fidelity(reference, candidate, feeds, labels=_labels(data))


#: A pruned model whose latency ratio is at least this is "not measurably faster".
NOT_FASTER = 0.98


def _speed_notes(latency, round_to: int) -> list[str]:  # noqa: ANN001 - runtime.bench.BenchResult
    """A note when structured pruning did not make the model measurably faster."""
    base, new = latency.models
    ratio = new.latency.p50_ms / base.latency.p50_ms
    if ratio < NOT_FASTER:
        return []
    hint = (
        "channel counts off the CPU kernels' block run slower kernels: drop --round-to 1"
        if round_to == 1
        else "a larger --ratio, or other layers, may pay; this model is no faster as it is"
    )
    return [f"the pruned model is NOT faster than the original (latency ×{ratio:.2f}): {hint}"]


def prune_file(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    config: PruneConfig,
    *,
    calibration: Dataset | None = None,
    evaluation: Dataset | None = None,
    overwrite_input: bool = False,
    on_progress: Progress = None,
) -> rep.PruneReport:
    """Prune ``model_path`` into ``output`` and report what changed and what it costs."""
    modes = [
        config.structured is not None,
        config.sparsity is not None or config.threshold is not None,
        config.pattern is not None,
    ]
    if sum(modes) != 1:
        raise ModelcrunchError("choose exactly one of --structured, --sparsity/--threshold, --pattern")
    model_path, output = Path(model_path), Path(output)
    original, model = load_model(model_path), load_model(model_path)
    ensure_node_names(original)
    ensure_node_names(model)
    eval_data = evaluation or calibration
    session = make_session(model_path)
    for where, data in (("--calibration", calibration), ("--eval", evaluation)):
        if data is not None:
            check_dataset(session, data.samples, f"{where} {data.source}")
    declared = {i.name: i.shape for i in session.get_inputs()}
    batch = data_batch(declared, config.calib_batch)  # a fixed batch dim: samples one run each
    calib = list(calibration.batches(batch)) if calibration is not None else None
    # shape-dependent analysis sees the data's dims; synthesized inputs only without data
    shapes = with_data_shapes(config.shapes, declared, eval_data.samples if eval_data is not None else None)
    fallback = (
        synthesize_feeds(session, shapes=config.shapes, batch=config.batch or config.bench_batch)
        if eval_data is None
        else {}
    )
    before = rep.layer_stats(original, shapes)
    notes: list[str] = []
    fields: dict = {}
    # already-quantized layers are left alone (half-precision weights prune like float32 ones)
    optimized = [layer for layer in optimized_layers(original) if layer.form != "half"]
    if optimized:
        notes.append(f"{summary(optimized)}: left alone (prune the float model, then quantize)")
    if config.structured is not None:
        decisions = prune_structured(
            model, config.structured, calibration=calib, on_progress=on_progress, input_shapes=shapes
        )
        pruned = [d for d in decisions if d.kept is not None and len(d.kept) < d.group.size]
        fields["groups_total"] = len(decisions)
        fields["groups_pruned"] = len(pruned)
        fields["skipped"] = tuple(
            rep.SkippedGroup(tuple(d.group.producers), d.group.size, d.reason)
            for d in decisions
            if d.kept is None
        ) + tuple(
            rep.SkippedGroup(
                (layer.name,), 0, f"already quantized: {layer.detail}; prune the float model first"
            )
            for layer in optimized
        )
        if calib is not None and config.repair and pruned:
            if config.measure:
                fields["fidelity_before_repair"] = _fidelity(original, model, eval_data, batch, fallback)
            fields["repaired"] = tuple(repair(original, model, decisions, calib, on_progress=on_progress))
        elif calib is None:
            notes.append("no --calibration: layers were not repaired")
    elif config.pattern is not None:
        layers, left = nm_prune(model, *config.pattern, exclude=config.exclude)
        fields["sparsity"], fields["left_dense"] = tuple(layers), tuple(left)
        notes.append(DENSE_NOTE)
    else:
        fields["sparsity"] = tuple(
            magnitude_prune(
                model,
                sparsity=config.sparsity,
                threshold=config.threshold,
                scope=config.scope,
                all_weights=config.all_weights,
                exclude=config.exclude,
            )
        )
        notes.append(DENSE_NOTE)
    after = rep.layer_stats(model, shapes)
    # staged beside ``output`` and measured there; it takes the name last (nothing written on failure)
    staged = stage_model(model, output, source=model_path, overwrite_input=overwrite_input)
    written = staged.path
    if config.sparse_storage:
        fields["sparse_storage"] = store_sparse(written)
    if config.measure:
        fields["fidelity"] = _fidelity(model_path, written, eval_data, batch, fallback)
        if evaluation is None and calibration is not None:
            notes.append("fidelity measured on the calibration data (pass --eval DATA for held-out data)")
        feed = next(iter(eval_data.batches(config.bench_batch))) if eval_data is not None else fallback
        fields["latency"] = benchmark(
            [model_path, written],
            feed,
            threads=config.threads,
            time_budget_s=config.bench_seconds,
            on_progress=on_progress,
        )
        if config.structured is not None:
            notes += _speed_notes(fields["latency"], config.structured.round_to)
    options = {k: v for k, v in asdict(config).items() if k != "structured"}
    if config.structured is not None:
        options["structured"] = asdict(config.structured)
    size_after = model_size_bytes(written)
    staged.commit()
    return rep.PruneReport(
        model=str(model_path),
        output=str(output),
        mode=config.mode,
        options=options,
        layers=rep.compare_layers(before, after),
        size_before=model_size_bytes(model_path),
        size_after=size_after,
        notes=tuple(notes),
        **fields,
    )
