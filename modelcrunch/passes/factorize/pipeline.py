"""File to file: load, factorize (searching the strongest energy that meets the target when no rank
policy is given), judge on held-out data, measure latency vs the original, and write it last."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from modelcrunch.data import Dataset
from modelcrunch.io import load_model, stage_model
from modelcrunch.passes.factorize.core import FactorizeConfig, ProgressFn, factorize
from modelcrunch.passes.factorize.report import FactorizeReport
from modelcrunch.passes.guard import Quality, make_judge, speed_verdict, split_data, strongest, timed
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.feeds import check_dataset, synthesize_feeds
from modelcrunch.runtime.judge import Verdict
from modelcrunch.runtime.session import make_session
from modelcrunch.shapes import data_batch, with_data_shapes

#: Energies searched when no rank policy is given (weakest first): the strongest meeting the target wins.
SEARCH_ENERGIES = (0.999, 0.995, 0.99, 0.98, 0.95, 0.9, 0.8)


def factorize_file(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    config: FactorizeConfig,
    *,
    calibration: Dataset | None = None,
    evaluation: Dataset | None = None,
    overwrite_input: bool = False,
    measure_results: bool = True,
    threads: int | None = None,
    shapes: dict | None = None,
    batch: int | None = None,
    quality: Quality | None = None,
    search_energies: tuple[float, ...] | None = None,
    on_progress: ProgressFn | None = None,
) -> FactorizeReport:
    """Factorize ``model_path`` into ``output``, judged by the guard (``passes/guard.py``).

    With ``search_energies`` (no rank policy given), the strongest energy that meets the quality
    target is searched. The output is written only when the result meets its target and is not
    slower than the original (or with ``quality.keep_best``); ``report.extra["passed"]`` says which.
    """
    quality = quality or Quality()
    model_path, output = Path(model_path), Path(output)
    session = make_session(model_path, threads=threads)  # a model ONNX Runtime rejects fails here
    for where, data in (("--calibration", calibration), ("--eval", evaluation)):
        if data is not None:
            check_dataset(session, data.samples, f"{where} {data.source}")
    split = split_data(calibration, evaluation, quality)
    data = calibration or evaluation
    fallback = synthesize_feeds(session, shapes=shapes, batch=batch or 1, seed=0) if data is None else {}
    judge = make_judge(model_path, split, quality, fallback=[fallback], threads=threads)
    first = load_model(model_path)
    declared = {v.name: v.shape for v in first.graph.inputs}
    analysis_shapes = with_data_shapes(shapes, declared, data.samples if data is not None else None)
    fixed = {
        name: [d if isinstance(d, int) else None for d in dims]
        for name, dims in declared.items()
        if dims is not None
    }
    config = dataclasses.replace(config, batch_size=data_batch(fixed, config.batch_size))

    grams: dict = {}  # the calibration statistics, collected once for every attempt

    def attempt(energy: float | None) -> tuple[tuple, Verdict]:
        model = load_model(model_path)
        policy = (
            config.policy
            if energy is None
            else dataclasses.replace(config.policy, kind="energy", value=energy)
        )
        report = factorize(
            model, dataclasses.replace(config, policy=policy), split.calibration, shapes=analysis_shapes,
            on_progress=on_progress, gram_cache=grams,
        )  # fmt: skip
        return (model, report), judge(model)

    notes: list[str] = []
    search: list[dict] = []
    if search_energies:
        best, attempts = strongest(search_energies, attempt, on_progress=on_progress)
        chosen = best or attempts[0]
        (model, report), verdict = chosen.result, chosen.verdict
        search = [a.to_dict() for a in attempts]
        tried = ", ".join(f"{a.strength:g} {'met' if a.verdict.passed else 'missed'}" for a in attempts)
        notes.append(
            f"strongest energy meeting the target: {chosen.strength:g} (tried {tried})"
            if best is not None
            else f"no energy met the target (tried {tried}); the weakest is reported"
        )
    else:
        (model, report), verdict = attempt(None)
    staged = stage_model(model, output, source=model_path, overwrite_input=overwrite_input)
    bench = None
    ratio = interval = None
    if measure_results:
        feed = next(iter(split.judged.batches(1))) if isinstance(split.judged, Dataset) else fallback
        result = timed(
            lambda seconds: benchmark(
                [model_path, staged.path], feed, threads=threads, time_budget_s=seconds,
                names=["original", "factorized"], on_progress=on_progress,
            ),
            5.0,
            notes,
        )  # fmt: skip
        bench, ratio = result.to_dict(), result.ratios[1].latency
        interval = result.ratios[1].latency_ci
    fast_enough, slow_note = speed_verdict(ratio, quality, interval)
    if slow_note:
        notes.append(slow_note)
    passed = verdict.passed and fast_enough
    extra = {
        "model": str(model_path),
        "output": str(output),
        "output_size_bytes": staged.size_bytes,
        "verdict": verdict.to_dict(),
        "passed": passed,
        "search": search,
    }
    if passed or quality.keep_best:
        staged.commit()
    else:
        staged.discard()
        extra["output"] = None
        notes.append(f"nothing written to {output} (the target was missed; --keep-best writes it)")
    return dataclasses.replace(
        report,
        extra=extra,
        fidelity=verdict.fidelity.to_dict(),
        benchmark=bench,
        notes=(*report.notes, *notes),
    )
