"""What each model output means: its *kind*, inferred from the graph and the reference values.

A kind decides how a candidate's output is judged against the original's (``task_metrics.py``):

=========== ================================================================= ==================
kind        inferred from                                                     headline figure
=========== ================================================================= ==================
detection   rank 3, a small "channel" axis whose first 4 channels are box      decode + NMS,
            coordinates (values beyond [0, 1]) and the rest scores in [0, 1]   match at IoU 0.5:
            (YOLO v8 ``[N, 4+C, A]``; channels last ``[N, A, 5+C]`` is read    F1
            as YOLO v5 with objectness); or ``--output-kind NAME=detection``
            YOLO-seg: the same plus ``M`` mask coefficients last, beside a     + mask IoU of the
            ``[N, M, h, w]`` prototype output (judged together)                matched detections
            GFL/PicoDet heads: per level a ``[N, A, C]`` score output in       decode all levels
            [0, 1] and a ``[N, A, 4 (R+1)]`` box-distribution output, at
            least 2 levels of falling anchor counts (judged together)
classes     a Softmax/LogSoftmax (or ``Exp``/``Div``) over axis ``k`` of a     top-1 agreement
            rank-2 output; a rank-2 Gemm/MatMul output of <= 1001 columns      along that axis
            (logits)
sequence    a Softmax over the last axis of ``[N, T, C]``: CTC-style per-step  greedy-decoded
            class scores; or rank-3 logits of C >= T classes whose per-step    string agreement
            argmax is the blank (class 0) on >= 30 % of the steps (``[T, 1, C]``
            read time-major)
embedding   token states ``[N, T, D]`` (D >= 64) of a model with an attention  per-sample cosine
            mask input (judged mean-pooled over the mask and normalised, as a  (mean; worst
            sentence vector), an L2-normalised or pooled vector, or an output   gated too)
            named like an embedding
map         a Sigmoid of rank >= 3 (text-detection/segmentation probability    per-sample mask
            map), or a Softmax over axis 1 of a rank >= 3 output (label map)   IoU (mean, worst)
scalar      one value per sample (``[N]``, ``[N, 1]``) or a Sigmoid of rank 2   decision agreement
            (independent probabilities)                                       at 0.5
generic     anything else                                                     cosine, worst
                                                                              channel group
=========== ================================================================= ==================

Every spec carries the reason it was inferred, which ``inspect`` and every report print.
``--output-kind NAME=KIND[:LAYOUT]`` (``KIND`` one of :data:`KINDS`) overrides the inference;
``--task KIND`` sets the kind of every output whose kind is not given by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.errors import ModelcrunchError

KINDS = ("detection", "classes", "sequence", "embedding", "map", "scalar", "generic")
DETECTION_LAYOUTS = ("yolov8", "yolov5", "nms")
#: The layout of every output of a GFL head (PicoDet, NanoDet): found from the data only.
DFL_LAYOUT = "dfl"
_PASS_THROUGH = frozenset({"Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
_EMBEDDING_WORDS = ("embed", "pool", "sentence", "feature", "vector", "hidden_state", "last_hidden")
_MASK_WORDS = ("attention_mask", "input_mask", "mask")
#: Logit columns up to this count read as classes (ImageNet's 1000 and 1001 included).
#: A rank-2 head of at most this many columns whose values are all >= 1 is scores, not logits.
FEW_SCORES = 8
MAX_CLASSES = 1001


@dataclass(frozen=True)
class OutputSpec:
    """An output's kind and what is needed to judge it."""

    name: str
    kind: str
    reason: str
    axis: int | None = None  # class axis (classes/sequence/map) or channel axis (detection)
    #: detection: yolov8 | yolov5 | nms; embedding: pooled | vector; sequence: time-major ([T, N, C])
    layout: str | None = None
    mask_input: str | None = None  # embedding token states: the attention-mask input to pool over
    #: a head spread over several outputs, judged together by its first: YOLO-seg (detections,
    #: prototypes); GFL (level 0's scores, level 0's box distributions, level 1's scores, ...)
    head: tuple[str, ...] | None = None
    masks: int = 0  # YOLO-seg: the mask coefficients at the end of each detection row

    @property
    def leads(self) -> bool:
        """Whether this output's accumulator judges the head (it is its first, or it has none)."""
        return self.head is None or self.head[0] == self.name

    def to_dict(self) -> dict:
        return asdict(self)


