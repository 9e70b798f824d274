"""Distillation losses, one per output kind (``s`` student, ``t`` teacher, per output):

* **classes** (class axis ``a``): ``T^2 * KL(softmax(t/T) || softmax(s/T))`` over axis ``a``; outputs
  that are already probabilities (a Softmax) are compared as ``KL(t || s)`` directly.
* **sequence** (per-step class scores ``[N, T, C]`` read as CTC, blank 0): the per-step KL of
  **classes** plus a sequence term, the CTC loss of the student's steps against the teacher's greedy
  decoding (argmax per step, repeats merged, blanks dropped: the string the teacher reads) less the
  teacher's own CTC loss on it (a constant: zero when the student reads like the teacher). The step
  term matches every frame; the CTC term rewards any alignment that reads the same string.
* **embedding**: ``mean(1 - cos(s, t))`` along the last axis.
* **detection** (YOLO ``[N, 4+C, A]`` / ``[N, A, 4+C]``): box term ``mean(w * |s_box - t_box|) / mean|t_box|``
  with ``w = max teacher score per anchor + 0.05`` (boxes that are found matter), plus score term
  ``BCE(s_score, t_score) - H(t_score)`` (zero when the scores agree).
* **map** / **scalar** probabilities: the same binary cross-entropy (minus the teacher's entropy).
* anything else: ``mean((s - t)^2) / (var(t) + 1e-8)``.
* intermediate features (``--feature-match``): the last rule, per matched value.

Kinds come from :mod:`modelcrunch.runtime.semantics` when present; otherwise from a small local
inference (YOLO-shaped rank 3 → detection; unit-norm rows → embedding; rank 2 or a Softmax →
classes; else generic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
import torch
import torch.nn.functional as F

from modelcrunch.runtime.semantics import DFL_LAYOUT, infer_specs


@dataclass(frozen=True)
class LossSpec:
    name: str
    kind: str
    axis: int | None = None
    layout: str | None = None
    probabilities: bool = False  # classes: the output is already a softmax
    masks: int = 0  # YOLO-seg: mask coefficients at the end of each detection row
    #: a multi-output detection head's member: "scores" / "boxes" (GFL), "protos" (YOLO-seg)
    part: str | None = None


def _producer(value: ir.Value) -> str | None:
    node = value.producer()
    while node is not None and node.op_type in ("Identity", "Reshape", "Flatten", "Squeeze", "Cast"):
        node = node.inputs[0].producer() if node.inputs and node.inputs[0] is not None else None
    return node.op_type if node is not None else None


def infer_loss_specs(model: ir.Model, sample: dict[str, np.ndarray]) -> dict[str, LossSpec]:
    """One LossSpec per graph output, from the judge's semantics."""
    specs: dict[str, LossSpec] = {}
    judged = infer_specs(model, sample)
    for output in model.graph.outputs:
        producer = _producer(output)
        s = judged[output.name]
        kind, axis, layout, masks, part = s.kind, s.axis, s.layout, s.masks, None
        if s.head is not None and layout == DFL_LAYOUT:
            part = ("scores", "boxes")[s.head.index(output.name) % 2]
        elif s.head is not None and not s.leads:
            part = "protos"
        if kind == "classes" and axis is None:
            axis = sample[output.name].ndim - 1
        specs[output.name] = LossSpec(output.name, kind, axis, layout, producer == "Softmax", masks, part)
    return specs


