"""File to file: load, factorize, save (verified), then measure fidelity and latency vs the original."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from modelcrunch.data import Dataset
from modelcrunch.io import load_model, stage_model
from modelcrunch.passes.factorize.core import FactorizeConfig, ProgressFn, factorize
from modelcrunch.passes.factorize.report import FactorizeReport
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.feeds import check_dataset, synthesize_feeds
from modelcrunch.runtime.fidelity import measure_fidelity
from modelcrunch.runtime.session import make_session
from modelcrunch.shapes import data_batch, with_data_shapes


def measure(
    source: Path,
    output: Path,
    *,
    evaluation: Dataset | None,
    threads: int | None = None,
    shapes: dict | None = None,
    batch: int | None = None,
    time_budget_s: float = 5.0,
    on_progress: ProgressFn | None = None,
) -> tuple[dict, dict]:
    """(fidelity, benchmark) dicts of ``output`` against ``source``.

    Fidelity runs on ``evaluation`` (with its ``label`` array for accuracy) or on seeded random
    inputs; latency is the shared interleaved benchmark on one batch of the same inputs.
    """
    if evaluation is not None and len(evaluation):
        inputs = {i.name: i.shape for i in make_session(source, threads=threads).get_inputs()}
        feeds = list(evaluation.batches(data_batch(inputs, 32)))
        labels = evaluation.labels.get("label")
    else:
        feeds = [
            synthesize_feeds(make_session(source, threads=threads), shapes=shapes, batch=batch or 1, seed=0)
        ]
        labels = None
    fidelity = measure_fidelity(source, output, feeds, labels=labels, threads=threads)
    bench = benchmark(
        [source, output],
        feeds[0],
        threads=threads,
        time_budget_s=time_budget_s,
        names=["original", "factorized"],
        on_progress=on_progress,
    )
    return fidelity.to_dict(), bench.to_dict()


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
    on_progress: ProgressFn | None = None,
) -> FactorizeReport:
    model_path, output = Path(model_path), Path(output)
    model = load_model(model_path)
    session = make_session(model_path, threads=threads)  # a model ONNX Runtime rejects fails here
    for where, data in (("--calibration", calibration), ("--eval", evaluation)):
        if data is not None:
            check_dataset(session, data.samples, f"{where} {data.source}")
    data = calibration or evaluation
    declared = {v.name: v.shape for v in model.graph.inputs}
    analysis_shapes = with_data_shapes(shapes, declared, data.samples if data is not None else None)
    fixed = {
        name: [d if isinstance(d, int) else None for d in dims]
        for name, dims in declared.items()
        if dims is not None
    }
    config = dataclasses.replace(config, batch_size=data_batch(fixed, config.batch_size))
    report = factorize(model, config, calibration, shapes=analysis_shapes, on_progress=on_progress)
    # staged beside ``output`` and measured there; it takes the name last (nothing written on failure)
    staged = stage_model(model, output, source=model_path, overwrite_input=overwrite_input)
    extra = {"model": str(model_path), "output": str(output), "output_size_bytes": staged.size_bytes}
    report = dataclasses.replace(report, extra=extra)
    if not measure_results:
        staged.commit()
        return report
    fidelity, bench = measure(
        model_path,
        staged.path,
        evaluation=evaluation or calibration,
        threads=threads,
        shapes=shapes,
        batch=batch,
        on_progress=on_progress,
    )
    staged.commit()
    return dataclasses.replace(report, fidelity=fidelity, benchmark=bench)
