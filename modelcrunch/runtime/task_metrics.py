"""Task figures of one output, streamed over batches: a candidate's outputs against the reference's.

One accumulator per output kind (``semantics.py``); ``update(ref, cand, feed)`` per batch, then
``figures()`` gives ``(figure name, value, details)`` rows, every value in [0, 1] with 1 meaning
"the same as the reference":

* **detection**: each sample is decoded (boxes ``cx, cy, w, h`` → corners; YOLO v8: class scores,
  YOLO v5: objectness × class scores; NMS outputs ``[K, 6]`` read as x1, y1, x2, y2, score, class),
  kept at score >= 0.25, class-wise NMS at IoU 0.45, at most 300. The candidate's detections are
  matched greedily (best score first) to the reference's of the same class at IoU >= 0.5.
  ``F1 = 2 TP / (n_ref + n_cand)`` over all samples (1 when neither finds anything); the mean IoU
  of the matched pairs is a detail. A GFL head (PicoDet) is decoded from all of its levels: each
  anchor point's box is its centre ± the expected bin of each side's distribution × the level's
  stride (the stride whose grid over the input image has the level's anchor count). A YOLO-seg
  head adds the **mask IoU of the matched detections** (``sigmoid(coefficients · prototypes) >
  0.5`` inside the box, on the prototypes' grid), mean over the matched pairs.
* **classes**: top-1 agreement of the argmax along the class axis (top-5: the reference's top-1
  among the candidate's five best, a detail).
* **sequence**: greedy CTC decoding (argmax per step, repeats merged, blank 0 dropped); the share
  of samples whose decoded strings are identical. Per-step top-1 agreement is a detail.
* **embedding**: per-sample cosine of the vectors (token states: mean-pooled over the attention
  mask first), mean and worst; nearest-neighbour agreement across samples (each sample's most
  similar other sample is the same in both) is a detail.
* **map**: per-sample IoU of the ``> 0.5`` masks (label maps: of the argmax labels, mean over the
  labels present), mean and worst (samples whose masks cover under ``MIN_UNION`` pixels count in
  the mean only).
* **scalar**: agreement of the decisions at 0.5 (probabilities) or at 0 (logits), element-wise;
  the largest absolute difference is a detail.
* every float output: **cosine per channel group** (scale-aware). Along the channel axis, each
  channel's reference RMS is taken; where they differ by more than 10×, channels are grouped by
  decade of RMS and the cosine of each group is computed; the worst group counts (a box branch in
  pixels cannot hide a collapsed score branch in [0, 1]). Groups whose RMS is under 1e-4 of the
  largest are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from modelcrunch.runtime.semantics import DFL_LAYOUT, OutputSpec

CONFIDENCE = 0.25
NMS_IOU = 0.45
MATCH_IOU = 0.5
MAX_DETECTIONS = 300
MIN_UNION = 64
MAX_VECTORS = 4096  # embedding vectors kept for the nearest-neighbour figure
GROUP_RATIO = 10.0
NEGLIGIBLE_GROUP = 1e-4

Figure = tuple[str, float, dict]


def _channel_axis(spec: OutputSpec, ndim: int) -> int | None:
    if ndim < 2:
        return None
    if spec.kind in ("detection", "classes", "sequence") and spec.axis is not None:
        return spec.axis
    return 1


class ChannelGroups:
    """Per-channel sums along one axis; the cosine of the worst channel group (see module docstring)."""

    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.sums: np.ndarray | None = None  # [4, C]: ref², cand², ref·cand, count

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        r, c = ref.astype(np.float64, copy=False), cand.astype(np.float64, copy=False)
        axis = _channel_axis(self.spec, r.ndim)
        if axis is None:
            r, c = r.reshape(1, -1), c.reshape(1, -1)
            axis = 0
        r, c = np.moveaxis(r, axis, 0), np.moveaxis(c, axis, 0)
        r, c = r.reshape(r.shape[0], -1), c.reshape(c.shape[0], -1)
        part = np.stack([(r * r).sum(1), (c * c).sum(1), (r * c).sum(1), np.full(r.shape[0], r.shape[1])])
        if self.sums is None:
            self.sums = part
        elif self.sums.shape == part.shape:  # a changing channel count (folder data): the first counts
            self.sums = self.sums + part

    def figure(self) -> Figure:
        if self.sums is None:
            return ("cosine", 1.0, {})
        ref_sq, cand_sq, dot, count = self.sums
        rms = np.sqrt(ref_sq / np.maximum(count, 1))
        live = rms > 0
        if not live.any():
            return ("cosine", 1.0 if cand_sq.sum() == 0 else 0.0, {"groups": 0})
        top = float(rms[live].max())
        keep = live & (rms >= top * NEGLIGIBLE_GROUP)
        grouped = float(rms[keep].max() / rms[keep].min()) > GROUP_RATIO
        decades = np.floor(np.log10(np.where(keep, rms, 1.0))) if grouped else np.zeros_like(rms)
        worst, worst_group, groups = 1.0, None, 0
        for decade in np.unique(decades[keep]):
            members = keep & (decades == decade)
            groups += 1
            denominator = math.sqrt(float(ref_sq[members].sum()) * float(cand_sq[members].sum()))
            cosine = float(dot[members].sum()) / denominator if denominator > 0 else 0.0
            if cosine < worst or worst_group is None:
                worst, worst_group = min(worst, cosine), members
        rel = np.sqrt(np.maximum(ref_sq + cand_sq - 2 * dot, 0.0)) / np.maximum(np.sqrt(ref_sq), 1e-30)
        rel = np.where(keep, rel, 0.0)
        details = {
            "groups": groups,
            "grouped_by_scale": grouped,
            "worst_channel": int(np.argmax(rel)),
            "worst_channel_rel_error": float(rel.max()),
        }
        if grouped and worst_group is not None:
            channels = np.flatnonzero(worst_group)
            details["worst_group_channels"] = [int(channels[0]), int(channels[-1])]
        return ("cosine", max(min(worst, 1.0), -1.0), details)


# ---- detection ------------------------------------------------------------------------------


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def _nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < MAX_DETECTIONS:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        same = classes[rest] == classes[i]
        overlap = _iou(boxes[i], boxes[rest]) > NMS_IOU
        order = rest[~(same & overlap)]
    return np.asarray(keep, dtype=np.int64)


class Found(NamedTuple):
    """One sample's detections after NMS."""

    boxes: np.ndarray  # [k, 4] corners x1, y1, x2, y2
    scores: np.ndarray  # [k]
    classes: np.ndarray  # [k]
    coefficients: np.ndarray | None = None  # YOLO-seg: [k, M] mask coefficients