def figure_kinds(specs: Mapping[str, OutputSpec]) -> set[str]:
    """The kinds whose figures the outputs of ``specs`` give: their own, and ``map`` (mask IoU) for a
    YOLO-seg head."""
    kinds = {spec.kind for spec in specs.values()}
    return kinds | {"map"} if any(spec.masks for spec in specs.values()) else kinds


def parse_kind_overrides(
    values: Sequence[str] | Mapping[str, str] | None, task: str | None = None
) -> dict[str, str]:
    """``NAME=KIND[:LAYOUT]`` strings or a ``{name: kind}`` mapping (and ``--task KIND`` as the ``*``
    entry) → {name: kind}."""
    if isinstance(values, Mapping):
        values = [f"{name}={kind}" for name, kind in values.items()]
    overrides: dict[str, str] = {}
    for value in values or []:
        name, sep, kind = value.partition("=")
        if not sep or not name or not kind:
            raise ModelcrunchError(f"--output-kind '{value}': expected NAME=KIND (kinds: {', '.join(KINDS)})")
        _check_kind(kind, f"--output-kind '{value}'")
        overrides[name] = kind
    if task is not None:
        _check_kind(task, f"--task '{task}'")
        overrides["*"] = task
    return overrides


def _check_kind(kind: str, where: str) -> None:
    base, _, layout = kind.partition(":")
    if base not in KINDS:
        raise ModelcrunchError(f"{where}: unknown kind '{base}' (kinds: {', '.join(KINDS)})")
    if layout and base == "sequence":
        if layout != "time-major":
            raise ModelcrunchError(f"{where}: unknown sequence layout '{layout}' (sequence:time-major)")
        return
    if layout and base != "detection":
        raise ModelcrunchError(
            f"{where}: only detection and sequence take a layout (detection:{'|'.join(DETECTION_LAYOUTS)}, "
            "sequence:time-major)"
        )
    if layout and layout not in DETECTION_LAYOUTS:
        raise ModelcrunchError(
            f"{where}: unknown detection layout '{layout}' ({', '.join(DETECTION_LAYOUTS)})"
        )


def source_of(value: ir.Value) -> tuple[ir.Value, ir.Node | None]:
    """The value behind ``value``'s pass-through ops, and its producer."""
    node = value.producer()
    while node is not None and node.op_type in _PASS_THROUGH and node.inputs and node.inputs[0] is not None:
        value = node.inputs[0]
        node = value.producer()
    return value, node


def _softmax_axis(value: ir.Value, rank: int) -> int | None:
    """The axis a Softmax (op, or ``Exp`` then ``Div``) behind ``value`` normalises, else None."""
    source, node = source_of(value)
    if node is None:
        return None
    if node.op_type in ("Softmax", "LogSoftmax"):
        attr = node.attributes.get("axis")
        axis = -1 if attr is None else attr.as_int()
        return axis % rank if rank else None
    if node.op_type == "Div" and node.inputs[0] is not None:
        numerator = node.inputs[0].producer()
        if numerator is not None and numerator.op_type == "Exp":
            return rank - 1
    return None


def _producer_op(value: ir.Value) -> str | None:
    _, node = source_of(value)
    if node is None:
        return None
    if node.op_type == "Add" and node.inputs and node.inputs[0] is not None:
        first = node.inputs[0].producer()  # MatMul + bias
        if first is not None and first.op_type in ("MatMul", "Gemm"):
            return first.op_type
    return node.op_type


