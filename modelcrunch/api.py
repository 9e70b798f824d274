"""The Python API: one function per command, with the command's options as keyword arguments.

    import modelcrunch as mc

    report = mc.inspect("model.onnx", shape={"images": [1, 3, 640, 640]})
    q = mc.quantize("model.onnx", "model.int8.onnx", calibration="images.npz")
    p = mc.prune("model.onnx", "model.pruned.onnx", structured=True, calibration="images.npz", min_f1=0.9)
    f = mc.factorize("model.onnx", "model.lowrank.onnx", energy=0.95, calibration="images.npz")
    b = mc.bench(["model.onnx", "model.int8.onnx"], inputs="images.npz", max_latency_ratio=0.8)
    d = mc.distill("model.pruned.onnx", "model.distilled.onnx", teacher="model.onnx", data="images.npz")
    front = mc.optimize("model.onnx", "images.npz", "out/")

Option names are the command line's in snake_case (``--min-f1`` is ``min_f1``; ``--eval`` is
``evaluation``; ``--no-repair`` is ``repair=False``); ``shape`` takes ``{name: [dims]}`` or the CLI's
``"name=1x3x224x224"`` strings, ``output_kind`` takes ``{name: kind}`` or ``"NAME=KIND"`` strings, data
takes a path or a loaded :class:`modelcrunch.data.Dataset`. Each function returns the report its
command renders (``report.to_dict()`` is the command's ``--json``). Files are read and written exactly
as the commands do: the input is never modified, every written model passed the checker and ONNX
Runtime and took its name atomically. A missed quality target does not raise: ``report.passed`` is
False and, without ``keep_best=True``, nothing is written (the CLI exits 3 then); bad input raises
:class:`modelcrunch.ModelcrunchError` with the one line the CLI prints; a failed bench gate is in
``report.gates`` (``report.passed``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelcrunch.data import Dataset, load_dataset
from modelcrunch.shapes import parse_shape_overrides

PathLike = str | os.PathLike
Data = PathLike | Dataset | None
Shape = Mapping[str, Sequence[int | str]] | Sequence[str] | None

#: The quality options quantize, prune and factorize share (``passes.guard.Quality.from_options``).
QUALITY_KEYS = (
    "min_cosine", "min_top1_agreement", "min_mask_iou", "min_f1", "min_string_agreement",
    "min_decision_agreement", "max_drop", "output_kind", "task", "metric", "holdout", "reference",
    "keep_best", "require_faster", "allow_slower",
)  # fmt: skip


def _shapes(shape: Shape) -> dict[str, list[int | str]]:
    if shape is None:
        return {}
    if isinstance(shape, Mapping):
        return {name: list(dims) for name, dims in shape.items()}
    return parse_shape_overrides(list(shape))


def _data(data: Data) -> Dataset | None:
    if data is None or isinstance(data, Dataset):
        return data
    return load_dataset(Path(data))


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(quality options, the rest); an unknown name is a TypeError, as for any Python call."""
    quality = {k: options.pop(k) for k in list(options) if k in QUALITY_KEYS}
    return quality, options


def inspect(
    model: PathLike,
    *,
    shape: Shape = None,
    batch: int | None = None,
    output_kind: Sequence[str] | Mapping[str, str] | None = None,
    task: str | None = None,
):  # noqa: ANN201 - analysis.stats.InspectReport
    """``modelcrunch inspect``: parameters, size, MACs per layer, activation memory, output kinds."""
    from modelcrunch.analysis.stats import inspect_model
    from modelcrunch.runtime.semantics import parse_kind_overrides

    kinds = parse_kind_overrides(output_kind, task) or None
    return inspect_model(model, _shapes(shape), batch=batch, kinds=kinds)