def _kept(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, extra: np.ndarray | None) -> Found:
    keep = scores >= CONFIDENCE
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    extra = None if extra is None else extra[keep]
    kept = _nms(boxes, scores, classes)
    return Found(boxes[kept], scores[kept], classes[kept], None if extra is None else extra[kept])


def decode_detections(values: np.ndarray, spec: OutputSpec) -> list[Found]:
    """Per sample: the detections of a YOLO or NMS output after NMS (module docstring)."""
    out = []
    axis = spec.axis if spec.axis is not None else 1
    for sample in values.astype(np.float64, copy=False):
        rows = np.moveaxis(sample, axis - 1, -1).reshape(-1, sample.shape[axis - 1])
        if spec.layout == "nms":
            boxes, scores, classes = rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64)
            keep = scores >= CONFIDENCE
            out.append(Found(boxes[keep], scores[keep], classes[keep]))
            continue
        end = rows.shape[1] - spec.masks
        if spec.layout == "yolov5":
            class_scores = rows[:, 5:end] * rows[:, 4:5] if end > 5 else rows[:, 4:5]
        else:
            class_scores = rows[:, 4:end]
        classes = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(rows.shape[0]), classes]
        cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        out.append(_kept(boxes, scores, classes, rows[:, end:] if spec.masks else None))
    return out


def image_size(feed: Mapping) -> tuple[int, int] | None:
    """(height, width) of the feed's image input (a float ``[N, C, H, W]`` or ``[N, H, W, C]``)."""
    for value in feed.values():
        shape = np.shape(value)
        if len(shape) == 4 and np.asarray(value).dtype.kind == "f":
            if shape[1] <= 4:
                return int(shape[2]), int(shape[3])
            if shape[3] <= 4:
                return int(shape[1]), int(shape[2])
    return None


STRIDES = (8, 16, 32, 64, 128, 4)