def _l2_normalised(value: ir.Value) -> bool:
    _, node = source_of(value)
    if node is None:
        return False
    if node.op_type == "LpNormalization":
        return True
    if node.op_type == "Div" and len(node.inputs) > 1 and node.inputs[1] is not None:
        divisor = node.inputs[1]
        for _ in range(4):  # Div(x, Clip/Max(Sqrt(ReduceSum(x*x))) or ReduceL2(x))
            producer = divisor.producer()
            if producer is None:
                return False
            if producer.op_type in ("ReduceL2", "Sqrt"):
                return True
            if not producer.inputs or producer.inputs[0] is None:
                return False
            divisor = producer.inputs[0]
    return False


def _has_sigmoid(value: ir.Value, depth: int = 4) -> bool:
    node = value.producer()
    for _ in range(depth):
        if node is None:
            return False
        if node.op_type == "Sigmoid":
            return True
        if not node.inputs or node.inputs[0] is None:
            return False
        node = node.inputs[0].producer()
    return False


def _concat_detection(value: ir.Value) -> int | None:
    """The concat axis when ``value`` is a Concat (seen through pass-through ops and a Transpose-free
    Reshape) of a Sigmoid score branch and another branch: YOLO's head, without data to check."""
    _, node = source_of(value)
    if node is None or node.op_type != "Concat" or len(node.inputs) < 2:
        return None
    branches = [v for v in node.inputs if v is not None]
    sigmoid = [_has_sigmoid(v) for v in branches]
    if not any(sigmoid) or all(sigmoid):
        return None
    attr = node.attributes.get("axis")
    axis = attr.as_int() if attr is not None else 1
    return axis if axis in (1, 2) else (1 if axis == -2 else 2 if axis == -1 else None)


def _mask_input(model: ir.Model) -> str | None:
    for value in model.graph.inputs:
        lowered = value.name.lower()
        if (
            any(word in lowered for word in _MASK_WORDS)
            and value.dtype is not None
            and value.dtype.is_integer()
        ):
            return value.name
    return None


def _detection_layout(values: np.ndarray, min_channels: int = 6) -> tuple[str, int] | None:
    """(layout, channel axis) when a rank-3 float output reads as YOLO boxes + scores, else None.

    Channel axis: the small one of axes 1 and 2 (at least ``min_channels``, and a quarter of the other
    at most).
    Its first 4 channels must reach beyond [0, 1] (pixel coordinates) and the rest stay in [0, 1].
    """
    if values.ndim != 3 or values.dtype.kind != "f" or not values.size:
        return None
    for axis, layout in ((1, "yolov8"), (2, "yolov5")):
        channels, anchors = values.shape[axis], values.shape[3 - axis]
        if channels < min_channels or channels * 4 > anchors:
            continue
        moved = np.moveaxis(values, axis, -1).reshape(-1, channels)
        boxes, scores = moved[:, :4], moved[:, 4:]
        if not np.isfinite(moved).all():
            return None
        if float(np.max(np.abs(boxes))) > 1.5 and float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0:
            return layout, axis
    return None


#: CTC logits: the share of steps, at least, whose argmax is the blank (class 0) on the data.
BLANK_SHARE = 0.3


def _ctc_layout(values: np.ndarray) -> str | None:
    """ "time-major" (``[T, 1, C]``, batch 1) or "batch-major" (``[N, T, C]``) when a rank-3 float
    output reads as CTC logits: at least 4 steps, at least as many classes on the last axis as steps
    (an alphabet; a detector's anchors outnumber its classes), and the blank (class 0) the argmax of
    at least ``BLANK_SHARE`` of the steps (text is mostly blanks between characters); else None."""
    if values.ndim != 3 or values.dtype.kind != "f" or values.shape[2] < 3 or not np.isfinite(values).all():
        return None
    time_major = values.shape[1] == 1 and values.shape[0] > 1
    steps = values.shape[0] if time_major else values.shape[1]
    if steps < 4 or values.shape[2] < steps:  # an alphabet outnumbers the steps; anchors outnumber classes
        return None
    if float(np.mean(np.argmax(values, axis=-1) == 0)) < BLANK_SHARE:
        return None
    return "time-major" if time_major else "batch-major"


