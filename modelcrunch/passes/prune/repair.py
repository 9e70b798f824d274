"""Repair after structured pruning: sequential least-squares refit of the consumer layers.

For every consumer layer ``L`` of a pruned group (Conv with group=1, Gemm, MatMul with a constant
matrix), in topological order, with ``X'`` its input in the *pruned* model (after the refits of the
layers before it) and ``Y`` its output in the *original* model on the same calibration samples
(restricted to the output channels ``L`` still has):

    [W'; b'] = argmin ||[X' 1] [W'; b'] - Y||^2 + lambda ||W'||^2,   lambda = ridge * mean(diag(X'^T X'))

With ``block`` (``--repair-target block``), a layer that feeds a residual ``Add`` is fit to that
Add's output in the original less the pruned model's skip input instead (``_Target``).

Convs use im2col rows (one per output pixel, ``Cin*kh*kw`` columns; at most ``LAYER_ROWS`` of them
per layer, evenly spread). Only ``X'^T X'``, ``X'^T Y`` and ``Y^T Y`` are accumulated, batch by
batch, so memory is bounded by one batch and one ``(Cin*k*k+1)^2`` matrix per layer of a pass
(``PASS_BYTES`` bounds both). Each layer gets its own pass over the data while the time budget
allows; a tight budget refits a few layers per pass, and those do not see each other's refits
(``repair``). The intercept becomes the layer's bias (one is added when the layer has none; MatMul
gets no intercept). The relative error before/after comes from the same statistics.

Limits: 2-D Conv only (1-D/3-D, ``auto_pad`` other than NOTSET and grouped consumers are left as
they are); Gemm with transA or alpha/beta != 1 is left as is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from modelcrunch.analysis.channels import attr_value
from modelcrunch.analysis.groups import const_array, expand_indices
from modelcrunch.passes._ir import register_array
from modelcrunch.passes.im2col import im2col
from modelcrunch.passes.prune.activations import element_types, expose, iter_activations
from modelcrunch.passes.prune.structured import GroupDecision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepairedLayer:
    name: str
    op_type: str
    rel_error_before: float
    rel_error_after: float
    block: str | None = None  # fit to the output of this residual Add (block reconstruction)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "op_type": self.op_type,
            "rel_error_before": self.rel_error_before,
            "rel_error_after": self.rel_error_after,
            "block": self.block,
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


def _rows(node: ir.Node, x: np.ndarray, y_shape: tuple, most: int) -> tuple[np.ndarray, Callable]:
    """Least-squares rows (float64) of one feed's input ``x``: at most ``most``, evenly spread over
    the output pixels (all samples of the feed), picked before any window is copied; and the picker
    of the same rows of an array shaped like the layer's output (``y_shape``)."""
    if node.op_type == "Conv":
        w = node.inputs[1].const_value.shape
        n, _, ho, wo = y_shape
        at = np.arange(0, n * ho * wo, -(-(n * ho * wo) // most))
        cols = im2col(x, node, (w[2], w[3]), at=at)
        b, i, j = np.unravel_index(at, (n, ho, wo))
        return cols.astype(np.float64), lambda a: a[b, :, i, j]  # (rows, C)
    cols = x.reshape(-1, x.shape[-1])
    stride = -(-len(cols) // most)
    return cols[::stride].astype(np.float64), lambda a: a.reshape(-1, a.shape[-1])[::stride]


#: Rows (output pixels) a layer's fit reads at most, over all its feeds: a least-squares fit of a
#: few hundred unknowns needs thousands of rows, not millions (a 300x300 map has 90000 per sample),
#: and its cost grows with rows x unknowns^2.
LAYER_ROWS = 65536
#: Repair's time budget over all layers (seconds), and the fewest calibration samples it reads.
REPAIR_SECONDS = 30.0
MIN_REPAIR_SAMPLES = 8
#: Passes of one layer each before the cost of the others is judged from them (the first layer alone
#: is a poor guide: the widest maps, the shallowest run).
FIRST_PASSES = 3
#: The most bytes a repair pass holds: its layers' statistics, and their inputs and outputs per feed.
PASS_BYTES = 512 * 2**20


def _kept_channels(
    node: ir.Node, decisions: Sequence[GroupDecision], n_original: int, kind: str = "weight_out"
) -> np.ndarray:
    """The original indices of ``node``'s output channels it keeps (``kind="weight_in"``: of its
    input channels)."""
    removed: list[np.ndarray] = []
    for d in decisions:
        if d.kept is None:
            continue
        pruned = np.setdiff1d(np.arange(d.group.size), d.kept)
        removed += [
            expand_indices(pruned, p.offset, p.block)
            for p in d.group.params
            if p.node == node.name and p.kind == kind
        ]
    return np.setdiff1d(np.arange(n_original), np.concatenate(removed) if removed else [])


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


@dataclass
class _Target:
    """A layer to refit, what it is fit to, and the least-squares statistics it accumulates.

    ``y``: the original model's value to match, the layer's own output, or with ``skip`` the output
    of the residual ``Add`` it feeds (block reconstruction): the layer is then fit to that output
    less the pruned model's ``skip`` input and the constant ``offset`` of bias ``Add``s between."""

    node: ir.Node
    keep_out: np.ndarray
    intercept: bool
    y: str
    skip: str | None = None
    offset: np.ndarray | float = 0.0
    block: str | None = None  # the residual Add's name
    xtx: np.ndarray | None = None
    xty: np.ndarray | None = None
    yty: float = 0.0
    mismatch: bool = False
    keep_in: np.ndarray | None = None  # the original indices of the input channels it keeps (if known)
    upstream: frozenset[str] = frozenset()  # the names of the targets its input depends on

    def original_input(self, x: np.ndarray) -> np.ndarray:
        """The original model's input of the layer, cut to the channels the pruned layer reads."""
        axis = 1 if self.node.op_type == "Conv" else x.ndim - 1
        return np.take(x, self.keep_in, axis=axis)

    def stat_bytes(self) -> int:
        """Bytes of the statistics (float64 ``X^T X`` and ``X^T Y``)."""
        w = self.node.inputs[1].const_value.shape
        cols = (w[1] * w[2] * w[3] if self.node.op_type == "Conv" else _in_features(self.node)) + 1
        return 8 * cols * (cols + len(self.keep_out))

    def add(self, x: np.ndarray, y: np.ndarray, skip: np.ndarray | None, most: int) -> None:
        """Accumulate the statistics of one feed, from at most ``most`` of its rows."""
        kept = len(self.keep_out)
        expect = (*y.shape[:1], kept, *y.shape[2:]) if self.node.op_type == "Conv" else (*y.shape[:-1], kept)
        if skip is not None and skip.shape != expect:
            self.mismatch = True  # a broadcast skip input: not a residual block after all
        if self.mismatch:
            return
        cols, pick = _rows(self.node, x, y.shape, most)
        target = pick(y)[:, self.keep_out].astype(np.float64)
        if skip is not None:
            target -= pick(skip) + self.offset
        if self.intercept:
            cols = np.concatenate([cols, np.ones((cols.shape[0], 1))], axis=1)
        self.xtx = cols.T @ cols if self.xtx is None else self.xtx + cols.T @ cols
        self.xty = cols.T @ target if self.xty is None else self.xty + cols.T @ target
        self.yty += float((target * target).sum())

    def refit(self, graph: ir.Graph, ridge: float) -> RepairedLayer | None:
        if self.xtx is None:
            if self.mismatch:
                logger.info("not repairing %s: its residual input broadcasts", self.node.name)
            return None
        current = _current_coef(self.node, self.intercept)
        lam = ridge * float(np.mean(np.diag(self.xtx))) + 1e-12
        coef = np.linalg.solve(self.xtx + lam * np.eye(self.xtx.shape[0]), self.xty)
        before = _rel_error(self.xtx, self.xty, self.yty, current)
        after = _rel_error(self.xtx, self.xty, self.yty, coef)
        if after < before:
            _write(graph, self.node, coef, self.intercept)
        self.xtx = self.xty = None  # the statistics are done with: memory back
        return RepairedLayer(self.node.name, self.node.op_type, before, min(after, before), self.block)


def _residual(node: ir.Node, original_values: set[str]) -> tuple[str, str, np.ndarray | float, str] | None:
    """(the residual Add's output, its other input, the bias offset, its name) where ``node``'s
    output reaches an ``Add`` of a non-constant value through constant ``Add``s only (each the only
    use of what it adds to), and the original model has that Add's output; else None."""
    value, offset = node.outputs[0], 0.0
    while True:
        uses = value.uses()
        if len(uses) != 1 or value.is_graph_output():
            return None
        add = uses[0].node
        if add.op_type != "Add" or len(add.inputs) != 2:
            return None
        other = add.inputs[1 - uses[0].idx]
        if other is None or other is value:
            return None
        constant = const_array(other)
        if constant is None:
            out = add.outputs[0].name
            return (out, other.name, offset, add.name) if out in original_values else None
        if constant.size != 1 and constant.size != max(constant.shape, default=1):
            return None  # not a per-channel bias
        offset = offset + constant.reshape(-1).astype(np.float64)
        value = add.outputs[0]


def _targets(
    original: ir.Model, pruned: ir.Model, decisions: Sequence[GroupDecision], block: bool = False
) -> list[_Target]:
    """The consumer layers of the pruned groups that repair can refit, in topological order; with
    ``block``, those that feed a residual ``Add`` are fit to its output (``_residual``)."""
    names = {
        c for d in decisions if d.kept is not None and len(d.kept) < d.group.size for c in d.group.consumers
    }
    original_out = {n.outputs[0].name: n for n in original.graph}
    original_values = {v.name for n in original.graph for v in n.outputs}
    targets = []
    for node in (n for n in pruned.graph if n.name in names):
        why = _repairable(node)
        source = original_out.get(node.outputs[0].name)
        if why is not None or source is None:
            logger.info("not repairing %s: %s", node.name, why or "output not found in the original")
            continue
        keep_out = _kept_channels(node, decisions, _out_features(source))
        target = _Target(node, keep_out, node.op_type != "MatMul", node.outputs[0].name)
        keep_in = _kept_channels(node, decisions, _in_features(source), "weight_in")
        # the original's input maps onto the pruned layer's only where the kept channels are known
        target.keep_in = keep_in if len(keep_in) == _in_features(node) else None
        found = _residual(node, original_values) if block else None
        if found is not None:
            target.y, target.skip, target.offset, target.block = found
        targets.append(target)
    _link(pruned, targets)
    return targets


def _link(model: ir.Model, targets: list[_Target]) -> None:
    """Set each target's ``upstream``: the targets its input depends on (main graph)."""
    by_node = {id(t.node): t for t in targets}
    above: dict[str, frozenset[str]] = {}  # value name -> the targets it depends on
    for node in model.graph:  # topological order
        deps: set[str] = set()
        for value in node.inputs:
            if value is not None:
                deps |= above.get(value.name, frozenset())
        target = by_node.get(id(node))
        if target is not None:
            target.upstream = frozenset(deps)
            deps.add(node.name)
        frozen = frozenset(deps)
        for value in node.outputs:
            above[value.name] = frozen


def _pass_cost(
    reference: onnx.ModelProto, feed: dict[str, np.ndarray], types: dict[str, int]
) -> tuple[float, float]:
    """(seconds to build a session of the whole ``reference``, seconds per sample of one run): an
    upper bound on what one repair pass costs per model, whose sessions run only part of it."""
    started = time.perf_counter()
    session = expose(reference, [o.name for o in reference.graph.output], types)
    fixed = time.perf_counter() - started
    inputs = {i.name for i in session.get_inputs()}
    feed = {k: v for k, v in feed.items() if k in inputs}
    if _stacked(feed) > 1:  # one sample tells the cost: a 32-sample feed of a big model takes seconds
        feed = {k: v[:1] for k, v in feed.items()}
    session.run(None, feed)  # the first run warms up
    started = time.perf_counter()
    session.run(None, feed)
    return fixed, time.perf_counter() - started


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
    block: bool = False,
) -> list[RepairedLayer]:
    """Refit every consumer layer of the pruned groups, in place on ``pruned``; with ``block``, a
    layer that feeds a residual ``Add`` is fit to that Add's output (``_Target``).

    The layers are refit in passes, in topological order: a pass reads the calibration feeds through
    both models once (each run only as far as its deepest layer: ``activations.expose``), gives each
    of its layers its inputs in the pruned model (after the refits of the passes before) and its
    outputs in the original, and refits them. One layer per pass (fully sequential: each layer sees
    the error of every refit layer before it, which counts for more than samples) is the plan
    whenever it fits ``seconds`` (``REPAIR_SECONDS``). Where it does not (big images, deep networks,
    graph nets fed one at a time), the samples are cut first (evenly spread, at least
    ``MIN_REPAIR_SAMPLES``) to what one pass per layer affords at half a whole-model run each; then
    each pass takes as many layers as the time left requires, at the last pass's measured cost (the
    last one takes every layer left). A pass holds at most ``PASS_BYTES`` of statistics and
    activations. ``notes`` says when layers shared a pass or samples were left out.
    """
    targets = _targets(original, pruned, decisions, block)
    if not targets:
        return []
    reference = ir.to_proto(original)  # unchanged: serialized once, its sessions cut from it
    types = element_types(reference)
    everything = list(calibration)
    total = sum(_stacked(f) for f in everything)
    seconds = REPAIR_SECONDS if seconds is None else seconds
    begun = time.perf_counter()
    fixed, per_sample = _pass_cost(reference, everything[0], types)

    layers = len(targets)
    samples = total
    if layers * 2 * (fixed + per_sample * total / 2) > seconds:  # passes run half the graph on average
        samples = int((seconds / layers / 2 - fixed) / max(per_sample / 2, 1e-9))
        samples = max(MIN_REPAIR_SAMPLES, min(total, samples))
    feeds = everything if samples >= total else _fewer(everything, samples)
    samples = sum(_stacked(f) for f in feeds)
    most = -(-LAYER_ROWS // len(feeds))  # rows per feed
    done: list[RepairedLayer] = []
    passes, layer_bytes, start = 0, 0, 0
    run_cost = fit_cost = 0.0  # the last pass's runs, and its statistics per layer (s)
    while start < layers:
        if on_progress:
            on_progress("repairing layers", start, layers)
        left = layers - start
        # passes the time left affords at the last pass's cost, after every layer's statistics
        # (later passes run deeper, so the estimate is renewed after each)
        spare = seconds - (time.perf_counter() - begun) - left * fit_cost
        affordable = int(spare / run_cost) if passes >= FIRST_PASSES else left
        size = -(-left // max(1, min(left, affordable)))
        size = min(size, max(1, PASS_BYTES // layer_bytes) if layer_bytes else 1)  # 1 first: bytes unknown
        wave = targets[start : start + size]
        held = np.cumsum([t.stat_bytes() for t in wave])
        wave = wave[: max(1, int(np.searchsorted(held, PASS_BYTES, side="right")))]
        for index, t in enumerate(wave[1:], 1):  # one that depends on the pass and cannot read the
            if t.keep_in is None and t.upstream & {u.node.name for u in wave[:index]}:  # original's
                wave = wave[:index]  # input waits for the next pass
                break
        started, fitting = time.perf_counter(), 0.0
        # a layer whose input depends on a layer of the same pass would be fit to inputs that
        # layer's refit is about to change: it reads the original's input instead (cut to the
        # channels it keeps), which the refit layers before it approximate
        in_pass = {t.node.name for t in wave}
        stale = {t.node.name for t in wave if t.upstream & in_pass}
        x_names, y_names = [], []
        for t in wave:
            if t.node.name in stale:  # the original's input, and its own output (no block target)
                y_names += [t.node.inputs[0].name, t.node.outputs[0].name]
            else:
                x_names += [t.node.inputs[0].name, *([t.skip] if t.skip else [])]
                y_names.append(t.y)
        x_names, y_names = list(dict.fromkeys(x_names)), list(dict.fromkeys(y_names))
        for xs, ys in zip(
            iter_activations(pruned, x_names, feeds, types),
            iter_activations(reference, y_names, feeds, types),
            strict=True,
        ):
            tick = time.perf_counter()
            for t in wave:
                if t.node.name in stale:
                    x, y, skip = t.original_input(ys[t.node.inputs[0].name]), ys[t.node.outputs[0].name], None
                else:
                    x, y, skip = xs[t.node.inputs[0].name], ys[t.y], xs[t.skip] if t.skip else None
                layer_bytes = max(layer_bytes, x.nbytes + y.nbytes)
                t.add(x, y, skip, most)
            fitting += time.perf_counter() - tick
        done.extend(r for r in (t.refit(pruned.graph, ridge) for t in wave) if r is not None)
        start, passes = start + len(wave), passes + 1
        run_cost = time.perf_counter() - started - fitting
        fit_cost = fitting / len(wave)
    if on_progress:
        on_progress("repairing layers", layers, layers)
    if notes is not None and (samples < total or passes < layers):
        read = f"{samples} of {total} calibration samples, evenly spread" if samples < total else "all"
        notes.append(
            f"repair refit {layers} layers in {passes} passes over the data ({read}; "
            f"a {seconds:.0f} s budget; layers that share a pass are refit together, each on the "
            "original's input where its own depends on another of the pass)"
        )
    return done


def _out_features(node: ir.Node) -> int:
    w = const_array(node.inputs[1])
    if node.op_type == "Conv":
        return w.shape[0]
    if node.op_type == "Gemm" and attr_value(node, "transB", 0):
        return w.shape[0]
    return w.shape[1]


def _in_features(node: ir.Node) -> int:
    """Input channels (Conv, group 1) or features (Gemm, MatMul) of a repairable layer."""
    w = node.inputs[1].const_value.shape
    if node.op_type == "Conv" or (node.op_type == "Gemm" and attr_value(node, "transB", 0)):
        return w[1]
    return w[0]


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
