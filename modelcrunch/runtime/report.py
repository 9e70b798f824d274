"""``bench`` end to end: validate models and inputs, time every batch size, measure fidelity, gate.

The timing runs and the fidelity runs are separate: timing uses one synthesised feed per batch
size (or up to 8 batches of ``--inputs``), fidelity runs every sample of ``--inputs`` (or 8
synthesised feeds, seeds 0..7) once through every model. With real ``--inputs`` (or a task gate),
the quality judge (``runtime/judge.py``) also gives every candidate the task figures of each output's
kind, the same figures quantize, prune and factorize are judged by; a task gate gates on them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from modelcrunch.data import Dataset, load_dataset
from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import load_model, model_size_bytes
from modelcrunch.runtime.bench import BenchResult, benchmark
from modelcrunch.runtime.feeds import check_feed, index_limits, synthesize_feeds
from modelcrunch.runtime.fidelity import Evaluation, evaluate
from modelcrunch.runtime.gates import GateLimits, GateResult, check_gates, task_gates
from modelcrunch.runtime.judge import Judge, Targets, Verdict, load_metric
from modelcrunch.runtime.semantics import figure_kinds, parse_kind_overrides
from modelcrunch.runtime.session import make_session, resolve_provider

logger = logging.getLogger(__name__)

SCHEMA = "modelcrunch.bench/1"
TIMING_BATCHES = 8
SYNTH_FIDELITY_FEEDS = 8
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchConfig:
    models: list[Path]
    provider: str = "cpu"
    threads: int | None = None
    inter_threads: int | None = None
    parallel: bool = False
    optimization: str = "all"
    warmup: int = 10
    runs: int = 100
    duration_s: float | None = None
    batches: list[int] | None = None
    shapes: Mapping[str, Sequence[int | str]] = field(default_factory=dict)
    inputs: Path | None = None
    labels: str | None = None
    output: str | None = None
    seed: int = 0
    limits: GateLimits = field(default_factory=GateLimits)
    task: TaskGates = field(default_factory=lambda: TaskGates())


#: The judge's target keys bench gates on, the output kind each needs and its option
#: (``--min-cosine``/``--min-top1-agreement`` are GateLimits').
TASK_KEYS = {
    "min_f1": ("detection", "--min-f1"),
    "min_mask_iou": ("map", "--min-mask-iou"),
    "min_strings": ("sequence", "--min-string-agreement"),
    "min_decisions": ("scalar", "--min-decision-agreement"),
}


@dataclass(frozen=True)
class TaskGates:
    """Task figures in bench: the given gates (``TASK_KEYS``), ``defaults`` (every output's default
    target, ``--task-targets``), output kinds overrides and a user metric."""

    given: Mapping[str, float] = field(default_factory=dict)
    defaults: bool = False
    kinds: Mapping[str, str] | None = None
    metric: str | None = None

    @classmethod
    def from_options(
        cls,
        *,
        min_f1: float | None = None,
        min_mask_iou: float | None = None,
        min_string_agreement: float | None = None,
        min_decision_agreement: float | None = None,
        task_targets: bool = False,
        output_kind: Sequence[str] | Mapping[str, str] | None = None,
        task: str | None = None,
        metric: str | None = None,
    ) -> TaskGates:
        """From bench's task options, by their command-line names; a gate outside [0, 1] is refused."""
        named = {"min_f1": min_f1, "min_mask_iou": min_mask_iou, "min_strings": min_string_agreement,
                 "min_decisions": min_decision_agreement}  # fmt: skip
        given = {}
        for key, value in named.items():
            if value is None:
                continue
            if not 0.0 <= value <= 1.0:  # NaN fails this too
                raise ModelcrunchError(f"{TASK_KEYS[key][1]} {value}: must be within [0, 1]")
            given[key] = value
        return cls(given, task_targets, parse_kind_overrides(output_kind, task) or None, metric)

    @property
    def gated(self) -> bool:
        return bool(self.given) or self.defaults or self.metric is not None

    def targets(self, limits: GateLimits) -> Targets:
        """Targets with every figure not asked for switched off (0), unless ``defaults`` (then bench's
        own ``--min-cosine``/``--min-top1-agreement`` replace the judge's defaults of those)."""
        if self.defaults:
            own = {"min_cosine": limits.min_cosine, "min_top1": limits.min_top1_agreement}
            return Targets(**self.given, **{k: v for k, v in own.items() if v is not None})
        off = {key: 0.0 for key in (*TASK_KEYS, "min_cosine", "min_top1")}
        return Targets(**{**off, **self.given})


