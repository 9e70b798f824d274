"""Teacher-student fine-tuning of an ONNX student's weights on unlabeled data.

Per step: a batch of training samples is augmented (:mod:`.augment`), the teacher (ONNX Runtime)
labels it, the student (the graph interpreted by :class:`.graph.GraphModule`, float weights as
parameters) is run in torch, and Adam lowers the sum of the per-output losses (:mod:`.losses`).

Before the first step the student's torch translation is compared with ONNX Runtime on held-out
samples: ``max|torch - ort| <= tolerance * max|ort|`` per output, or training is refused. A fixed,
seeded share of the samples (``holdout``) is never trained on; after every epoch the student is
judged on it (the held-out figure: the quality judge's task figures on the student run in ONNX
Runtime, worst over outputs; the held-out loss breaks ties). The best
epoch's weights are kept (epoch 0 is the student as given, so the result is never worse on the
held-out figure), training stops after ``patience`` epochs in which neither the figure got better
nor the held-out loss fell by ``PROGRESS`` of its lowest (a coarse figure, F1 over a few dozen
detections, can stand still for many epochs while the student still learns), at
``time_budget`` seconds, or after ``epochs``. Checkpoints (``checkpoint``) are written after each
whole epoch (and before the first); after Ctrl-C, ``resume`` repeats the interrupted epoch with
the same random streams, so a resumed run ends with the weights of an uninterrupted one. Adam's
learning rate warms up linearly over the first epoch.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx_ir as ir
import torch

from modelcrunch.data import Dataset
from modelcrunch.distill import features
from modelcrunch.distill.augment import augment
from modelcrunch.distill.config import DistillConfig
from modelcrunch.distill.graph import GraphModule, UnsupportedModel, apply_weights, feeds_to_torch
from modelcrunch.distill.losses import LossSpec, feature_loss, infer_loss_specs, output_loss
from modelcrunch.errors import ModelcrunchError
from modelcrunch.runtime.judge import Judge
from modelcrunch.runtime.session import make_session, run_checked
from modelcrunch.shapes import data_batch

logger = logging.getLogger(__name__)
CHECKPOINT_FILE = "distill_checkpoint.pt"
#: The held-out share is judged after every epoch: at most this many samples, so it stays cheap.
MAX_HELDOUT = 128
#: An epoch whose held-out loss falls by this share of the lowest so far counts as progress for
#: ``patience`` (the kept weights are still the best figure's).
PROGRESS = 0.01


class Interrupted(ModelcrunchError):
    """Ctrl-C during training: the checkpoint is saved (exit 130)."""

    exit_code = 130


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    steps: int
    train_loss: float | None
    heldout_loss: float
    figure: float
    best: bool
    seconds: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class DistillReport:
    train_samples: int
    heldout_samples: int
    kinds: dict[str, str]
    figure_name: str
    translation_error: float
    trained_tensors: int
    trained_values: int
    epochs: list[EpochStats]
    best_epoch: int
    stopped: str
    seconds: float
    resumed_from: int | None = None
    matched_features: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def figure_before(self) -> float:
        return self.epochs[0].figure

    @property
    def figure_after(self) -> float:
        return next(e.figure for e in self.epochs if e.epoch == self.best_epoch)

    def to_dict(self) -> dict:
        return {
            **self.paths,
            "train_samples": self.train_samples,
            "heldout_samples": self.heldout_samples,
            "kinds": self.kinds,
            "figure": self.figure_name,
            "figure_before": self.figure_before,
            "figure_after": self.figure_after,
            "translation_error": self.translation_error,
            "trained_tensors": self.trained_tensors,
            "trained_values": self.trained_values,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 2),
            "resumed_from": self.resumed_from,
            "matched_features": self.matched_features,
            "epochs": [e.to_dict() for e in self.epochs],
        }


StepFn = Callable[[int, int, int, float], None]  # epoch, step, steps, loss
EpochFn = Callable[[EpochStats], None]


# ---- checks ----------------------------------------------------------------------------------
def _describe(values: Sequence[ir.Value]) -> str:
    parts = []
    for v in values:
        dims = "?" if v.shape is None else "x".join(str(d) if isinstance(d, int) else "?" for d in v.shape)
        parts.append(f"{v.name}:{v.dtype.name if v.dtype is not None else '?'}[{dims}]")
    return ", ".join(parts)


def _compatible(a: ir.Value, b: ir.Value) -> bool:
    """Same dtype and rank; dims equal where both are fixed (a symbolic dim matches any)."""
    if a.dtype != b.dtype or (a.shape is None) != (b.shape is None):
        return False
    if a.shape is None:
        return True
    if len(a.shape) != len(b.shape):
        return False
    return all(
        x == y for x, y in zip(a.shape, b.shape, strict=True) if isinstance(x, int) and isinstance(y, int)
    )


def check_signatures(student: ir.Model, teacher: ir.Model) -> None:
    """Raise unless both models take the same inputs and give the same outputs (names, types, ranks)."""
    for what, s, t in (
        ("inputs", student.graph.inputs, teacher.graph.inputs),
        ("outputs", student.graph.outputs, teacher.graph.outputs),
    ):
        by_name = {v.name: v for v in t}
        if {v.name for v in s} != set(by_name) or not all(_compatible(v, by_name[v.name]) for v in s):
            raise ModelcrunchError(f"student and teacher {what} differ: {_describe(s)} vs {_describe(t)}")


def split_samples(data: Dataset, names: Sequence[str], holdout: float, seed: int) -> tuple[list, list]:
    """(train, held-out) sample lists: a fixed, seeded share held out (one to MAX_HELDOUT samples)."""
    if len(data) < 2:
        raise ModelcrunchError(f"distill needs at least 2 data samples, got {len(data)}")
    missing = [n for n in names if n not in data.samples[0]]
    if missing:
        raise ModelcrunchError(f"the data has no array for input '{missing[0]}' (arrays: {data.input_names})")
    samples = [{n: s[n] for n in names} for s in data.samples]
    order = np.random.default_rng(seed).permutation(len(samples))
    n_held = min(max(1, round(holdout * len(samples))), MAX_HELDOUT, len(samples) - 1)
    return [samples[i] for i in order[n_held:]], [samples[i] for i in order[:n_held]]


def _batches(samples: Sequence[Mapping[str, np.ndarray]], order: Sequence[int], size: int) -> list[dict]:
    return list(Dataset([samples[i] for i in order]).batches(size))


def translation_error(module: GraphModule, session, feeds: Sequence[Mapping[str, np.ndarray]]) -> float:
    """max over outputs and feeds of max|torch - ort| / max|ort|."""
    worst = 0.0
    names = [o.name for o in session.get_outputs()]
    with torch.no_grad():
        for feed in feeds:
            ref = dict(zip(names, run_checked(session, feed, name="student"), strict=True))
            got = module(feeds_to_torch(feed))
            for name in names:
                r = np.asarray(ref[name], dtype=np.float64)
                g = got[name].double().numpy()
                if r.shape != g.shape:
                    return math.inf
                scale = max(float(np.abs(r).max()) if r.size else 0.0, 1e-6)
                worst = max(worst, float(np.abs(r - g).max()) / scale if r.size else 0.0)
    return worst


# ---- the held-out figure ----------------------------------------------------------------------
class _Evaluator:
    """The held-out loss (torch, against the teacher's cached outputs) and the held-out figure: the
    quality judge's verdict (``runtime/judge.py``) on the student with the current weights, run in
    ONNX Runtime, i.e. the task figure each output's kind is judged by everywhere else (detection F1,
    top-1 along the class axis, pooled embedding cosine, mask IoU, ...): ``Verdict.quality``, the
    worst gated figure."""

    def __init__(self, module: GraphModule, specs: dict[str, LossSpec], batches, targets, temperature: float,
                 judge: Judge, student: ir.Model):  # fmt: skip
        self.module, self.specs, self.batches, self.targets = module, specs, batches, targets
        self.temperature, self.judge, self.student = temperature, judge, student
        self.name = "the judge's worst task figure"

    def __call__(self) -> tuple[float, float]:
        losses = []
        with torch.no_grad():
            for feed, target in zip(self.batches, self.targets, strict=True):
                got = self.module(feeds_to_torch(feed))
                losses.append(float(sum(output_loss(self.specs[n], got[n], target[n], self.temperature)
                                        for n in self.specs)))  # fmt: skip
        apply_weights(self.student, self.module.export())  # the best epoch's are applied at the end
        verdict = self.judge(self.student)
        figures = ", ".join(f"{f.output}: {f.figure}" for f in verdict.gated)
        self.name = f"the judge's worst task figure ({figures})" if figures else self.name
        return float(np.mean(losses)), verdict.quality


# ---- checkpoints -------------------------------------------------------------------------------
def _fingerprint(model: ir.Model) -> str:
    h = hashlib.sha256()
    for node in model.graph:
        h.update(f"{node.op_type}:{[v.name if v else '' for v in node.inputs]};".encode())
    for name, value in model.graph.initializers.items():
        h.update(f"{name}{tuple(value.shape or ())};".encode())
    return h.hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path / CHECKPOINT_FILE)


def _load_checkpoint(path: Path, fingerprint: str) -> dict:
    file = path / CHECKPOINT_FILE
    if not file.exists():
        raise ModelcrunchError(f"{path}: no distill checkpoint to resume from")
    try:
        state = torch.load(file, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types on a damaged file
        raise ModelcrunchError(f"{file}: unreadable checkpoint ({type(exc).__name__})") from exc
    if state.get("fingerprint") != fingerprint:
        raise ModelcrunchError(f"{file}: the checkpoint was made for another student model")
    return state


# ---- training ----------------------------------------------------------------------------------
def distill_model(
    student: ir.Model,
    teacher: ir.Model,
    data: Dataset,
    config: DistillConfig = DistillConfig(),
    *,
    on_step: StepFn | None = None,
    on_epoch: EpochFn | None = None,
) -> tuple[ir.Model, DistillReport]:
    """Train ``student``'s weights (in place) to match ``teacher`` on ``data``; returns it and a report."""
    start = time.perf_counter()
    check_signatures(student, teacher)
    names = [v.name for v in student.graph.inputs]
    train, held = split_samples(data, names, config.holdout, config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    module = GraphModule(student)
    if not module.param_index:
        raise ModelcrunchError("the student has no float weights distill can train")
    student_session = make_session(student, threads=config.threads)
    # a model with a fixed leading dim (exported at batch 1) takes its samples one per run
    dims = {v.name: list(v.shape.dims) if v.shape is not None else None for v in student.graph.inputs}
    config = replace(config, batch_size=data_batch(dims, config.batch_size))
    held_batches = _batches(held, range(len(held)), config.batch_size)
    error = translation_error(module, student_session, held_batches[:2])
    if not error <= config.tolerance:
        raise UnsupportedModel(
            f"the student's torch translation differs from ONNX Runtime by {error:.2g} of the output "
            f"range (tolerance {config.tolerance:g}); distill refuses to train on it"
        )
    feature_names: list[str] = []
    if config.feature_match > 0:
        with torch.no_grad():
            names_ = features.candidates(student, teacher)
            values = module(feeds_to_torch(held_batches[0]), extra=names_)
        feature_names = features.matched(values, teacher, held_batches[0], names_, 16, config.threads)
    teacher_session = make_session(features.with_outputs(teacher, feature_names), threads=config.threads)
    t_names = [o.name for o in teacher_session.get_outputs()]

    def teach(feed: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        outs = run_checked(teacher_session, feed, name="teacher")
        return {n: torch.from_numpy(np.asarray(o)) for n, o in zip(t_names, outs, strict=True)}

    held_targets = [teach(b) for b in held_batches]
    for name in (v.name for v in teacher.graph.outputs):
        t = held_targets[0][name]
        with torch.no_grad():
            s = module(feeds_to_torch(held_batches[0]))[name]
        if tuple(s.shape) != tuple(t.shape):
            raise ModelcrunchError(
                f"student and teacher output '{name}' shapes differ: {list(s.shape)} vs {list(t.shape)}"
            )
    specs = infer_loss_specs(
        teacher, {n: held_targets[0][n].numpy() for n in (v.name for v in teacher.graph.outputs)}
    )
    judge = Judge(teacher, held, threads=config.threads, describe=f"{len(held)} held-out samples")
    evaluate = _Evaluator(module, specs, held_batches, held_targets, config.temperature, judge, student)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    # Linear warm-up over the first epoch: Adam's first steps are lr-sized whatever the gradient,
    # which knocks a student that starts close to its teacher away from it.
    warmup = max(1, math.ceil(len(train) / config.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    rng = np.random.default_rng(config.seed + 1)
    fingerprint = _fingerprint(student)

    history: list[EpochStats] = []
    first_epoch, resumed_from, bad_epochs = 1, None, 0
    lowest = math.inf  # the lowest held-out loss so far
    if config.resume:
        state = _load_checkpoint(config.checkpoint, fingerprint)
        module.load_state_dict(state["module"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        history = [EpochStats(**e) for e in state["history"]]
        best_params, best_key = state["best_params"], tuple(state["best_key"])
        first_epoch = resumed_from = state["epoch"] + 1
        bad_epochs = state["bad_epochs"]
        lowest = min(e.heldout_loss for e in history)
    else:
        loss0, figure0 = evaluate()
        history.append(EpochStats(0, 0, None, loss0, figure0, True, time.perf_counter() - start))
        best_key, lowest = (figure0, -loss0), loss0
        best_params = [p.detach().clone() for p in module.params]
        if on_epoch:
            on_epoch(history[-1])

    def checkpoint(epoch: int) -> None:
        if config.checkpoint is None:
            return
        _save_checkpoint(config.checkpoint, {
            "fingerprint": fingerprint, "epoch": epoch, "module": module.state_dict(),
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "history": [e.to_dict() for e in history],
            "best_params": best_params, "best_key": list(best_key), "bad_epochs": bad_epochs,
        })  # fmt: skip

    if not config.resume:
        checkpoint(0)
    stopped = "epochs"
    epoch = first_epoch
    try:
        for epoch in (
            itertools.count(first_epoch)
            if config.max_epochs is None
            else range(first_epoch, config.max_epochs + 1)
        ):
            order = rng.permutation(len(train))
            batches = _batches(train, order, config.batch_size)
            losses = []
            out_of_time = False
            for step, feed in enumerate(batches, 1):
                feed = augment(feed, rng, config.augment)
                target = teach(feed)
                got = module(feeds_to_torch(feed), extra=feature_names)
                loss = sum(output_loss(specs[n], got[n], target[n], config.temperature) for n in specs)
                if feature_names:
                    matching = sum(feature_loss(got[n], target[n]) for n in feature_names) / len(
                        feature_names
                    )
                    loss = loss + config.feature_match * matching
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(float(loss.detach()))
                if on_step:
                    on_step(epoch, step, len(batches), losses[-1])
                if config.time_budget is not None and time.perf_counter() - start >= config.time_budget:
                    out_of_time = True
                    break
            loss_h, figure = evaluate()
            key = (figure, -loss_h)
            better = key > best_key
            if better:
                best_key = key
                best_params = [p.detach().clone() for p in module.params]
            bad_epochs = 0 if better or loss_h < lowest * (1 - PROGRESS) else bad_epochs + 1
            lowest = min(lowest, loss_h)
            history.append(EpochStats(epoch, len(losses), float(np.mean(losses)), loss_h, figure, better,
                                      time.perf_counter() - start))  # fmt: skip
            if on_epoch:
                on_epoch(history[-1])
            checkpoint(epoch)
            if out_of_time:
                stopped = "time budget"
                break
            if bad_epochs >= config.patience:
                stopped = "early stop"
                break
    except KeyboardInterrupt:
        # The checkpoint on disk is the last whole epoch's: resuming repeats this epoch exactly.
        where = f"; epoch {epoch - 1} is saved in {config.checkpoint} (--resume)" if config.checkpoint else ""
        raise Interrupted(f"interrupted in epoch {epoch}{where}") from None

    with torch.no_grad():
        for p, best in zip(module.params, best_params, strict=True):
            p.copy_(best)
    apply_weights(student, module.export())
    best_epoch = max(history, key=lambda e: (e.figure, -e.heldout_loss)).epoch
    report = DistillReport(
        train_samples=len(train),
        heldout_samples=len(held),
        kinds={n: s.kind for n, s in specs.items()},
        matched_features=feature_names,
        figure_name=evaluate.name,
        translation_error=error,
        trained_tensors=len(module.params),
        trained_values=int(sum(p.numel() for p in module.params)),
        epochs=history,
        best_epoch=best_epoch,
        stopped=stopped,
        seconds=time.perf_counter() - start,
        resumed_from=resumed_from,
    )
    return student, report


def copy_model(model: ir.Model) -> ir.Model:
    """A deep copy through serialisation (the student is trained in place)."""
    return ir.serde.deserialize_model(ir.serde.serialize_model(copy.copy(model)))
