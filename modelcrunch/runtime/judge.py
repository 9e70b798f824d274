"""The quality judge: one object every command asks whether a candidate still does the model's task.

``Judge(reference, held_out)`` infers each output's kind (``semantics.py``), runs the reference
once on the held-out samples, and ``judge(candidate)`` returns a :class:`Verdict`: every output's
task figures (``task_metrics.py``) against its target, which pass, the worst, and one loss to rank
candidates by.

Targets (:class:`Targets`; each default applies to the outputs of its kind, 0 switches it off):

======================= ================================ =======================================
figure                  kind                             default target
======================= ================================ =======================================
detection F1            detection                        >= 0.95  (``--min-f1``)
top-1 agreement         classes                          >= 0.99  (``--min-top1-agreement``)
string agreement        sequence                         >= 0.95  (``--min-string-agreement``)
cosine (mean per sample) embedding                       >= 0.99  (``--min-cosine``)
cosine (worst sample)   embedding                        >= 1 - 3 (1 - min cosine): 0.97
mask IoU (mean)         map; YOLO-seg (per detection)    >= 0.985 (``--min-mask-iou``)
mask IoU (worst sample) map                              >= min mask IoU - 0.085: 0.90
decision agreement      scalar                           >= 0.99  (``--min-decision-agreement``)
cosine (worst group)    generic (others: when given)     >= 0.99  (``--min-cosine``)
accuracy drop           with labels                      <= ``--max-drop`` points (only if given)
identical               integer outputs                  equal
======================= ================================ =======================================

``loss`` ranks candidates on one scale: for each gated figure, the share of its allowance used,
``(1 - value) / (1 - target)`` (1 = exactly at the target; above 1 = missed), and the worst
counts. ``quality`` is the lowest figure value (1 = identical to the reference).

A user's own metric (``--metric module:function`` or ``path/to/file.py:function``) is called once
per verdict with the feeds and both models' outputs (lists of ``{output name: array}`` per feed)
and returns a figure in [0, 1] (higher is better), ``(figure, passed)`` or a dict with ``value``,
``passed`` and optionally ``name``; it is gated like a built-in figure.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import onnx_ir as ir

from modelcrunch.data import Dataset
from modelcrunch.errors import ModelcrunchError
from modelcrunch.runtime.fidelity import Fidelity, _OutputStats, finite_or_none
from modelcrunch.runtime.semantics import OutputSpec, infer_specs
from modelcrunch.runtime.session import Runner, make_session, run_checked
from modelcrunch.runtime.task_metrics import OutputMetrics

DEFAULTS = {
    "min_cosine": 0.99,
    "min_top1": 0.99,
    "min_strings": 0.95,
    "min_f1": 0.95,
    "min_mask_iou": 0.985,
    "min_decisions": 0.99,
}
WORST_MASK_SLACK = 0.085
WORST_COSINE_FACTOR = 3.0
STACK_SAMPLES = 32
STACK_INPUT_BYTES = 2 << 20
REFERENCE_BYTES = 256 << 20  # reference outputs kept between verdicts
TIEBREAK = 0.05


@dataclass(frozen=True)
class Targets:
    """Quality targets; None takes the default (module docstring), 0 switches a figure's gate off."""

    min_cosine: float | None = None
    min_top1: float | None = None
    min_strings: float | None = None
    min_f1: float | None = None
    min_mask_iou: float | None = None
    min_decisions: float | None = None
    max_drop: float | None = None  # accuracy points, with labels

    def value(self, key: str) -> float | None:
        given = getattr(self, key)
        if given is None:
            return DEFAULTS.get(key)
        return None if given == 0 and key != "max_drop" else given

    def given(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def target_for(self, kind: str, figure: str) -> float | None:
        """The target of one figure of an output of ``kind`` (None: reported, not gated)."""
        if figure == "cosine":  # the headline of generic outputs; elsewhere a gate only when given
            if kind == "generic" or (kind not in ("detection", "metric") and self.min_cosine):
                return self.value("min_cosine")
            return None
        if figure == "cosine (mean per sample)":
            return self.value("min_cosine")
        if figure == "cosine (worst sample)":
            cosine = self.value("min_cosine")
            return None if cosine is None else max(0.0, 1.0 - WORST_COSINE_FACTOR * (1.0 - cosine))
        if figure == "mask IoU (worst sample)":
            mask = self.value("min_mask_iou")
            return None if mask is None else max(0.0, mask - WORST_MASK_SLACK)
        if figure == "top-1 agreement (per step)":
            return self.min_top1 or None  # gated only when given
        key = {
            "detection F1": "min_f1",
            "top-1 agreement": "min_top1",
            "string agreement": "min_strings",
            "mask IoU (mean per sample)": "min_mask_iou",
            "mask IoU (mean per detection)": "min_mask_iou",
            "decision agreement": "min_decisions",
            "score closeness": "min_decisions",
        }.get(figure)
        if figure == "identical":
            return 1.0
        return self.value(key) if key else None


@dataclass(frozen=True)
class TaskFigure:
    output: str
    kind: str
    figure: str
    value: float
    target: float | None  # None: reported only
    upper: bool = False  # True: value must stay <= target (accuracy drop)
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        if self.target is None:
            return True
        if not math.isfinite(self.value):
            return False
        return self.value <= self.target + 1e-12 if self.upper else self.value >= self.target - 1e-12

    @property
    def margin(self) -> float:
        if self.target is None:
            return math.inf
        if not math.isfinite(self.value):
            return -math.inf
        return self.target - self.value if self.upper else self.value - self.target

    @property
    def loss(self) -> float:
        """Share of the allowance used: 1 at the target, above 1 missed (module docstring)."""
        if self.target is None:
            return 0.0
        if not math.isfinite(self.value):
            return math.inf
        if self.upper:
            return self.value / self.target if self.target > 0 else (0.0 if self.value <= 0 else math.inf)
        if self.target >= 1.0:
            return 0.0 if self.value >= 1.0 else math.inf
        return max(0.0, 1.0 - self.value) / (1.0 - self.target)

    def text(self) -> str:
        value = f"{self.value:.4f}" if math.isfinite(self.value) else "n/a"
        if self.target is None:
            return f"{self.output}: {self.figure} {value}"
        op = "<=" if self.upper else ">="
        mark = "ok" if self.passed else "MISSED"
        return f"{self.output}: {self.figure} {value} (target {op} {self.target:g}, {mark})"

    def to_dict(self) -> dict:
        return {
            "output": self.output,
            "kind": self.kind,
            "figure": self.figure,
            "value": finite_or_none(self.value),
            "target": self.target,
            "passed": self.passed,
            "details": self.details,
        }


@dataclass(frozen=True)
class Verdict:
    figures: list[TaskFigure]
    samples: int
    specs: dict[str, OutputSpec]
    fidelity: Fidelity  # the element-wise figures (cosine, rel L2, ...) of every output
    data: str = ""  # which samples judged, in words

    @property
    def gated(self) -> list[TaskFigure]:
        return [f for f in self.figures if f.target is not None]

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.gated)

    @property
    def worst(self) -> TaskFigure | None:
        gated = self.gated
        return max(gated, key=lambda f: f.loss) if gated else None

    @property
    def loss(self) -> float:
        return max((f.loss for f in self.gated), default=0.0)

    @property
    def rank_loss(self) -> float:
        """``loss`` plus a small smooth term (``TIEBREAK`` x the summed shortfall from 1 of every
        figure in [0, 1], the ungated channel-group cosine of a detection output included): coarse
        figures (F1 over a few detections, strings over a few lines) tie between many candidates,
        and a layer ranking needs an order among them."""
        smooth = sum(max(0.0, 1.0 - f.value) for f in self.figures if not f.upper and math.isfinite(f.value))
        return self.loss + TIEBREAK * smooth

    @property
    def margin(self) -> float:
        return min((f.margin for f in self.gated), default=math.inf)

    @property
    def quality(self) -> float:
        values = [f.value for f in self.gated if not f.upper]
        return min(values, default=1.0) if all(math.isfinite(v) for v in values) else 0.0

    def headline(self, output: str) -> TaskFigure | None:
        rows = [f for f in self.figures if f.output == output]
        return rows[0] if rows else None

    def missed(self) -> list[TaskFigure]:
        return [f for f in self.gated if not f.passed]

    def summary(self) -> str:
        worst = self.worst
        if worst is None:
            return "no figure is gated"
        if self.passed:
            return f"target met (closest: {worst.text()})"
        return "target MISSED: " + "; ".join(f.text() for f in self.missed())

    def to_dict(self) -> dict:
        worst = self.worst
        return {
            "passed": self.passed,
            "samples": self.samples,
            "data": self.data,
            "loss": finite_or_none(self.loss),
            "quality": self.quality,
            "worst": None if worst is None else worst.to_dict(),
            "outputs": {name: spec.to_dict() for name, spec in self.specs.items()},
            "figures": [f.to_dict() for f in self.figures],
        }