@dataclass(frozen=True)
class BenchReport:
    config: BenchConfig
    names: list[str]
    results: list[BenchResult]  # one per batch size
    evaluation: Evaluation | None
    fidelity_source: str
    gates: list[GateResult] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)  # one per candidate: the task figures

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def to_dict(self) -> dict:
        cfg = self.config
        evaluation = self.evaluation
        return {
            "schema": SCHEMA,
            "config": {
                "provider": cfg.provider,
                "threads": cfg.threads,
                "inter_threads": cfg.inter_threads,
                "parallel": cfg.parallel,
                "opt_level": cfg.optimization,
                "warmup": cfg.warmup,
                "runs": cfg.runs if cfg.duration_s is None else None,
                "duration_s": cfg.duration_s,
                "batches": [r.batch for r in self.results],
                "inputs": str(cfg.inputs) if cfg.inputs else None,
                "memory_method": self.results[0].memory_method,
            },
            "models": self.names,
            "results": [r.to_dict() for r in self.results],
            "fidelity": None
            if evaluation is None
            else {
                "source": self.fidelity_source,
                "samples": evaluation.samples,
                "accuracy": evaluation.accuracies,
                "candidates": [
                    {"model": name, **fid.to_dict()}
                    for name, fid in zip(self.names[1:], evaluation.fidelity, strict=True)
                ],
            },
            "task": [
                {"model": name, **verdict.to_dict()}
                for name, verdict in zip(self.names[1:], self.verdicts, strict=False)
            ],
            "gates": [g.to_dict() for g in self.gates],
            "passed": self.passed,
        }


def _input_names(path: Path) -> list[str]:
    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return [v.name for v in graph.input if v.name not in inits]


def _check_models(models: Sequence[Path]) -> None:
    if not models:
        raise ModelcrunchError("give at least one model")
    for path in models:
        model_size_bytes(path)  # one-line errors: no such file, not an ONNX model, bad external data
    base = _input_names(models[0])
    for path in models[1:]:
        other = _input_names(path)
        if sorted(other) != sorted(base):
            raise ModelcrunchError(f"{path}: inputs {other} differ from the baseline's {base}")


def _leading_dim_free(session) -> bool:
    return all(not (isinstance(i.shape[0], int) and i.shape[0] > 0) for i in session.get_inputs() if i.shape)


def _timing_feeds(dataset: Dataset, batch: int) -> list[dict[str, np.ndarray]]:
    if len(dataset) < batch:
        raise ModelcrunchError(
            f"--batch {batch} needs at least {batch} samples; {dataset.source} has {len(dataset)}"
        )
    batches = list(itertools.islice(dataset.batches(batch), TIMING_BATCHES))
    full = [b for b in batches if next(iter(b.values())).shape[0] == batch]
    return full or batches[:1]


