"""``modelcrunch prune`` as one library call: load, prune (structured, magnitude or N:M), repair,
save (verified), optionally store sparse, then measure fidelity and interleaved latency vs the
original. The CLI only parses options, calls :func:`prune_file` and renders the report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import onnx_ir as ir

from modelcrunch.data import Dataset
from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import load_model, model_size_bytes, stage_model
from modelcrunch.passes.guard import Quality, make_judge, speed_verdict, split_data, strongest
from modelcrunch.passes.prune import report as rep
from modelcrunch.passes.prune.magnitude import magnitude_prune
from modelcrunch.passes.prune.nm import nm_prune
from modelcrunch.passes.prune.repair import repair
from modelcrunch.passes.prune.sparse_storage import store_sparse
from modelcrunch.passes.prune.structured import StructuredOptions, ensure_node_names, prune_structured
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.feeds import check_dataset, synthesize_feeds
from modelcrunch.runtime.judge import Judge, Verdict
from modelcrunch.runtime.session import make_session

logger = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None] | None

#: The ratios ``prune --structured`` searches when no --ratio is given (weakest first).
SEARCH_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

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
    #: structured without --ratio: the ratios searched (weakest first) for the strongest that meets the target
    search_ratios: tuple[float, ...] | None = None

    @property
    def mode(self) -> str:
        if self.structured is not None:
            return "structured"
        return "nm" if self.pattern is not None else "magnitude"


def _check_modes(config: PruneConfig) -> None:
    modes = [
        config.structured is not None,
        config.sparsity is not None or config.threshold is not None,
        config.pattern is not None,
    ]
    if sum(modes) != 1:
        raise ModelcrunchError("choose exactly one of --structured, --sparsity/--threshold, --pattern")


def _prune(
    model: ir.Model,
    original: ir.Model,
    config: PruneConfig,
    calib: list[dict] | None,
    judge: Judge | None,
    on_progress: Progress,
) -> tuple[dict, list[str]]:
    """Prune ``model`` in place as ``config`` says (repairing structured groups from ``calib``);
    the report fields and notes."""
    fields: dict = {}
    notes: list[str] = []
    if config.structured is not None:
        decisions = prune_structured(model, config.structured, calibration=calib, on_progress=on_progress)
        pruned = [d for d in decisions if d.kept is not None and len(d.kept) < d.group.size]
        fields["groups_total"] = len(decisions)
        fields["groups_pruned"] = len(pruned)
        fields["skipped"] = tuple(
            rep.SkippedGroup(tuple(d.group.producers), d.group.size, d.reason)
            for d in decisions
            if d.kept is None
        )
        if calib is not None and config.repair and pruned:
            if judge is not None:
                fields["fidelity_before_repair"] = judge(model).fidelity
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
    return fields, notes


def _fresh(path: Path) -> ir.Model:
    model = load_model(path)
    ensure_node_names(model)
    return model


def prune_file(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    config: PruneConfig,
    *,
    calibration: Dataset | None = None,
    evaluation: Dataset | None = None,
    overwrite_input: bool = False,
    quality: Quality | None = None,
    on_progress: Progress = None,
) -> rep.PruneReport:
    """Prune ``model_path`` into ``output``, judge it (``passes/guard.py``) and report what changed.

    Structured pruning without a ratio (``config.search_ratios``) searches for the strongest ratio
    that meets the quality target. The output is written only when the result meets its target
    and is not slower (or with ``quality.keep_best``); ``report.passed`` says which.
    """
    _check_modes(config)
    quality = quality or Quality()
    model_path, output = Path(model_path), Path(output)
    original = _fresh(model_path)
    before = rep.layer_stats(original)
    session = make_session(model_path)
    for where, data in (("--calibration", calibration), ("--eval", evaluation)):
        if data is not None:
            check_dataset(session, data.samples, f"{where} {data.source}")
    split = split_data(calibration, evaluation, quality)
    calib = list(split.calibration.batches(config.calib_batch)) if split.calibration is not None else None
    fallback = synthesize_feeds(session, batch=config.bench_batch)
    judge = make_judge(model_path, split, quality, fallback=[fallback], threads=config.threads)

    def attempt(ratio: float) -> tuple[tuple[ir.Model, dict, list[str]], Verdict]:
        model = _fresh(model_path)
        structured = config.structured if ratio is None else replace(config.structured, ratio=ratio)
        fields, notes = _prune(
            model, original, replace(config, structured=structured), calib, judge, on_progress
        )
        return (model, fields, notes), judge(model)

    search: tuple = ()
    if config.structured is not None and config.search_ratios:
        best, attempts = strongest(config.search_ratios, attempt, on_progress=on_progress)
        chosen = best or attempts[0]
        (model, fields, notes), verdict = chosen.result, chosen.verdict
        config = replace(config, structured=replace(config.structured, ratio=chosen.strength))
        search = tuple(a.to_dict() for a in attempts)
        notes = [*notes, _search_note(best, attempts)]
    else:
        (model, fields, notes), verdict = attempt(None)
    after = rep.layer_stats(model)
    staged = stage_model(model, output, source=model_path, overwrite_input=overwrite_input)
    written = staged.path
    if config.sparse_storage:
        fields["sparse_storage"] = store_sparse(written)
    fields["fidelity"] = verdict.fidelity
    ratio = None
    if config.measure:
        feed = (
            next(iter(split.judged.batches(config.bench_batch)))
            if isinstance(split.judged, Dataset)
            else fallback
        )
        fields["latency"] = benchmark(
            [model_path, written],
            feed,
            threads=config.threads,
            time_budget_s=config.bench_seconds,
            on_progress=on_progress,
        )
        ratio = fields["latency"].ratios[1].latency
    fast_enough, slow_note = speed_verdict(ratio, quality)
    if ratio is not None and ratio >= 0.97:
        notes.append(f"the pruned model is not faster than the original ({ratio:.2f}x latency)")
    if slow_note:
        notes.append(slow_note)
    passed = verdict.passed and fast_enough
    options = {k: v for k, v in asdict(config).items() if k != "structured"}
    if config.structured is not None:
        options["structured"] = asdict(config.structured)
    size_after = model_size_bytes(written)
    if passed or quality.keep_best:
        staged.commit()
        where = str(output)
    else:
        staged.discard()
        where = None
        notes.append(f"nothing written to {output} (the target was missed; --keep-best writes it)")
    return rep.PruneReport(
        model=str(model_path),
        output=where,
        mode=config.mode,
        options=options,
        layers=rep.compare_layers(before, after),
        size_before=model_size_bytes(model_path),
        size_after=size_after,
        notes=tuple(notes),
        verdict=verdict.to_dict(),
        passed=passed,
        search=search,
        **fields,
    )


def _search_note(best, attempts) -> str:  # noqa: ANN001
    tried = ", ".join(f"{a.strength:g} {'met' if a.verdict.passed else 'missed'}" for a in attempts)
    if best is None:
        return f"no ratio met the target (tried {tried}); the weakest is reported"
    return f"strongest ratio meeting the target: {best.strength:g} (tried {tried})"