def _probabilities(values: np.ndarray) -> bool:
    return bool(values.size) and float(values.min()) >= 0.0 and float(values.max()) <= 1.0


def _dfl_levels(sample: Mapping[str, np.ndarray]) -> list[tuple[str, str]] | None:
    """(scores, box distributions) output names per level, finest first, when the outputs read as a
    GFL head: per anchor count, one ``[N, A, C]`` output in [0, 1] and one ``[N, A, 4 (R+1)]``
    output of unbounded values (DFL logits), at least 2 levels, each with fewer anchors than the
    one before and the same C and R throughout."""
    by_anchors: dict[int, list[str]] = {}
    for name, values in sample.items():
        if values.ndim == 3 and values.dtype.kind == "f" and values.size and np.isfinite(values).all():
            by_anchors.setdefault(values.shape[1], []).append(name)
    levels = []
    for anchors, names in sorted(by_anchors.items(), reverse=True):
        scores = [n for n in names if _probabilities(sample[n]) and sample[n].shape[2] <= MAX_CLASSES]
        boxes = [
            n for n in names
            if n not in scores and sample[n].shape[2] % 4 == 0 and sample[n].shape[2] >= 8
        ]  # fmt: skip
        if len(scores) == 1 and len(boxes) == 1 and anchors > sample[scores[0]].shape[2]:
            levels.append((scores[0], boxes[0]))
    if len(levels) < 2:
        return None
    if len({sample[s].shape[2] for s, _ in levels}) != 1 or len({sample[b].shape[2] for _, b in levels}) != 1:
        return None
    return levels


def _seg_head(sample: Mapping[str, np.ndarray]) -> tuple[str, str, int, str, int] | None:
    """(detections, prototypes, mask coefficients, layout, channel axis) when one rank-3 output reads
    as YOLO boxes + scores + M mask coefficients (not all in [0, 1], unlike scores) and one rank-4
    output holds M prototype masks."""
    protos = [
        n for n, v in sample.items()
        if v.ndim == 4 and v.dtype.kind == "f" and 8 <= v.shape[1] <= 64 and min(v.shape[2:]) >= 8
    ]  # fmt: skip
    if len(protos) != 1:
        return None
    masks = sample[protos[0]].shape[1]
    for name, values in sample.items():
        if values.ndim != 3 or values.dtype.kind != "f":
            continue
        for axis in (1, 2):
            if values.shape[axis] - masks < 5:
                continue
            kept = np.take(values, np.arange(values.shape[axis] - masks), axis=axis)
            coefficients = np.take(
                values, np.arange(values.shape[axis] - masks, values.shape[axis]), axis=axis
            )
            if _probabilities(coefficients):  # scores, not coefficients: a detector beside a feature map
                continue
            found = _detection_layout(kept, min_channels=5)  # one class: the prototypes vouch for it
            if found is not None and found[1] == axis:
                return name, protos[0], masks, found[0], axis
    return None


def _heads(sample: Mapping[str, np.ndarray] | None) -> dict[str, OutputSpec]:
    """The specs of the outputs that make up a multi-output detection head (module docstring)."""
    if not sample:
        return {}
    specs: dict[str, OutputSpec] = {}
    seg = _seg_head(sample)
    if seg is not None:
        name, proto, masks, layout, axis = seg
        classes = sample[name].shape[axis] - 4 - masks - (layout == "yolov5")
        reason = (
            f"YOLO-seg: 4 box coordinates, {classes} scores and {masks} mask coefficients on axis {axis}, "
            f"with the prototype masks of '{proto}' (read as {layout}; judged with them)"
        )
        head = (name, proto)
        specs[name] = OutputSpec(name, "detection", reason, axis, layout, head=head, masks=masks)
        specs[proto] = OutputSpec(
            proto, "detection", f"the prototype masks of the YOLO-seg head '{name}' (judged with it)",
            1, layout, head=head, masks=masks,
        )  # fmt: skip
    levels = _dfl_levels({k: v for k, v in sample.items() if k not in specs})
    if levels is not None:
        head = tuple(n for level in levels for n in level)
        classes = sample[levels[0][0]].shape[2]
        bins = sample[levels[0][1]].shape[2] // 4
        for index, (scores, boxes) in enumerate(levels):
            where = f"level {index} of {len(levels)} of a GFL (PicoDet-style) head, {classes} classes"
            specs[scores] = OutputSpec(
                scores, "detection", f"{where}: class scores", 2, DFL_LAYOUT, head=head
            )
            specs[boxes] = OutputSpec(
                boxes, "detection", f"{where}: box distributions over {bins} bins per side", 2, DFL_LAYOUT,
                head=head,
            )  # fmt: skip
    return specs