def run_bench(config: BenchConfig, *, on_progress: ProgressFn | None = None) -> BenchReport:
    """Everything ``modelcrunch bench`` measures, as a report (gates checked, not enforced)."""
    resolve_provider(config.provider)
    _check_models(config.models)
    names = [str(p) for p in config.models]
    if len(set(names)) != len(names):
        raise ModelcrunchError("the same model is given twice; copy it to compare a model with itself")
    # A CPU session with optimisations off is enough to read the signature.
    probe = make_session(config.models[0], provider="cpu", optimization="disable")
    batchable = _leading_dim_free(probe)
    dataset, labels = None, None
    if config.inputs is not None:
        dataset = load_dataset(config.inputs, [i.name for i in probe.get_inputs()])
        for i, sample in enumerate(dataset.samples):
            check_feed(probe, sample, where=f"{config.inputs} sample {i}")
        key = config.labels or ("label" if "label" in dataset.labels else None)
        labels = dataset.label(key) if key else None
    elif config.labels:
        raise ModelcrunchError("--labels needs --inputs DATA holding that label array")
    limits = index_limits(load_model(config.models[0]))
    judge = _judge(config, dataset, f"{config.inputs} ({len(dataset)} samples)" if dataset else "")

    sizes = config.batches or [None]
    if not batchable and any(b not in (None, 1) for b in sizes):
        raise ModelcrunchError(f"{names[0]}: the batch dim is fixed; --batch cannot change it")
    results = []
    for batch in sizes:
        if dataset is not None:
            feeds = _timing_feeds(dataset, batch or 1)
        else:
            feeds = [
                synthesize_feeds(probe, shapes=config.shapes, batch=batch, seed=config.seed, int_high=limits)
            ]
        results.append(
            benchmark(
                config.models,
                feeds,
                provider=config.provider,
                threads=config.threads,
                warmup=config.warmup,
                runs=config.runs,
                time_budget_s=config.duration_s,
                optimization=config.optimization,
                inter_threads=config.inter_threads,
                parallel=config.parallel,
                names=names,
                on_progress=on_progress,
            )
        )

    evaluation, source = None, ""
    if len(config.models) > 1 or labels is not None:
        if dataset is not None:
            fid_batch = 32 if batchable else 1
            fid_feeds = dataset.batches(fid_batch)
            total = -(-len(dataset) // fid_batch)
            source = f"{config.inputs} ({len(dataset)} samples)"
        else:
            batch = sizes[0]
            fid_feeds = [
                synthesize_feeds(
                    probe, shapes=config.shapes, batch=batch, seed=config.seed + s, int_high=limits
                )
                for s in range(SYNTH_FIDELITY_FEEDS)
            ]
            total = len(fid_feeds)
            source = f"synthesized ({SYNTH_FIDELITY_FEEDS} feeds, seeds {config.seed}..{config.seed + 7})"
        evaluation = evaluate(
            config.models,
            fid_feeds,
            labels=labels,
            output=config.output,
            provider=config.provider,
            threads=config.threads,
            on_progress=on_progress,
            total=total,
        )
    verdicts = [_ungated_exact(judge(m), config.task) for m in config.models[1:]] if judge else []
    report = BenchReport(config, names, results, evaluation, source, verdicts=verdicts)
    gates = check_gates(config.limits, results, evaluation.fidelity if evaluation else [], names)
    if config.task.gated:
        gates += task_gates(verdicts, names)
    return replace(report, gates=gates)


def _judge(config: BenchConfig, dataset: Dataset | None, source: str) -> Judge | None:
    """The judge of every candidate, on real inputs only (synthesized noise decodes to no detections
    and no words: task figures on it would mean nothing); made before the timing runs, so that a
    gate naming a kind the model lacks fails at once."""
    if config.task.gated and (dataset is None or len(config.models) < 2):
        raise ModelcrunchError("task gates compare models on real inputs: give a candidate and --inputs DATA")
    if len(config.models) < 2 or dataset is None:
        return None
    metric = load_metric(config.task.metric) if config.task.metric else None
    # its session waits through the timing runs: no spinning threads stealing a core from them
    session = make_session(config.models[0], provider=config.provider, threads=config.threads, spinning=False)
    judge = Judge(
        config.models[0],
        dataset,
        session=session,
        targets=config.task.targets(config.limits),
        kinds=config.task.kinds,
        metric=metric,
        provider=config.provider,
        threads=config.threads,
        describe=source,
    )
    kinds = figure_kinds(judge.specs)
    for key in config.task.given:
        kind, flag = TASK_KEYS[key]
        if kind not in kinds:
            raise ModelcrunchError(f"{flag}: no output of this model is of kind {kind} (see --output-kind)")
    return judge


def _ungated_exact(verdict: Verdict, task: TaskGates) -> Verdict:
    """Integer outputs' "identical" figure is a target only under ``--task-targets``: a bench with no
    task gate must not show a miss it does not gate."""
    if task.defaults:
        return verdict
    figures = [replace(f, target=None) if f.figure == "identical" else f for f in verdict.figures]
    return replace(verdict, figures=figures)