def _bce_excess(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of s against t, minus t's own entropy: 0 where s == t."""
    eps = 1e-6
    s = s.clamp(eps, 1 - eps)
    tc = t.clamp(eps, 1 - eps)
    return (t * (torch.log(tc) - torch.log(s)) + (1 - t) * (torch.log(1 - tc) - torch.log(1 - s))).mean()


def _mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return ((s - t) ** 2).mean() / (t.detach().var(unbiased=False) + 1e-8)


def _class_kl(
    s: torch.Tensor, t: torch.Tensor, axis: int, probabilities: bool, temperature: float
) -> torch.Tensor:
    if probabilities:
        log_s = torch.log(s.clamp_min(1e-8))
        return (t * (torch.log(t.clamp_min(1e-8)) - log_s)).sum(axis).mean()
    log_s = F.log_softmax(s / temperature, dim=axis)
    log_t = F.log_softmax(t / temperature, dim=axis)
    kl = (log_t.exp() * (log_t - log_s)).sum(axis).mean()
    return kl * temperature**2


def greedy_labels(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's CTC greedy decoding of ``[N, T, C]`` scores (blank 0): the labels of all samples
    concatenated, and each sample's length (``F.ctc_loss``'s targets)."""
    best = t.argmax(-1)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != 0
    return best[keep], keep.sum(1)


def _sequence_loss(spec: LossSpec, s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    if spec.layout == "time-major" and s.dim() == 3:  # [T, N, C] → [N, T, C]
        s, t = s.transpose(0, 1), t.transpose(0, 1)
    axis = spec.axis if spec.axis is not None else s.dim() - 1
    steps = _class_kl(s, t, axis, spec.probabilities, temperature)
    if s.dim() != 3 or axis not in (2, -1):
        return steps
    labels, lengths = greedy_labels(t.detach())

    def log_probs(x: torch.Tensor) -> torch.Tensor:  # [T, N, C], as ctc_loss wants
        x = torch.log(x.clamp_min(1e-8)) if spec.probabilities else F.log_softmax(x, dim=-1)
        return x.transpose(0, 1)

    steps_in = torch.full((s.shape[0],), s.shape[1], dtype=torch.long)

    def ctc(x: torch.Tensor) -> torch.Tensor:
        return F.ctc_loss(log_probs(x), labels, steps_in, lengths, blank=0, zero_infinity=True)

    with torch.no_grad():
        baseline = ctc(t)
    return steps + (ctc(s) - baseline)


def _detection_loss(spec: LossSpec, s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    """YOLO rows: box L1 weighted by the teacher's best score, score BCE (x10), YOLO-seg's mask
    coefficients MSE weighted alike; a GFL head's members: score BCE (x10) and each side's bin
    distribution KL; YOLO-seg's prototypes: MSE."""
    if spec.part == "scores":
        return 10.0 * _bce_excess(s, t)
    if spec.part == "boxes":  # [N, A, 4 (R+1)]: a distribution over R+1 bins per side
        bins = s.shape[-1] // 4
        return _class_kl(s.reshape(*s.shape[:-1], 4, bins), t.reshape(*t.shape[:-1], 4, bins), -1, False,
                         temperature)  # fmt: skip
    if spec.part == "protos":
        return _mse(s, t)
    axis = spec.axis if spec.axis is not None else 1
    s_m, t_m = torch.movedim(s, axis, -1), torch.movedim(t, axis, -1)
    end = s_m.shape[-1] - spec.masks
    weight = t_m[..., 4:end].amax(-1, keepdim=True) + 0.05
    box = (weight * (s_m[..., :4] - t_m[..., :4]).abs()).mean() / (t_m[..., :4].abs().mean() + 1e-6)
    loss = box + 10.0 * _bce_excess(s_m[..., 4:end], t_m[..., 4:end])
    if spec.masks:
        coefficients = (weight * (s_m[..., end:] - t_m[..., end:]) ** 2).mean()
        loss = loss + coefficients / (t_m[..., end:].var(unbiased=False) + 1e-8)
    return loss


def output_loss(spec: LossSpec, s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    s = s.float()
    t = t.float()
    if spec.kind == "sequence" and s.dim() >= 2 and s.shape[-1] > 1:
        return _sequence_loss(spec, s, t, temperature)
    if spec.kind == "classes" and s.dim() >= 1 and s.shape[spec.axis] > 1:
        return _class_kl(s, t, spec.axis, spec.probabilities, temperature)
    if spec.kind == "embedding":
        return (1 - F.cosine_similarity(s, t, dim=-1, eps=1e-8)).mean()
    if spec.kind == "detection":
        return _detection_loss(spec, s, t, temperature)
    probabilities = float(t.min()) >= 0 and float(t.max()) <= 1
    if (
        spec.kind in ("map", "scalar")
        and probabilities
        and 0 <= float(s.detach().min()) <= float(s.max()) <= 1
    ):
        return _bce_excess(s, t)
    return _mse(s, t)


def feature_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return _mse(s, t)