def infer_specs(
    model: ir.Model,
    sample: Mapping[str, np.ndarray] | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    head_sample: Mapping[str, np.ndarray] | None = None,
) -> dict[str, OutputSpec]:
    """Every graph output's :class:`OutputSpec`.

    ``sample``: the reference outputs on one feed (value ranges and concrete shapes);
    ``overrides``: {output name or ``*``: ``KIND[:LAYOUT]``} (see :func:`parse_kind_overrides`);
    ``head_sample``: without ``sample``, outputs on a synthetic feed, read only for the structure of
    multi-output heads (``_heads``), never for one output's kind (random inputs say nothing of that).
    """
    overrides = dict(overrides or {})
    unknown = [n for n in overrides if n != "*" and n not in {o.name for o in model.graph.outputs}]
    if unknown:
        names = ", ".join(o.name for o in model.graph.outputs)
        raise ModelcrunchError(f"--output-kind: the model has no output '{unknown[0]}' (outputs: {names})")
    specs = {}
    heads = _heads(sample if sample is not None else head_sample)
    if any(name in overrides for name in heads) or "*" in overrides:  # the user decides these outputs
        heads = {}
    for output in model.graph.outputs:
        values = None if sample is None else sample.get(output.name)
        forced = overrides.get(output.name, overrides.get("*"))
        spec = heads.get(output.name) or _infer_one(model, output, values)
        if forced is not None:
            spec = _forced(spec, forced, values)
        specs[output.name] = spec
    return specs


def _forced(inferred: OutputSpec, forced: str, values: np.ndarray | None) -> OutputSpec:
    kind, _, layout = forced.partition(":")
    reason = "given by --output-kind/--task"
    if kind == "detection":
        found = _detection_layout(values) if values is not None else None
        axis = found[1] if found else (2 if layout in ("yolov5", "nms") else 1)
        return OutputSpec(inferred.name, kind, reason, axis, layout or (found[0] if found else "yolov8"))
    if kind in ("classes", "sequence", "map"):
        axis = inferred.axis if inferred.kind in ("classes", "sequence", "map") else None
        if axis is None and values is not None:
            axis = 1 if kind == "map" and values.ndim >= 3 else values.ndim - 1
        time_major = kind == "sequence" and (layout == "time-major" or inferred.layout == "time-major")
        return OutputSpec(inferred.name, kind, reason, axis, "time-major" if time_major else None)
    if kind == "embedding":
        return OutputSpec(inferred.name, kind, reason, layout=inferred.layout or "vector",
                          mask_input=inferred.mask_input)  # fmt: skip
    return OutputSpec(inferred.name, kind, reason)


