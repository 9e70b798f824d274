"""Task metrics for real models whose test data names a task (``scripts/make_task_data.py``).

``<stem>_test.json`` beside ``<stem>_test.npz`` says which task; each compares a candidate's
decoded outputs with the reference model's (agreement, the issue's fidelity target) and both with
the ground truth where there is one. Every sample is run alone (batch 1), as rapidocr and magika
run their models in deployment (dynamic int8 scales activations per batch).

* ``ctc_text`` (PP-OCRv4 rec; target: string agreement >= 95 %): greedy CTC decoding as
  rapidocr's ``CTCLabelDecode``: argmax per time step, repeats merged, blank (index 0) dropped;
  the dictionary is the model's ``character`` metadata with ``blank`` first and a space last.
  Agreement: share of lines whose two strings are equal once leading and trailing spaces are
  stripped (spaces between words count; the share ignoring all spaces is shown too). Truth: share
  equal to the rendered string with spaces removed (PP-OCR adds spaces at a crop's margins and
  drops some between Latin words, the original model included).
* ``db_boxes`` (PP-OCRv4 det; target: box F1 >= 95 % at IoU >= 0.9): rapidocr's
  ``DBPostProcess`` for axis-aligned text, numpy only: probability map > 0.3, 2x2 dilation,
  8-connected components; a component's bounding box ``[x0, y0, x1, y1]`` (pixel centres) is kept
  where its short side is >= 3 and the mean probability inside it >= 0.5 (``box_thresh``), then
  unclipped as pyclipper offsets a rectangle (``d = area * 1.6 / perimeter`` on every side),
  rounded and clipped to the map. Agreement: box F1 ``= 2 * matched / (boxes_ref + boxes_cand)``
  over all pages, where ``matched`` counts one-to-one pairs with IoU >= 0.9 (greedy, highest IoU
  first); also the share of pages whose box sets match completely. Truth: recall of the rendered
  lines: share of ink boxes >= 90 % covered by a box of their own (one-to-one, greedy), since
  unclipped detections are much larger than tight ink boxes of small text.
* ``top1`` (direction classifier, magika; target: top-1 agreement >= 99 %): share of samples whose
  argmax agrees. Truth: accuracy against the ``label`` array.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from modelcrunch.data import load_dataset
from modelcrunch.runtime.session import make_session, run_checked

#: Agreement each task must reach (issue 4). The issue gives no share for detection ("sets matching
#: at IoU >= 0.9"): read as 95 % of the boxes, the bar OCR strings have (and about what a
#: 1-gray-level change of the input page does to the fp32 model: 98.8 %; 2 levels: 95.4 %).
TARGETS = {"ctc_text": 0.95, "db_boxes": 0.95, "top1": 0.99}
DB_THRESH, DB_BOX_THRESH, DB_UNCLIP, DB_MIN_SIZE = 0.3, 0.5, 1.6, 3
MATCH_IOU, TRUTH_COVER = 0.9, 0.9


@dataclass(frozen=True)
class TaskScore:
    """Agreement of a candidate with the reference, and both against the ground truth."""

    task: str
    metric: str
    agreement: float
    truth_reference: float | None = None
    truth_candidate: float | None = None
    extra: str = ""

    @property
    def passed(self) -> bool | None:
        target = TARGETS.get(self.task)
        return None if target is None else self.agreement >= target

    def summary(self) -> str:
        mark = {True: " ✓", False: " ✗", None: ""}[self.passed]
        text = f"{self.metric} {self.agreement:.1%}{mark}"
        if self.extra:
            text += f", {self.extra}"
        if self.truth_reference is not None and self.truth_candidate is not None:
            text += f"; truth {self.truth_reference:.1%}→{self.truth_candidate:.1%}"
        return text


def first_outputs(model: Path, samples: Sequence[dict[str, np.ndarray]], threads: int) -> list[np.ndarray]:
    """The first output of ``model`` for every sample, run one at a time."""
    session = make_session(model, threads=threads)
    return [run_checked(session, sample, name=model.name)[0] for sample in samples]


class Task:
    """One model's test data and ground truth; ``score`` compares two models' outputs on it."""

    def __init__(self, model: Path, test: Path, truth: dict) -> None:
        self.kind = truth["task"]
        self.truth = truth
        names = [i.name for i in make_session(model).get_inputs()]
        dataset = load_dataset(test, input_names=names)
        self.samples = dataset.samples
        self.labels = dataset.labels.get("label")
        if self.kind == "ctc_text":
            meta = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
            self.characters = ["", *meta["character"].splitlines(), " "]

    @classmethod
    def load(cls, model: Path, test: Path | None) -> Task | None:
        """The task of ``test`` (from ``<stem>_test.json`` beside it), or None when it names none."""
        sidecar = None if test is None else test.with_suffix(".json")
        if sidecar is None or not sidecar.is_file():
            return None
        truth = json.loads(sidecar.read_text())
        return cls(model, test, truth) if truth.get("task") in ("ctc_text", "db_boxes", "top1") else None

    def score(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> TaskScore:
        if self.kind == "ctc_text":
            return self._strings(reference, candidate)
        if self.kind == "db_boxes":
            return self._boxes(reference, candidate)
        return self._top1(reference, candidate)

    def _strings(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> TaskScore:
        ref = [ctc_decode(o, self.characters)[0].strip() for o in reference]
        cand = [ctc_decode(o, self.characters)[0].strip() for o in candidate]
        truth = [t.replace(" ", "") for t in self.truth["texts"]]

        def same(a: list[str], b: list[str], spaces: bool = True) -> float:
            if not spaces:
                a, b = [t.replace(" ", "") for t in a], [t.replace(" ", "") for t in b]
            return float(np.mean([x == y for x, y in zip(a, b, strict=True)]))

        return TaskScore(
            self.kind,
            "strings",
            same(ref, cand),
            same(ref, truth, spaces=False),
            same(cand, truth, spaces=False),
            extra=f"{same(ref, cand, spaces=False):.1%} ignoring spaces",
        )

    def _boxes(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> TaskScore:
        ref = [db_boxes(o[0, 0]) for o in reference]
        cand = [db_boxes(o[0, 0]) for o in candidate]
        matched = [len(match_boxes(a, b, MATCH_IOU)) for a, b in zip(ref, cand, strict=True)]
        total = sum(len(a) + len(b) for a, b in zip(ref, cand, strict=True))
        f1 = 2 * sum(matched) / total if total else 1.0
        pages = np.mean([m == len(a) == len(b) for m, a, b in zip(matched, ref, cand, strict=True)])
        truth = [np.asarray(t, dtype=np.float64).reshape(-1, 4) for t in self.truth["boxes"]]

        def recall(found: list[np.ndarray]) -> float:
            hits = sum(
                len(match_boxes(t, f, TRUTH_COVER, cover=True)) for t, f in zip(truth, found, strict=True)
            )
            return hits / max(1, sum(len(t) for t in truth))

        return TaskScore(self.kind, "box F1", f1, recall(ref), recall(cand), extra=f"pages {pages:.0%}")

    def _top1(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> TaskScore:
        ref = np.array([int(np.argmax(o.reshape(-1))) for o in reference])
        cand = np.array([int(np.argmax(o.reshape(-1))) for o in candidate])
        if self.labels is None:
            return TaskScore(self.kind, "top-1", float(np.mean(ref == cand)))
        labels = np.asarray(self.labels).reshape(-1)
        return TaskScore(
            self.kind,
            "top-1",
            float(np.mean(ref == cand)),
            float(np.mean(ref == labels)),
            float(np.mean(cand == labels)),
        )


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


def ctc_decode(probs: np.ndarray, characters: Sequence[str]) -> list[str]:
    """Greedy CTC: ``probs`` ``[batch, time, classes]`` -> one string per row (blank = index 0)."""
    texts = []
    for row in np.asarray(probs).argmax(axis=-1):
        keep = np.ones(row.shape, dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != 0
        texts.append("".join(characters[i] for i in row[keep]))
    return texts


def components(mask: np.ndarray) -> np.ndarray:
    """Bounding boxes ``[x0, y0, x1, y1]`` (inclusive) of the 8-connected components of ``mask``.

    Row runs (found with ``np.diff``) are joined across neighbouring rows where they overlap or
    touch diagonally, with a union-find over runs: cheap for text maps, which have few runs.
    """
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask.astype(bool)
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)  # run r covers columns starts[r] .. ends[r] - 1
    _, ends = np.nonzero(step == -1)
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows, np.arange(height + 1))
    for row in range(height - 1):
        i, i_end, j, j_end = first[row], first[row + 1], first[row + 1], first[row + 2]
        while i < i_end and j < j_end:
            if starts[j] <= ends[i] and starts[i] <= ends[j]:  # overlapping or diagonal neighbours
                parent[find(j)] = find(i)
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    boxes: dict[int, list[int]] = {}
    for r in range(len(rows)):
        box = boxes.setdefault(find(r), [starts[r], rows[r], ends[r] - 1, rows[r]])
        box[0], box[2] = min(box[0], starts[r]), max(box[2], ends[r] - 1)
        box[1], box[3] = min(box[1], rows[r]), max(box[3], rows[r])
    return np.array(list(boxes.values()), dtype=np.int64).reshape(-1, 4)


def db_boxes(prob: np.ndarray) -> np.ndarray:
    """Text boxes ``[x0, y0, x1, y1]`` from a DB probability map ``[H, W]`` (see module doc)."""
    mask = prob > DB_THRESH
    dilated = mask.copy()  # cv2.dilate with a 2x2 kernel: a pixel is set if it or an up/left one is
    dilated[1:, :] |= mask[:-1, :]
    dilated[:, 1:] |= mask[:, :-1]
    dilated[1:, 1:] |= mask[:-1, :-1]
    height, width = prob.shape
    kept = []
    for x0, y0, x1, y1 in components(dilated):
        w, h = x1 - x0, y1 - y0
        if min(w, h) < DB_MIN_SIZE or prob[y0 : y1 + 1, x0 : x1 + 1].mean() < DB_BOX_THRESH:
            continue
        d = w * h * DB_UNCLIP / (2 * (w + h))
        box = np.clip(np.round([x0 - d, y0 - d, x1 + d, y1 + d]), 0, [width, height, width, height])
        if min(box[2] - box[0], box[3] - box[1]) > 3:  # rapidocr's filter_tag_det_res
            kept.append(box)
    return np.array(kept, dtype=np.float64).reshape(-1, 4)


def iou(a: np.ndarray, b: np.ndarray, *, cover: bool = False) -> np.ndarray:
    """IoU matrix of boxes ``a`` ``[n, 4]`` and ``b`` ``[m, 4]`` (``[x0, y0, x1, y1]``).

    ``cover``: intersection over the area of ``a``'s box instead (how much of ``a`` ``b`` covers).
    """
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)[:, None]
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)[None, :]
    return inter / np.maximum(area_a if cover else area_a + area_b - inter, 1e-9)


def match_boxes(
    a: np.ndarray, b: np.ndarray, threshold: float, *, cover: bool = False
) -> list[tuple[int, int]]:
    """One-to-one pairs ``(i, j)`` with IoU (or ``cover``) >= ``threshold``, greedily from the highest."""
    if len(a) == 0 or len(b) == 0:
        return []
    overlaps = iou(a, b, cover=cover)
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-overlaps, axis=None):
        i, j = divmod(int(flat), overlaps.shape[1])
        if overlaps[i, j] < threshold:
            break
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return pairs