def _grid(anchors: int, level: int, image: tuple[int, int] | None) -> tuple[int, int]:
    """(stride, grid width) of a GFL level of ``anchors`` points: the stride whose grid over the
    image (sides rounded up) has that many points; without an image, a square grid at 8 × 2^level
    (both models are decoded alike, which is what judging needs)."""
    if image is not None:
        height, width = image
        for stride in STRIDES:
            if math.ceil(height / stride) * math.ceil(width / stride) == anchors:
                return stride, math.ceil(width / stride)
    return 8 << level, max(1, math.ceil(math.sqrt(anchors)))


def decode_dfl(levels: list[tuple[np.ndarray, np.ndarray]], image: tuple[int, int] | None) -> list[Found]:
    """Per sample: the detections of a GFL head, ``levels`` = (scores ``[N, A, C]``, box
    distributions ``[N, A, 4 (R+1)]``) per level, finest first. Each side's distance is the expected
    bin (softmax over the R+1 bins, unless they already sum to 1) times the stride, from the anchor
    point's centre."""
    out = []
    for n in range(levels[0][0].shape[0]):
        boxes, scores, classes = [], [], []
        for level, (level_scores, distributions) in enumerate(levels):
            score = level_scores[n].astype(np.float64, copy=False)
            best = np.argmax(score, axis=1)
            top = score[np.arange(score.shape[0]), best]
            live = np.flatnonzero(top >= CONFIDENCE)  # decode only the anchors that can count
            stride, width = _grid(score.shape[0], level, image)
            bins = distributions.shape[2] // 4
            d = distributions[n, live].astype(np.float64).reshape(-1, 4, bins)
            if not (d.min(initial=0.0) >= 0 and np.allclose(d.sum(-1), 1.0, atol=1e-3)):
                d = np.exp(d - d.max(-1, keepdims=True))
                d /= d.sum(-1, keepdims=True)
            distance = (d * np.arange(bins)).sum(-1) * stride
            cx, cy = (live % width + 0.5) * stride, (live // width + 0.5) * stride
            boxes.append(np.stack([cx - distance[:, 0], cy - distance[:, 1], cx + distance[:, 2],
                                   cy + distance[:, 3]], axis=1))  # fmt: skip
            scores.append(top[live])
            classes.append(best[live])
        out.append(_kept(np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes), None))
    return out


def match_pairs(reference: Found, candidate: Found) -> list[tuple[int, int, float]]:
    """(candidate index, reference index, IoU) of each matched pair: greedy, best candidate score
    first, same class, IoU >= ``MATCH_IOU``."""
    used = np.zeros(len(reference.boxes), dtype=bool)
    pairs: list[tuple[int, int, float]] = []
    for i in np.argsort(-candidate.scores, kind="stable"):
        if not len(reference.boxes):
            break
        overlap = _iou(candidate.boxes[i], reference.boxes)
        overlap[(reference.classes != candidate.classes[i]) | used] = -1.0
        j = int(np.argmax(overlap))
        if overlap[j] >= MATCH_IOU:
            used[j] = True
            pairs.append((int(i), j, float(overlap[j])))
    return pairs


def _instance_mask(coefficients: np.ndarray, protos: np.ndarray, box: np.ndarray, scale: tuple) -> np.ndarray:
    """A YOLO-seg instance mask on the prototypes' grid: ``sigmoid(c · P) > 0.5`` inside the box."""
    m, h, w = protos.shape
    mask = (coefficients @ protos.reshape(m, -1)).reshape(h, w) > 0.0
    x1, y1, x2, y2 = box[0] * scale[1], box[1] * scale[0], box[2] * scale[1], box[3] * scale[0]
    cols, rows = np.arange(w) + 0.5, np.arange(h) + 0.5
    inside = ((rows >= y1) & (rows < y2))[:, None] & ((cols >= x1) & (cols < x2))[None, :]
    return mask & inside