def _infer_one(model: ir.Model, output: ir.Value, values: np.ndarray | None) -> OutputSpec:
    name = output.name
    shape = values.shape if values is not None else (output.shape.dims if output.shape is not None else None)
    rank = len(shape) if shape is not None else None
    is_float = (values.dtype.kind == "f") if values is not None else (
        output.dtype is not None and output.dtype.is_floating_point()
    )  # fmt: skip
    if not is_float or rank is None:
        return OutputSpec(name, "generic", "not a float output" if not is_float else "unknown rank")
    per_sample = int(np.prod(shape[1:])) if rank >= 1 and all(isinstance(d, int) for d in shape[1:]) else None
    softmax = _softmax_axis(output, rank)
    op = _producer_op(output)
    if rank == 3 and values is not None and (found := _detection_layout(values)) is not None:
        layout, axis = found
        return OutputSpec(
            name, "detection",
            f"rank 3 with {values.shape[axis]} channels on axis {axis}: 4 box coordinates beyond [0, 1] "
            f"and {values.shape[axis] - 4} scores in [0, 1] over {values.shape[3 - axis]} anchors "
            f"(read as {layout})",
            axis, layout,
        )  # fmt: skip
    if rank == 3 and values is None and (axis := _concat_detection(output)) is not None:
        layout = "yolov8" if axis == 1 else "yolov5"
        reason = (
            f"rank 3, a Concat on axis {axis} of a box branch and a Sigmoid score branch (read as "
            f"{layout}; the data decides when given)"
        )
        return OutputSpec(name, "detection", reason, axis, layout)
    if softmax is not None:
        if rank == 2:
            return OutputSpec(name, "classes", f"Softmax over axis {softmax} of a rank-2 output", softmax)
        if rank == 3 and softmax == 2:
            return OutputSpec(name, "sequence", "Softmax over the last axis of [N, T, C]: per-step class "
                              "scores, read as a CTC sequence", 2)  # fmt: skip
        if rank >= 3 and softmax == 1:
            return OutputSpec(
                name, "map", f"Softmax over the channel axis of a rank-{rank} output: a label map", 1
            )
        if rank >= 2:
            return OutputSpec(name, "classes", f"Softmax over axis {softmax}", softmax)
    if op == "Sigmoid":
        if rank >= 3:
            return OutputSpec(name, "map", f"Sigmoid of rank {rank}: a probability map")
        return OutputSpec(name, "scalar", "Sigmoid of rank <= 2: independent probabilities")
    lowered = name.lower()
    mask = _mask_input(model)
    if (
        rank == 3
        and mask is not None
        and shape[2] is not None
        and isinstance(shape[2], int)
        and shape[2] >= 64
    ):
        reason = (
            f"token states [N, T, {shape[2]}] of a model with the mask input '{mask}': judged as the "
            "masked mean-pooled sentence vector"
        )
        return OutputSpec(name, "embedding", reason, layout="pooled", mask_input=mask)
    if rank == 3 and values is not None and (ctc := _ctc_layout(values)) is not None:
        shape_text = "[T, 1, C] (time-major)" if ctc == "time-major" else "[N, T, C]"
        reason = (
            f"rank-3 logits {shape_text} whose per-step argmax is the blank (class 0) on at least "
            f"{BLANK_SHARE:.0%} of the steps: read as a CTC sequence"
        )
        return OutputSpec(name, "sequence", reason, 2, ctc if ctc == "time-major" else None)
    if rank == 2 and (_l2_normalised(output) or op in ("ReduceMean", "GlobalAveragePool")):
        return OutputSpec(name, "embedding", f"a {'normalised' if op != 'ReduceMean' else 'pooled'} vector",
                          layout="vector")  # fmt: skip
    if rank == 2 and any(word in lowered for word in _EMBEDDING_WORDS):
        return OutputSpec(name, "embedding", f"a vector named '{name}'", layout="vector")
    if per_sample == 1 or rank <= 1:
        return OutputSpec(name, "scalar", "one value per sample")
    if rank == 2 and op in ("Gemm", "MatMul") and isinstance(shape[1], int) and 2 <= shape[1] <= MAX_CLASSES:
        if shape[1] <= FEW_SCORES and values is not None and values.size and float(np.min(values)) >= 1.0:
            # a few columns, every value >= 1 on the data: scores (DNSMOS's SIG/BAK/OVR in 1-5), not
            # logits, whose argmax over 3 MOS values would mean nothing
            return OutputSpec(name, "scalar", f"rank-2 {op} output of {shape[1]} columns, all values >= 1 "
                              "on the data: scores (a regression), not class logits")  # fmt: skip
        return OutputSpec(name, "classes", f"rank-2 {op} output of {shape[1]} columns: class logits", 1)
    return OutputSpec(name, "generic", "no task pattern recognised")