def quantize(
    model: PathLike,
    output: PathLike,
    *,
    calibration: PathLike | None = None,
    evaluation: PathLike | None = None,
    shape: Shape = None,
    batch: int | None = None,
    overwrite_input: bool = False,
    on_progress: Callable | None = None,
    **options: Any,
):  # noqa: ANN201 - passes.quantize.report.QuantizeReport
    """``modelcrunch quantize``; ``options`` are ``QuantizeOptions`` fields (``mode="static"``,
    ``precision``, ``bits``, ``exclude``, ``bench``, ...) and the shared quality options."""
    from modelcrunch.passes.quantize.config import QuantizeOptions
    from modelcrunch.passes.quantize.pipeline import quantize_model
    from modelcrunch.runtime.semantics import parse_kind_overrides

    kinds, task = options.pop("output_kind", None), options.pop("task", None)
    reference = options.pop("reference", None)
    if "exclude" in options:
        options["exclude"] = tuple(options["exclude"])
    config = QuantizeOptions(output_kinds=tuple(parse_kind_overrides(kinds, task).items()), **options)
    return quantize_model(
        Path(model),
        Path(output),
        config,
        calibration=Path(calibration) if calibration is not None else None,
        evaluation=Path(evaluation) if evaluation is not None else None,
        overwrite_input=overwrite_input,
        shapes=_shapes(shape),
        batch=batch,
        reference_model=Path(reference) if reference is not None else None,
        on_progress=on_progress,
    )


def prune(
    model: PathLike,
    output: PathLike,
    *,
    structured: bool = False,
    ratio: float | None = None,
    importance: str = "l2",
    scope: str = "local",
    min_channels: int = 1,
    min_keep_ratio: float = 0.1,
    round_to: int | None = None,
    heads: bool = False,
    exclude: Sequence[str] = (),
    sparsity: float | None = None,
    threshold: float | None = None,
    pattern: str | None = None,
    all_weights: bool = False,
    sparse_storage: bool = False,
    repair: bool = True,
    repair_target: str = "layer",
    measure: bool = True,
    threads: int | None = None,
    calibration: Data = None,
    evaluation: Data = None,
    shape: Shape = None,
    batch: int | None = None,
    overwrite_input: bool = False,
    on_progress: Callable | None = None,
    **quality: Any,
):  # noqa: ANN201 - passes.prune.report.PruneReport
    """``modelcrunch prune``: structured channels (``structured=True``; without ``ratio`` the strongest
    of 0.1 ... 0.7 that meets the quality target), magnitude (``sparsity``/``threshold``) or N:M
    (``pattern="2:4"``); ``quality``: the shared quality options (``min_f1=0.9``, ``keep_best``...)."""
    from modelcrunch.passes.guard import Quality
    from modelcrunch.passes.prune.nm import parse_pattern
    from modelcrunch.passes.prune.pipeline import SEARCH_RATIOS, PruneConfig, prune_file
    from modelcrunch.passes.prune.structured import StructuredOptions
    from modelcrunch.runtime.kernels import conv_channel_multiple

    quality_options, unknown = _split(dict(quality))
    if unknown:
        raise TypeError(f"prune() got unexpected keyword arguments: {', '.join(unknown)}")
    excluded = tuple(exclude)
    config = PruneConfig(
        structured=StructuredOptions(
            ratio=0.3 if ratio is None else ratio,
            scope=scope,
            importance=importance,
            min_channels=min_channels,
            min_keep_ratio=min_keep_ratio,
            round_to=round_to if round_to is not None else conv_channel_multiple(),
            heads=heads,
            exclude=excluded,
        )
        if structured
        else None,
        sparsity=sparsity,
        threshold=threshold,
        pattern=parse_pattern(pattern) if pattern else None,
        scope=scope,
        all_weights=all_weights,
        exclude=excluded,
        sparse_storage=sparse_storage,
        repair=repair,
        repair_target=repair_target,
        measure=measure,
        threads=threads,
        search_ratios=SEARCH_RATIOS if structured and ratio is None else None,
        shapes=_shapes(shape),
        batch=batch,
    )
    return prune_file(
        model,
        output,
        config,
        calibration=_data(calibration),
        evaluation=_data(evaluation),
        overwrite_input=overwrite_input,
        quality=Quality.from_options(**quality_options),
        on_progress=on_progress,
    )