class Detection:
    """F1 of the decoded detections (a YOLO-seg head: and the mask IoU of the matched ones); the
    other outputs of a multi-output head are judged by their head's first (``OutputSpec.head``)."""

    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.tp = self.n_ref = self.n_cand = 0
        self.ious: list[float] = []
        self.mask_ious: list[float] = []

    def update(
        self, ref: np.ndarray, cand: np.ndarray, feed: Mapping, outputs: tuple[Mapping, Mapping] | None = None
    ) -> None:
        spec = self.spec
        if not spec.leads:
            return
        if spec.head is not None and outputs is None:
            raise ValueError(f"output '{spec.name}' heads a multi-output head: its update needs every output")
        image = image_size(feed)
        if spec.layout == DFL_LAYOUT:
            head = spec.head or ()
            pairs = [(head[k], head[k + 1]) for k in range(0, len(head), 2)]
            decoded = [decode_dfl([(values[s], values[b]) for s, b in pairs], image) for values in outputs]
        else:
            decoded = [decode_detections(ref, spec), decode_detections(cand, spec)]
        protos = (outputs[0][spec.head[1]], outputs[1][spec.head[1]]) if spec.masks and spec.head else None
        for k, (r, c) in enumerate(zip(*decoded, strict=True)):
            pairs = match_pairs(r, c)
            self.tp += len(pairs)
            self.n_ref += len(r.boxes)
            self.n_cand += len(c.boxes)
            self.ious += [iou for _, _, iou in pairs]
            if protos is not None:
                self._masks(r, c, pairs, protos[0][k], protos[1][k], image)

    def _masks(self, r: Found, c: Found, pairs: list, ref_protos: np.ndarray, cand_protos: np.ndarray,
               image: tuple[int, int] | None) -> None:  # fmt: skip
        h, w = ref_protos.shape[1:]
        height, width = image or (4 * h, 4 * w)
        scale = (h / height, w / width)
        ref_p, cand_p = ref_protos.astype(np.float64), cand_protos.astype(np.float64)
        for i, j, _ in pairs:
            a = _instance_mask(r.coefficients[j], ref_p, r.boxes[j], scale)
            b = _instance_mask(c.coefficients[i], cand_p, c.boxes[i], scale)
            union = int(np.sum(a | b))
            self.mask_ious.append(float(np.sum(a & b)) / union if union else 1.0)

    def figures(self) -> list[Figure]:
        if not self.spec.leads:
            return []
        total = self.n_ref + self.n_cand
        f1 = 2 * self.tp / total if total else 1.0
        details = {
            "reference_detections": self.n_ref,
            "candidate_detections": self.n_cand,
            "matched": self.tp,
            "matched_iou": float(np.mean(self.ious)) if self.ious else None,
            "layout": self.spec.layout,
        }
        rows = [("detection F1", f1, details)]
        if self.spec.masks:
            masks = np.asarray(self.mask_ious) if self.mask_ious else np.ones(1)
            rows.append(("mask IoU (mean per detection)", float(masks.mean()),
                         {"detections": len(self.mask_ious), "worst": float(masks.min())}))  # fmt: skip
        return rows


# ---- classes, sequences ---------------------------------------------------------------------


class Classes:
    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.agree = self.top5 = self.rows = 0

    def update(self, ref: np.ndarray, cand: np.ndarray, feed: Mapping) -> None:
        axis = self.spec.axis if self.spec.axis is not None else ref.ndim - 1
        r = np.moveaxis(ref, axis, -1).reshape(-1, ref.shape[axis])
        c = np.moveaxis(cand, axis, -1).reshape(-1, ref.shape[axis])
        best = np.argmax(r, axis=1)
        self.agree += int(np.sum(best == np.argmax(c, axis=1)))
        if r.shape[1] > 5:
            top = np.argpartition(-c, 5, axis=1)[:, :5]
            self.top5 += int(np.sum(np.any(top == best[:, None], axis=1)))
        self.rows += r.shape[0]

    def figures(self) -> list[Figure]:
        top1 = self.agree / self.rows if self.rows else 1.0
        details = {
            "rows": self.rows,
            "top5_agreement": self.top5 / self.rows if self.rows and self.top5 else None,
        }
        return [("top-1 agreement", top1, details)]


def ctc_greedy(steps: np.ndarray) -> tuple[int, ...]:
    """Argmax per step, repeats merged, blank (0) dropped."""
    best = np.argmax(steps, axis=-1)
    merged = best[np.concatenate([[True], best[1:] != best[:-1]])] if best.size else best
    return tuple(int(x) for x in merged if x != 0)


class Sequence:
    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.same = self.samples = self.step_agree = self.steps = 0

    def update(self, ref: np.ndarray, cand: np.ndarray, feed: Mapping) -> None:
        if self.spec.layout == "time-major" and ref.ndim == 3:  # [T, N, C]: one sequence per column
            ref, cand = ref.transpose(1, 0, 2), cand.transpose(1, 0, 2)
        for r, c in zip(ref, cand, strict=True):
            self.same += ctc_greedy(r) == ctc_greedy(c)
            self.samples += 1
            self.step_agree += int(np.sum(np.argmax(r, -1) == np.argmax(c, -1)))
            self.steps += int(np.prod(r.shape[:-1]))

    def figures(self) -> list[Figure]:
        strings = self.same / self.samples if self.samples else 1.0
        steps = self.step_agree / self.steps if self.steps else 1.0
        return [
            ("string agreement", strings, {"samples": self.samples}),
            ("top-1 agreement (per step)", steps, {}),
        ]


