"""Repair after structured pruning: layer-wise least-squares refit of the consumer layers.

For every consumer layer ``L`` of a pruned group (Conv with group=1, Gemm, MatMul with a constant
matrix), in topological order, with ``X'`` its input in the *pruned* model (after the refits of the
layers before it) and ``Y`` its output in the *original* model on the same calibration samples
(restricted to the output channels ``L`` still has):

    [W'; b'] = argmin ||[X' 1] [W'; b'] - Y||^2 + lambda ||W'||^2,   lambda = ridge * mean(diag(X'^T X'))

Convs use im2col rows (one per output pixel, ``Cin*kh*kw`` columns). Only ``X'^T X'``, ``X'^T Y`` and
``Y^T Y`` are accumulated, batch by batch, so memory is bounded by one batch and one
``(Cin*k*k+1)^2`` matrix. The intercept becomes the layer's bias (one is added when the layer has
none; MatMul gets no intercept). The relative error before/after comes from the same statistics.

Limits: 2-D Conv only (1-D/3-D, ``auto_pad`` other than NOTSET and grouped consumers are left as
they are); Gemm with transA or alpha/beta != 1 is left as is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.channels import attr_value
from modelcrunch.analysis.groups import const_array, expand_indices
from modelcrunch.passes._ir import register_array
from modelcrunch.passes.im2col import im2col
from modelcrunch.passes.prune.activations import element_types, iter_activations
from modelcrunch.passes.prune.structured import GroupDecision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepairedLayer:
    name: str
    op_type: str
    rel_error_before: float
    rel_error_after: float

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "op_type": self.op_type,
            "rel_error_before": self.rel_error_before,
            "rel_error_after": self.rel_error_after,
        }


def _repairable(node: ir.Node) -> str | None:
    if const_array(node.inputs[1]) is None:
        return "weight not constant"
    if node.op_type == "Conv":
        w = node.inputs[1].const_value
        if (
            len(w.shape) != 4
            or attr_value(node, "group", 1) != 1
            or attr_value(node, "auto_pad", "NOTSET") != "NOTSET"
        ):
            return "only 2-D, group=1, explicit-pad Conv"
        return None
    if node.op_type == "Gemm":
        if (
            attr_value(node, "transA", 0)
            or attr_value(node, "alpha", 1.0) != 1.0
            or attr_value(node, "beta", 1.0) != 1.0
        ):
            return "Gemm with transA/alpha/beta"
        return None
    if node.op_type == "MatMul":
        return None
    return f"{node.op_type} not supported"


def _rows(node: ir.Node, x: np.ndarray, y: np.ndarray, keep_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if node.op_type == "Conv":
        w = node.inputs[1].const_value.shape
        cols = im2col(x.astype(np.float64), node, (w[2], w[3]))
        target = y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])
    else:
        cols = x.reshape(-1, x.shape[-1]).astype(np.float64)
        target = y.reshape(-1, y.shape[-1])
    return cols, target[:, keep_out].astype(np.float64)


#: The most bytes of float64 rows built at once: a 300x300 Conv's im2col over a 32-sample batch
#: would take gigabytes; it is built a few samples at a time instead.
CHUNK_BYTES = 256 * 2**20
#: Rows (output pixels) used per chunk at most: a least-squares fit of a few hundred unknowns needs
#: thousands of rows, not millions (a 300x300 map has 90000 per sample).
MAX_ROWS_PER_CHUNK = 16384
#: Repair's time budget over all layers (seconds), and the fewest calibration feeds it reads.
REPAIR_SECONDS = 30.0
MIN_REPAIR_SAMPLES = 8


def _samples_per_chunk(node: ir.Node, x: np.ndarray, y: np.ndarray) -> int:
    if x.ndim == 0 or len(x) == 0:
        return 1
    if node.op_type == "Conv":
        w = node.inputs[1].const_value.shape
        per_sample = (y[0].size // max(y.shape[1], 1)) * (x.shape[1] * w[2] * w[3] + 1 + y.shape[1]) * 8
    else:
        per_sample = (x[0].size + y[0].size) * 8 * 2
    return max(1, CHUNK_BYTES // max(per_sample, 1))


def _kept_outputs(node: ir.Node, decisions: Sequence[GroupDecision], n_out_original: int) -> np.ndarray:
    removed: list[np.ndarray] = []
    for d in decisions:
        if d.kept is None:
            continue
        pruned = np.setdiff1d(np.arange(d.group.size), d.kept)
        removed += [
            expand_indices(pruned, p.offset, p.block)
            for p in d.group.params
            if p.node == node.name and p.kind == "weight_out"
        ]
    return np.setdiff1d(np.arange(n_out_original), np.concatenate(removed) if removed else [])


def _write(graph: ir.Graph, node: ir.Node, coef: np.ndarray, intercept: bool) -> None:
    w_old = const_array(node.inputs[1])
    weights, bias = (coef[:-1], coef[-1]) if intercept else (coef, None)
    dtype = w_old.dtype
    if node.op_type == "Conv":
        new_w = weights.T.reshape(w_old.shape)
    elif node.op_type == "Gemm" and attr_value(node, "transB", 0):
        new_w = weights.T
    else:
        new_w = weights
    _replace(graph, node, 1, new_w.astype(dtype))
    if bias is None:
        return
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    if has_bias and const_array(node.inputs[2]).shape != bias.shape:
        bias = np.broadcast_to(bias, const_array(node.inputs[2]).shape) if node.op_type == "Gemm" else bias
    if has_bias:
        _replace(graph, node, 2, np.ascontiguousarray(bias).astype(dtype))
    else:
        value = register_array(graph, f"{node.name}_repair_bias", bias.astype(dtype))
        node.resize_inputs(3)
        node.replace_input_with(2, value)


def _replace(graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray) -> None:
    value = node.inputs[index]
    if value.const_value is not None and len(value.uses()) == 1 and not value.is_graph_input():
        value.const_value = ir.tensor(array, name=value.name)
        value.shape = ir.Shape(array.shape)
        return
    node.replace_input_with(index, register_array(graph, f"{value.name}_repaired_{node.name}", array))


def _spread(feeds: Sequence, count: int) -> list:
    """``count`` feeds evenly spread over ``feeds``."""
    return [feeds[int(k)] for k in np.linspace(0, len(feeds) - 1, count).round()]


def _cap(seconds_left: float, layers_left: int, fixed: float, per_sample: float, total: int) -> int:
    """Samples each of the layers left may read to finish within ``seconds_left``, at ``fixed``
    seconds per layer (its sessions) plus ``per_sample``."""
    if layers_left <= 0 or per_sample <= 0:
        return total
    allowance = seconds_left / layers_left - fixed
    return max(MIN_REPAIR_SAMPLES, min(total, int(allowance / per_sample)))


def _stacked(feed: dict[str, np.ndarray]) -> int:
    """How many samples ``feed`` stacks along axis 0 (1 for unstacked feeds: 0-d or fixed inputs)."""
    sizes = {a.shape[0] for a in feed.values() if a.ndim}
    return sizes.pop() if len(sizes) == 1 and all(a.ndim for a in feed.values()) else 1


def _fewer(feeds: list, want: int) -> list:
    """About ``want`` samples of ``feeds``: whole feeds evenly spread, each cut to its first samples
    where feeds are stacked."""
    count = max(1, min(len(feeds), want))
    chosen = _spread(feeds, count)
    per = max(1, want // count)
    return [{k: v[:per] for k, v in f.items()} if _stacked(f) > per else f for f in chosen]


def repair(
    original: ir.Model,
    pruned: ir.Model,
    decisions: Sequence[GroupDecision],
    calibration: Sequence[dict[str, np.ndarray]],
    *,
    ridge: float = 1e-3,
    on_progress: Callable[[str, int, int], None] | None = None,
    notes: list[str] | None = None,
    seconds: float | None = None,
) -> list[RepairedLayer]:
    """Refit every consumer layer of the pruned groups, in place on ``pruned``.

    Each layer reads the calibration feeds through both models (each run only as far as the layer:
    ``activations.expose``). Where every feed would take more than ``seconds`` (``REPAIR_SECONDS``)
    in all (big images, graph nets fed one at a time), each layer reads as many feeds, evenly spread
    (at least ``MIN_REPAIR_SAMPLES``), as the budget left allows at the cost per sample of the layer
    before it (of its own second feed, for the first), and ``notes`` says so."""
    names = {
        c for d in decisions if d.kept is not None and len(d.kept) < d.group.size for c in d.group.consumers
    }
    layers = [n for n in pruned.graph if n.name in names]
    original_out = {n.outputs[0].name: n for n in original.graph}
    reference = ir.to_proto(original)  # unchanged: serialized once, its sessions cut from it
    types = element_types(reference)
    done: list[RepairedLayer] = []
    everything = list(calibration)
    total = sum(_stacked(f) for f in everything)
    feeds, read = everything, []
    seconds = REPAIR_SECONDS if seconds is None else seconds
    begun = time.perf_counter()
    for step, node in enumerate(layers):
        if on_progress:
            on_progress("repairing layers", step, len(layers))
        why = _repairable(node)
        source = original_out.get(node.outputs[0].name)
        if why is not None or source is None:
            logger.info("not repairing %s: %s", node.name, why or "output not found in the original")
            continue
        n_out_original = _out_features(source)
        keep_out = _kept_outputs(node, decisions, n_out_original)
        intercept = node.op_type != "MatMul"
        x_name, y_name = node.inputs[0].name, node.outputs[0].name
        for _ in range(2):  # again when the first feeds show the layer cannot read them all
            started = time.perf_counter()
            xtx = xty = None
            yty = 0.0
            capped, fixed = False, 0.0
            tick = time.perf_counter()
            for index, (xs, ys) in enumerate(
                zip(
                    iter_activations(pruned, [x_name], feeds, types),
                    iter_activations(reference, [y_name], feeds, types),
                    strict=True,
                )
            ):
                if index == 0:  # the sessions and the first feed
                    fixed = time.perf_counter() - started
                if index == 1 and feeds is everything:
                    per = (time.perf_counter() - tick) / _stacked(feeds[1])
                    cap = _cap(seconds - (tick - begun), len(layers) - step, fixed, per, total)
                    if cap < total:
                        feeds, capped = _fewer(everything, cap), True
                        break  # and read this layer again, from the chosen samples
                tick = time.perf_counter()
                x, y = xs[x_name], ys[y_name]
                chunk = _samples_per_chunk(node, x, y)
                for lo in range(0, max(len(x), 1), chunk):  # im2col rows of a few samples at a time
                    cols, target = _rows(node, x[lo : lo + chunk], y[lo : lo + chunk], keep_out)
                    stride = -(-len(cols) // MAX_ROWS_PER_CHUNK)  # evenly spread rows: plenty for the fit
                    cols, target = cols[::stride], target[::stride]
                    if intercept:
                        cols = np.concatenate([cols, np.ones((cols.shape[0], 1))], axis=1)
                    xtx = cols.T @ cols if xtx is None else xtx + cols.T @ cols
                    xty = cols.T @ target if xty is None else xty + cols.T @ target
                    yty += float((target * target).sum())
            if not capped:
                break
        read.append(sum(_stacked(f) for f in feeds))
        # the next layer reads what the budget left allows at this layer's cost per sample (deeper
        # layers cost more: the sessions run the graph up to them only, ``activations.expose``)
        now = time.perf_counter()
        first = _stacked(feeds[0]) if len(feeds) > 1 else 0
        per = (now - started - (fixed if first else 0)) / max(read[-1] - first, 1)
        cap = _cap(seconds - (now - begun), len(layers) - step - 1, fixed if first else 0.0, per, total)
        feeds = everything if cap >= total else _fewer(everything, cap)
        if xtx is None:
            continue
        current = _current_coef(node, intercept)
        lam = ridge * float(np.mean(np.diag(xtx))) + 1e-12
        coef = np.linalg.solve(xtx + lam * np.eye(xtx.shape[0]), xty)
        before, after = _rel_error(xtx, xty, yty, current), _rel_error(xtx, xty, yty, coef)
        if after < before:
            _write(pruned.graph, node, coef, intercept)
        done.append(RepairedLayer(node.name, node.op_type, before, min(after, before)))
    if on_progress:
        on_progress("repairing layers", len(layers), len(layers))
    if read and min(read) < total and notes is not None:
        fewest, most = min(read), max(read)
        span = f"{fewest}" if fewest == most else f"{fewest}-{most}"
        notes.append(
            f"repair read about {span} of {total} calibration samples per layer, evenly spread "
            f"({len(layers)} layers in a {seconds:.0f} s budget)"
        )
    return done


def _out_features(node: ir.Node) -> int:
    w = const_array(node.inputs[1])
    if node.op_type == "Conv":
        return w.shape[0]
    if node.op_type == "Gemm" and attr_value(node, "transB", 0):
        return w.shape[0]
    return w.shape[1]


def _current_coef(node: ir.Node, intercept: bool) -> np.ndarray:
    w = const_array(node.inputs[1]).astype(np.float64)
    if node.op_type == "Conv":
        mat = w.reshape(w.shape[0], -1).T
    elif node.op_type == "Gemm" and attr_value(node, "transB", 0):
        mat = w.T
    else:
        mat = w
    if not intercept:
        return mat
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    bias = (
        np.broadcast_to(const_array(node.inputs[2]).reshape(-1), (mat.shape[1],))
        if has_bias
        else np.zeros(mat.shape[1])
    )
    return np.concatenate([mat, bias[None, :].astype(np.float64)], axis=0)


def _rel_error(xtx: np.ndarray, xty: np.ndarray, yty: float, coef: np.ndarray) -> float:
    err = float(np.sum(coef * (xtx @ coef)) - 2 * np.sum(coef * xty) + yty)
    return float(np.sqrt(max(err, 0.0) / yty)) if yty > 0 else 0.0