def factorize(
    model: PathLike,
    output: PathLike,
    *,
    rank_ratio: float | None = None,
    energy: float | None = None,
    target_params: float | None = None,
    target_macs: float | None = None,
    method: str = "channel",
    round_to: int = 1,
    min_size: int = 0,
    exclude: Sequence[str] = (),
    measure: bool = True,
    threads: int | None = None,
    calibration: Data = None,
    evaluation: Data = None,
    shape: Shape = None,
    batch: int | None = None,
    overwrite_input: bool = False,
    on_progress: Callable | None = None,
    **quality: Any,
):  # noqa: ANN201 - passes.factorize.report.FactorizeReport
    """``modelcrunch factorize``: low-rank MatMul/Gemm/Conv; without a rank policy (``rank_ratio``,
    ``energy``, ``target_params``, ``target_macs``) the lowest energy of 0.999 ... 0.8 that meets the
    quality target; ``quality``: the shared quality options."""
    from modelcrunch.passes.factorize import FactorizeConfig, RankPolicy
    from modelcrunch.passes.factorize.pipeline import SEARCH_ENERGIES, factorize_file
    from modelcrunch.passes.guard import Quality

    quality_options, unknown = _split(dict(quality))
    if unknown:
        raise TypeError(f"factorize() got unexpected keyword arguments: {', '.join(unknown)}")
    policy = RankPolicy.from_options(
        rank_ratio=rank_ratio, energy=energy, target_params=target_params, target_macs=target_macs,
        round_to=round_to,
    )  # fmt: skip
    given = any(v is not None for v in (rank_ratio, energy, target_params, target_macs))
    config = FactorizeConfig(policy=policy, method=method, min_size=min_size, exclude=tuple(exclude))
    return factorize_file(
        model,
        output,
        config,
        calibration=_data(calibration),
        evaluation=_data(evaluation),
        overwrite_input=overwrite_input,
        measure_results=measure,
        threads=threads,
        shapes=_shapes(shape),
        quality=Quality.from_options(**quality_options),
        search_energies=None if given else SEARCH_ENERGIES,
        batch=batch,
        on_progress=on_progress,
    )


def bench(
    models: Sequence[PathLike],
    *,
    inputs: PathLike | None = None,
    shape: Shape = None,
    batch: Sequence[int] | None = None,
    on_progress: Callable | None = None,
    **options: Any,
):  # noqa: ANN201 - runtime.report.BenchReport
    """``modelcrunch bench``: the first model is the baseline. ``options``: ``BenchConfig`` fields
    (``provider``, ``threads``, ``runs``, ``warmup``, ``duration_s``, ``labels``, ``seed``, ...), the
    gates (``max_latency_ratio``, ``min_cosine``, ... as ``GateLimits``) and the task gates
    (``min_f1``, ``min_mask_iou``, ``min_string_agreement``, ``min_decision_agreement``,
    ``task_targets``, ``output_kind``, ``task``, ``metric``)."""
    from dataclasses import fields

    from modelcrunch.runtime.gates import GateLimits
    from modelcrunch.runtime.report import BenchConfig, TaskGates, run_bench

    limits = GateLimits(**{f.name: options.pop(f.name) for f in fields(GateLimits) if f.name in options})
    names = ("min_f1", "min_mask_iou", "min_string_agreement", "min_decision_agreement", "task_targets",
             "output_kind", "task", "metric")  # fmt: skip
    gates = TaskGates.from_options(**{name: options.pop(name) for name in names if name in options})
    config = BenchConfig(
        models=[Path(m) for m in models],
        inputs=Path(inputs) if inputs is not None else None,
        shapes=_shapes(shape),
        batches=list(batch) if batch else None,
        limits=limits,
        task=gates,
        **options,
    )
    return run_bench(config, on_progress=on_progress)


def distill(
    student: PathLike,
    output: PathLike,
    *,
    teacher: PathLike,
    data: Data,
    overwrite_input: bool = False,
    **options: Any,
):  # noqa: ANN201 - distill.train.DistillReport
    """``modelcrunch distill`` (needs ``modelcrunch[distill]``): ``options`` are ``DistillConfig``
    fields (``epochs``, ``lr``, ``time_budget`` in seconds, ``seed``, ``checkpoint``, ...)."""
    from modelcrunch.distill import require_torch
    from modelcrunch.distill.config import DistillConfig

    require_torch()
    from modelcrunch.distill.pipeline import distill_file

    dataset = _data(data)
    return distill_file(
        student, teacher, dataset, output, DistillConfig(**options), overwrite_input=overwrite_input
    )