# --------------------------------------------------------------------------------------------
# User metrics
# --------------------------------------------------------------------------------------------

Metric = Callable[[list, list, list], object]


def load_metric(spec: str) -> Metric:
    """``module:function`` or ``path/to/file.py:function`` → the callable (one-line errors)."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ModelcrunchError(f"--metric '{spec}': expected module:function or file.py:function")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ModelcrunchError(f"--metric '{spec}': no such file {where}")
            loaded = importlib.util.spec_from_file_location(f"modelcrunch_metric_{path.stem}", path)
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(where)
    except ModelcrunchError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import: say so in one line
        raise ModelcrunchError(
            f"--metric '{spec}': cannot import {where} ({type(exc).__name__}: {exc})"
        ) from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise ModelcrunchError(f"--metric '{spec}': {where} has no callable '{name}'")
    return function


def _metric_figure(metric: Metric, feeds: list, refs: list, cands: list) -> TaskFigure:
    name = getattr(metric, "__name__", "metric")
    try:
        result = metric(feeds, refs, cands)
    except Exception as exc:  # noqa: BLE001 - the user's code: report, do not crash
        raise ModelcrunchError(f"--metric {name} failed: {type(exc).__name__}: {exc}") from exc
    passed = None
    if isinstance(result, Mapping):
        value, passed, name = result.get("value"), result.get("passed"), result.get("name", name)
    elif isinstance(result, tuple) and len(result) == 2:
        value, passed = result
    else:
        value = result
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ModelcrunchError(f"--metric {name} returned {result!r}; expected a number") from exc
    # passed given: a target the value meets exactly when passed; else a figure in [0, 1] at >= 0.99
    target = 0.99 if passed is None else (-math.inf if passed else math.inf)
    return TaskFigure("*", "metric", str(name), value, target, details={"user_metric": True})


# --------------------------------------------------------------------------------------------
# The judge
# --------------------------------------------------------------------------------------------

Reference = str | os.PathLike | ir.Model


def _stack_size(session: Runner, samples: Sequence[Mapping[str, np.ndarray]]) -> int:
    """Samples stacked per run: up to 32 where every input has a free batch axis and a stacked run
    of two gives outputs batched the same way; else 1."""
    if len(samples) < 2:
        return 1
    per_sample = sum(np.asarray(v).nbytes for v in samples[0].values())
    size = min(STACK_SAMPLES, len(samples), STACK_INPUT_BYTES // max(per_sample, 1))
    if size < 2:
        return 1
    for spec in session.get_inputs():
        shapes = {np.shape(s[spec.name]) for s in samples if spec.name in s}
        if not spec.shape or isinstance(spec.shape[0], int) or len(shapes) != 1:
            return 1
        shape = next(iter(shapes))
        if not shape or shape[0] != 1:
            return 1
    trial = {k: np.concatenate([samples[0][k], samples[1][k]]) for k in samples[0]}
    try:
        outputs = session.run(None, trial)
    except Exception:  # noqa: BLE001 - any failure means one sample at a time
        return 1
    return size if all(np.ndim(o) and np.shape(o)[0] == 2 for o in outputs) else 1


def _batch_of(feed: Mapping[str, np.ndarray]) -> int:
    shapes = [np.shape(v) for v in feed.values()]
    return int(shapes[0][0]) if shapes and shapes[0] else 1


def _samples_of(data: Dataset | Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return list(data.samples) if isinstance(data, Dataset) else [dict(s) for s in data]


class Judge:
    """Judges candidates against ``reference`` on ``data`` (held-out samples); see the module docstring."""

    def __init__(
        self,
        reference: Reference,
        data: Dataset | Sequence[Mapping[str, np.ndarray]],
        *,
        targets: Targets | None = None,
        kinds: Mapping[str, str] | None = None,
        metric: Metric | None = None,
        labels: np.ndarray | None = None,
        provider: str = "cpu",
        threads: int | None = None,
        describe: str = "",
        session: Runner | None = None,
        stack: bool = True,
        infer_with: Runner | None = None,
    ) -> None:
        """``session``: a reference session to use (else one is made); ``stack=False``: ``data``'s
        samples are fed as they are (already stacked feeds), one count per feed from their batch axis;
        ``infer_with``: a session for the one run the kind inference needs (not kept), where the
        reference session replays outputs that exist only later (quantize's calibration record)."""
        from modelcrunch.io import load_model

        self.targets = targets or Targets()
        self.provider, self.threads = provider, threads
        self.metric = metric
        model = reference if isinstance(reference, ir.Model) else load_model(reference)
        self.session = (
            session if session is not None else make_session(model, provider=provider, threads=threads)
        )
        input_names = [i.name for i in self.session.get_inputs()]
        samples = [{k: v for k, v in s.items() if k in input_names} for s in _samples_of(data)]
        if not samples:
            raise ModelcrunchError("the judge has no samples to judge on")
        if labels is None and isinstance(data, Dataset):
            labels = next(
                (data.labels[k] for k in ("label", "labels", "target", "y") if k in data.labels), None
            )
        self.labels = None if labels is None else np.asarray(labels).reshape(-1)
        if stack:
            size = _stack_size(self.session, samples)
            self.feeds = [
                {k: np.concatenate([s[k] for s in samples[i : i + size]]) if size > 1 else samples[i][k]
                 for k in samples[i]}
                for i in range(0, len(samples), size)
            ]  # fmt: skip
            self.counts = [min(size, len(samples) - i) for i in range(0, len(samples), size)]
        else:
            self.feeds = samples
            self.counts = [_batch_of(feed) for feed in samples]
        self.describe = describe or f"{sum(self.counts)} samples"
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._reference: list[list[np.ndarray] | None] = [None] * len(self.feeds)
        self._kept = 0
        if infer_with is not None:
            sample = run_checked(infer_with, self.feeds[0], name="the reference model")
        else:
            sample = self._reference_outputs(0)
        first = dict(zip(self.output_names, sample, strict=True))
        self.specs = infer_specs(model, first, kinds)

    def _reference_outputs(self, index: int) -> list[np.ndarray]:
        kept = self._reference[index]
        if kept is not None:
            return kept
        outputs = [
            np.asarray(o) for o in run_checked(self.session, self.feeds[index], name="the reference model")
        ]
        size = sum(o.nbytes for o in outputs)
        if self._kept + size <= REFERENCE_BYTES:
            self._reference[index] = outputs
            self._kept += size
        return outputs

    def with_targets(self, targets: Targets) -> Judge:
        """The same judge (same reference runs) with other targets."""
        other = object.__new__(Judge)
        other.__dict__.update(self.__dict__)
        other.targets = targets
        return other

    def __call__(self, candidate: Reference | Runner, *, samples: int | None = None) -> Verdict:
        """The verdict on ``candidate`` (a path, model or session), on the first ``samples`` samples
        (all by default)."""
        session = candidate if isinstance(candidate, Runner) else make_session(
            candidate, provider=self.provider, threads=self.threads
        )  # fmt: skip
        cand_names = [o.name for o in session.get_outputs()]
        if len(cand_names) != len(self.output_names):
            raise ModelcrunchError(
                f"the candidate has {len(cand_names)} outputs, the reference {len(self.output_names)}"
            )
        # outputs pair by name where the names match (a rewrite may reorder them), else by position
        same = sorted(cand_names) == sorted(self.output_names)
        order = [cand_names.index(n) for n in self.output_names] if same else range(len(cand_names))
        metrics = {n: OutputMetrics(self.specs[n]) for n in self.output_names}
        stats = {n: _OutputStats(n) for n in self.output_names}
        kept_feeds, kept_refs, kept_cands = [], [], []
        predictions: tuple[list, list] = ([], [])
        judged = 0
        for index, feed in enumerate(self.feeds):
            if samples is not None and judged >= samples:
                break
            refs = self._reference_outputs(index)
            cands = [np.asarray(o) for o in run_checked(session, feed, name="the candidate model")]
            cands = [cands[k] for k in order]
            outputs = (
                dict(zip(self.output_names, refs, strict=True)),
                dict(zip(self.output_names, cands, strict=True)),
            )
            for name, r, c in zip(self.output_names, refs, cands, strict=True):
                metrics[name].update(r, c, feed, outputs)
                stats[name].update(r, c)
            judged += self.counts[index]
            if self.labels is not None:
                predictions[0].append(self._predict(refs))
                predictions[1].append(self._predict(cands))
            if self.metric is not None:
                kept_feeds.append(feed)
                kept_refs.append(dict(zip(self.output_names, refs, strict=True)))
                kept_cands.append(dict(zip(self.output_names, cands, strict=True)))
        figures = [
            TaskFigure(
                name,
                self.specs[name].kind,
                figure,
                value,
                self.targets.target_for(self.specs[name].kind, figure),
                details=details,
            )  # fmt: skip
            for name in self.output_names
            for figure, value, details in metrics[name].figures()
        ]
        accuracy = self._accuracy(predictions, judged)
        if accuracy is not None:
            drop = (accuracy[0] - accuracy[1]) * 100.0
            figures.append(
                TaskFigure(
                    "*",
                    "labels",
                    "accuracy drop (points)",
                    drop,
                    self.targets.max_drop,
                    upper=True,
                    details={"reference": accuracy[0], "candidate": accuracy[1]},
                )  # fmt: skip
            )
        if self.metric is not None:
            figures.append(_metric_figure(self.metric, kept_feeds, kept_refs, kept_cands))
        fidelity = Fidelity(
            [stats[n].result() for n in self.output_names],
            judged,
            None if accuracy is None else accuracy[0],
            None if accuracy is None else accuracy[1],
        )
        return Verdict(figures, judged, self.specs, fidelity, self.describe)

    def _classes_output(self) -> int:
        for k, name in enumerate(self.output_names):
            if self.specs[name].kind == "classes":
                return k
        return 0

    def _predict(self, outputs: list[np.ndarray]) -> np.ndarray:
        k = self._classes_output()
        values = outputs[k]
        spec = self.specs[self.output_names[k]]
        axis = spec.axis if spec.axis is not None else values.ndim - 1
        if values.ndim == 0 or values.shape[axis] < 2:
            return values.reshape(-1)
        return np.argmax(values, axis=axis).reshape(-1)

    def _accuracy(self, predictions: tuple[list, list], judged: int) -> tuple[float, float] | None:
        if self.labels is None or not predictions[0]:
            return None
        truth = self.labels[:judged]
        ref, cand = np.concatenate(predictions[0]), np.concatenate(predictions[1])
        if ref.shape[0] != truth.shape[0]:
            return None
        return float(np.mean(ref == truth)), float(np.mean(cand == truth))


def targets_from(**values: float | None) -> Targets:
    """Targets from option values (unknown keys are a bug, not the user's)."""
    return replace(Targets(), **{k: v for k, v in values.items() if v is not None})
