"""The fidelity target a quantized candidate must meet, and the defaults for class and map outputs.

Gates (``QuantizeOptions``): worst output cosine (``--min-cosine``, 0.99 when not given), worst
per-channel error (``--max-channel-error``), accuracy drop with labels (``--max-drop``), top-1
agreement (``--min-top1-agreement``: share of argmaxes over the last axis that agree) and mask IoU
(``--min-mask-iou``: IoU of the ``> 0.5`` masks of a probability map, ``runtime/fidelity.py``).

Class outputs get a top-1 target by default. A cosine near 1 does not protect an argmax: two
classes that nearly tie flip under int8 while the probabilities barely move (on RapidOCR's text
recogniser, output cosine 0.990 still changed many read strings). An output is taken to hold
class probabilities when it is a Softmax over its last axis, written as the op or by hand
(``Exp`` then ``Div``, as magika does), seen through Identity/Cast/Reshape/Squeeze/Flatten. The
default is 99 % agreement for one distribution per row (``[N, C]``: a classifier) and 99.5 % per
step for a sequence of them (``[N, T, C]``: a CTC recogniser reads a line right only when its
steps agree). The sequence default is set from measurement on PP-OCRv4 rec (40 steps, 200
rendered lines): 99.5 % per step came with 95.5 % of lines read identically (the issue's 95 %
target), 99.1 % with 93 %, 99.7 % with 96.5-98.5 %. Even bf16 rounding of its weights alone gives
99.4 %, so a stricter default would keep nearly every layer float. ``--min-top1-agreement 0``
switches the default off.

Probability maps get a mask-IoU target by default. A dense map read by thresholding (text
detection, segmentation) moves its region edges by a pixel long before its cosine notices: on
PP-OCRv4 det, static int8 at output cosine 0.992 changed 9 % of the text boxes (box F1 91 % at
IoU 0.9). An output is taken to be such a map when it is a ``Sigmoid`` (seen through the same
pass-through ops) of rank >= 3. The default, 0.985, is set from measurement on PP-OCRv4 det
(100 rendered pages; mask IoU -> box F1 at IoU 0.9): 0.974 -> 91.2 %, 0.983 -> 94.6 %, 0.987 ->
97.1 %, 0.989 -> 95.9 % -- about 95 % of the boxes unchanged, the bar the OCR strings have.
``--min-mask-iou 0`` switches it off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import onnx_ir as ir

from modelcrunch.errors import ModelcrunchError
from modelcrunch.passes.quantize.config import QuantizeOptions
from modelcrunch.passes.quantize.sensitivity import Score
from modelcrunch.runtime.semantics import figure_kinds, source_of

if TYPE_CHECKING:
    import onnxruntime as ort

    from modelcrunch.runtime.fidelity import Fidelity
    from modelcrunch.runtime.judge import Verdict
    from modelcrunch.runtime.semantics import OutputSpec

#: Default top-1 agreement for a class output of rank 2, and for a sequence of them (rank >= 3).
DEFAULT_TOP1 = 0.99
DEFAULT_SEQUENCE_TOP1 = 0.995
#: Default mask IoU for a probability map (a Sigmoid output of rank >= 3).
DEFAULT_MASK_IOU = 0.985


def _softmax_source(value: ir.Value) -> bool:
    value, node = source_of(value)
    if node is None:
        return False
    if node.op_type in ("Softmax", "LogSoftmax"):
        axis = node.attributes.get("axis")
        rank = len(value.shape) if value.shape is not None else None
        axis_value = -1 if axis is None else axis.as_int()
        return axis_value == -1 or (rank is not None and axis_value == rank - 1)
    if node.op_type == "Div" and node.inputs[0] is not None:
        numerator = node.inputs[0].producer()
        return numerator is not None and numerator.op_type == "Exp"
    return False


def class_outputs(model: ir.Model) -> dict[str, int]:
    """Graph outputs that hold class probabilities (see the module docstring) → their rank."""
    found = {}
    for output in model.graph.outputs:
        rank = len(output.shape) if output.shape is not None else None
        if rank is not None and rank >= 2 and output.dtype == ir.DataType.FLOAT and _softmax_source(output):
            found[output.name] = rank
    return found


def map_outputs(model: ir.Model) -> list[str]:
    """Graph outputs that are probability maps: a Sigmoid of rank >= 3 (see the module docstring)."""
    found = []
    for output in model.graph.outputs:
        rank = len(output.shape) if output.shape is not None else None
        _, node = source_of(output)
        if rank is not None and rank >= 3 and node is not None and node.op_type == "Sigmoid":
            found.append(output.name)
    return found


def with_default_targets(options: QuantizeOptions, model: ir.Model) -> QuantizeOptions:
    """``options`` with the default top-1 target on the class outputs and the default mask-IoU
    target on the probability maps, each unless one was given (0: off)."""
    if options.min_top1_agreement is not None:
        if options.min_top1_agreement == 0:
            options = replace(options, min_top1_agreement=None)
    elif outputs := class_outputs(model):
        default = DEFAULT_SEQUENCE_TOP1 if max(outputs.values()) >= 3 else DEFAULT_TOP1
        options = replace(options, min_top1_agreement=default, top1_outputs=tuple(outputs))
    if options.min_mask_iou is not None:
        if options.min_mask_iou == 0:
            options = replace(options, min_mask_iou=None)
    elif maps := map_outputs(model):
        options = replace(options, min_mask_iou=DEFAULT_MASK_IOU, mask_outputs=tuple(maps))
    return options


def check_targets(options: QuantizeOptions) -> None:
    """Nothing to check before the kinds are known (kept for the option checks to come)."""


def check_kinds(options: QuantizeOptions, specs: Mapping[str, OutputSpec]) -> None:
    """An explicit target for a figure no output has is a usage error (one line, exit 2)."""
    kinds = figure_kinds(specs)
    if options.min_top1_agreement and not kinds & {"classes", "sequence"}:
        raise ModelcrunchError(
            "--min-top1-agreement: no output of this model has classes (no Softmax or logits output; "
            "see --output-kind); use --min-cosine"
        )
    if options.min_mask_iou and "map" not in kinds:
        raise ModelcrunchError(
            "--min-mask-iou: no output of this model is a probability map or YOLO-seg head (see "
            "--output-kind); use --min-cosine"
        )
    if options.min_f1 and "detection" not in kinds:
        raise ModelcrunchError("--min-f1: no output of this model is a detection output (see --output-kind)")
    if options.min_string_agreement and "sequence" not in kinds:
        raise ModelcrunchError(
            "--min-string-agreement: no output of this model is a CTC sequence (see --output-kind)"
        )
    if options.min_decision_agreement and "scalar" not in kinds:
        raise ModelcrunchError("--min-decision-agreement: no output of this model is a scalar score")


def has_classifier_output(session: ort.InferenceSession) -> bool:
    """Whether some output can have a top-1 (float, rank >= 2, last axis not 1)."""
    return any(
        o.type == "tensor(float)" and len(o.shape) >= 2 and o.shape[-1] != 1 for o in session.get_outputs()
    )


def top1_of(fidelity: Fidelity, options: QuantizeOptions) -> float | None:
    """The worst top-1 agreement over the outputs the top-1 target reads."""
    return fidelity.worst_top1_agreement_of(options.top1_outputs)


def mask_iou_of(fidelity: Fidelity, options: QuantizeOptions) -> float | None:
    """The worst mask IoU over the outputs the mask target reads."""
    return fidelity.worst_mask_iou_of(options.mask_outputs)


def meets(options: QuantizeOptions, score: Score) -> bool:
    fidelity = score.fidelity
    if options.max_channel_error is not None and not score.channel_error <= options.max_channel_error:
        return False
    if score.verdict is not None:
        return score.verdict.passed
    cosine = fidelity.worst_cosine
    if not math.isfinite(cosine) or cosine < options.effective_min_cosine:
        return False
    top1 = top1_of(fidelity, options)
    if options.min_top1_agreement is not None and (top1 is None or top1 < options.min_top1_agreement):
        return False
    mask = mask_iou_of(fidelity, options)
    if options.min_mask_iou is not None and (mask is None or mask < options.min_mask_iou):
        return False
    drop = fidelity.accuracy_drop
    return options.max_drop is None or drop is None or drop * 100.0 <= options.max_drop + 1e-9


def target_text(options: QuantizeOptions) -> str:
    given = {k: v for k, v in options.targets.given().items() if v}
    if not given and options.max_channel_error is None:
        return "the default task targets of each output's kind"
    text = f"--min-cosine {options.effective_min_cosine}"
    if options.max_channel_error is not None:
        text += f", --max-channel-error {options.max_channel_error}"
    if options.min_top1_agreement is not None:
        text += f", --min-top1-agreement {options.min_top1_agreement}"
        if options.top1_outputs is not None:
            text += f" (default, on the class output{'s' * (len(options.top1_outputs) > 1)})"
    if options.min_mask_iou is not None:
        text += f", --min-mask-iou {options.min_mask_iou}"
        if options.mask_outputs is not None:
            text += f" (default, on the probability map{'s' * (len(options.mask_outputs) > 1)})"
    return text + (f" and --max-drop {options.max_drop}" if options.max_drop is not None else "")


def measured_text(
    fidelity: Fidelity, channel_error: float, options: QuantizeOptions, verdict: Verdict | None = None
) -> str:
    if verdict is not None:
        worst = verdict.worst
        text = "; ".join(f.text() for f in verdict.missed()) or (worst.text() if worst else "no gated figure")
        return text + (f", worst channel error {channel_error:.2f}" if options.max_channel_error else "")
    text = f"worst cosine {fidelity.worst_cosine:.4f}, worst channel error {channel_error:.2f}"
    top1 = top1_of(fidelity, options)
    if top1 is not None:
        text += f", top-1 agreement {top1:.2%}"
    if options.min_mask_iou is not None:
        mask = mask_iou_of(fidelity, options)
        text += ", mask IoU " + (f"{mask:.4f}" if mask is not None else "— (no output holds probabilities)")
    drop = fidelity.accuracy_drop
    return text + (f", accuracy drop {drop * 100:.2f} points" if drop is not None else "")