# ---- embeddings -----------------------------------------------------------------------------


def _vectors(values: np.ndarray, spec: OutputSpec, feed: Mapping) -> np.ndarray:
    x = values.astype(np.float64, copy=False)
    if spec.layout == "pooled" and x.ndim == 3:
        mask = feed.get(spec.mask_input) if spec.mask_input else None
        if mask is not None and np.shape(mask)[:2] == x.shape[:2]:
            weights = np.asarray(mask, dtype=np.float64)[..., None]
            x = (x * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        else:
            x = x.mean(1)
    x = x.reshape(x.shape[0], -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Embedding:
    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.cosines: list[float] = []
        self.refs: list[np.ndarray] = []
        self.cands: list[np.ndarray] = []

    def update(self, ref: np.ndarray, cand: np.ndarray, feed: Mapping) -> None:
        r, c = _vectors(ref, self.spec, feed), _vectors(cand, self.spec, feed)
        self.cosines += [float(v) for v in np.sum(r * c, axis=1)]
        if sum(len(x) for x in self.refs) < MAX_VECTORS:
            self.refs.append(r.astype(np.float32))
            self.cands.append(c.astype(np.float32))

    def _neighbours(self) -> float | None:
        if sum(len(x) for x in self.refs) < 3:
            return None
        r, c = np.concatenate(self.refs), np.concatenate(self.cands)
        sr, sc = r @ r.T, c @ c.T
        np.fill_diagonal(sr, -np.inf)
        np.fill_diagonal(sc, -np.inf)
        return float(np.mean(np.argmax(sr, 1) == np.argmax(sc, 1)))

    def figures(self) -> list[Figure]:
        cos = np.asarray(self.cosines) if self.cosines else np.ones(1)
        details = {
            "samples": len(self.cosines),
            "worst_sample": int(np.argmin(cos)),
            "neighbour_agreement": self._neighbours(),
            "pooled": self.spec.layout == "pooled",
        }
        return [("cosine (mean per sample)", float(cos.mean()), details),
                ("cosine (worst sample)", float(cos.min()), {"sample": int(np.argmin(cos))})]  # fmt: skip


# ---- maps, scalars --------------------------------------------------------------------------


class Map:
    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.ious: list[float] = []
        self.counted: list[bool] = []

    def _sample_iou(self, r: np.ndarray, c: np.ndarray) -> tuple[float, int]:
        if self.spec.axis is not None:  # label map: mean IoU over the labels present
            lr, lc = np.argmax(r, axis=self.spec.axis - 1), np.argmax(c, axis=self.spec.axis - 1)
            ious, union_total = [], 0
            for label in np.union1d(np.unique(lr), np.unique(lc)):
                a, b = lr == label, lc == label
                union = int(np.count_nonzero(a | b))
                union_total += union
                ious.append(np.count_nonzero(a & b) / union if union else 1.0)
            return float(np.mean(ious)) if ious else 1.0, union_total
        a, b = r > 0.5, c > 0.5
        union = int(np.count_nonzero(a | b))
        return (np.count_nonzero(a & b) / union if union else 1.0), union

    def update(self, ref: np.ndarray, cand: np.ndarray, feed: Mapping) -> None:
        for r, c in zip(ref, cand, strict=True):
            iou, union = self._sample_iou(r, c)
            self.ious.append(float(iou))
            self.counted.append(union >= MIN_UNION)

    def figures(self) -> list[Figure]:
        ious = np.asarray(self.ious) if self.ious else np.ones(1)
        counted = np.asarray(self.counted) if self.counted else np.ones(1, dtype=bool)
        worst_pool = ious[counted] if counted.any() else ious
        worst = int(np.flatnonzero(counted)[np.argmin(worst_pool)]) if counted.any() else int(np.argmin(ious))
        details = {"samples": len(self.ious), "worst_sample": worst}
        return [("mask IoU (mean per sample)", float(ious.mean()), details),
                ("mask IoU (worst sample)", float(worst_pool.min()), {"sample": worst})]  # fmt: skip


class Scalar:
    """One value per sample. Read over all samples: probabilities (all in [0, 1]) are decisions at
    0.5, logits (both signs) decisions at 0; a score of one sign outside [0, 1] (a MOS in 1-5, a
    regression) has no decision: its figure is the closeness ``1 - mean|c - r| / mean|r|`` (sign
    agreement would pass any drift)."""

    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.agree = {0.5: 0, 0.0: 0}
        self.count = 0
        self.max_abs = 0.0
        self.low, self.high = math.inf, -math.inf
        self.abs_diff = self.abs_ref = 0.0

    def update(self, ref: np.ndarray, cand: np.ndarray, feed: Mapping) -> None:
        r, c = ref.astype(np.float64).reshape(-1), cand.astype(np.float64).reshape(-1)
        if not r.size:
            return
        for threshold in self.agree:
            self.agree[threshold] += int(np.sum((r > threshold) == (c > threshold)))
        self.count += r.size
        self.max_abs = max(self.max_abs, float(np.max(np.abs(r - c))))
        self.low, self.high = min(self.low, float(r.min())), max(self.high, float(r.max()))
        self.abs_diff += float(np.sum(np.abs(r - c)))
        self.abs_ref += float(np.sum(np.abs(r)))

    def figures(self) -> list[Figure]:
        details = {"values": self.count, "max_abs_diff": self.max_abs}
        if not self.count:
            return [("decision agreement", 1.0, details)]
        if self.low >= 0.0 and self.high <= 1.0:
            return [("decision agreement", self.agree[0.5] / self.count, {**details, "threshold": 0.5})]
        if self.low < 0.0 < self.high:
            return [("decision agreement", self.agree[0.0] / self.count, {**details, "threshold": 0.0})]
        closeness = 1.0 - self.abs_diff / max(self.abs_ref, 1e-12)
        return [("score closeness", closeness, {**details, "range": [self.low, self.high]})]


class Generic:
    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec

    def update(self, ref: np.ndarray, cand: np.ndarray, feed: Mapping) -> None:
        pass

    def figures(self) -> list[Figure]:
        return []


ACCUMULATORS = {
    "detection": Detection,
    "classes": Classes,
    "sequence": Sequence,
    "embedding": Embedding,
    "map": Map,
    "scalar": Scalar,
    "generic": Generic,
}


class OutputMetrics:
    """Every figure of one output: its kind's, and the channel-group cosine of a float output."""

    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.task = ACCUMULATORS[spec.kind](spec)
        self.channels = ChannelGroups(spec)
        self.float = True

    def update(
        self, ref: np.ndarray, cand: np.ndarray, feed: Mapping, outputs: tuple[Mapping, Mapping] | None = None
    ) -> None:
        """``outputs``: every output of the reference and the candidate by name (a multi-output head
        is judged from all of its outputs)."""
        ref, cand = np.asarray(ref), np.asarray(cand)
        if ref.shape != cand.shape:
            from modelcrunch.errors import ModelcrunchError

            raise ModelcrunchError(
                f"output '{self.spec.name}': candidate shape {list(cand.shape)} differs from reference "
                f"{list(ref.shape)}"
            )
        if ref.dtype.kind != "f":
            self.float = False
            same = bool(np.array_equal(ref, cand))
            self.task = _Exact(self.spec, getattr(self.task, "same", True) and same)
            return
        if not (np.isfinite(cand).all() and np.isfinite(ref).all()):
            self.task = _Exact(self.spec, False, "NaN/inf in the candidate's output")
            self.float = False
            return
        if self.spec.head is not None:  # only detection heads span outputs (semantics._heads)
            self.task.update(ref, cand, feed, outputs)
        else:
            self.task.update(ref, cand, feed)
        self.channels.update(ref, cand)

    def figures(self) -> list[Figure]:
        rows = self.task.figures()
        return rows + [self.channels.figure()] if self.float else rows


class _Exact:
    """Integer outputs must be equal; a NaN/inf anywhere fails the output."""

    def __init__(self, spec: OutputSpec, same: bool, why: str = "integer output") -> None:
        self.spec, self.same, self.why = spec, same, why

    def update(self, ref: np.ndarray, cand: np.ndarray, feed: Mapping) -> None:
        pass

    def figures(self) -> list[Figure]:
        return [("identical", 1.0 if self.same else 0.0, {"why": self.why})]
