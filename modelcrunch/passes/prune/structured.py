"""Structured channel pruning: physically remove whole channels of every prunable channel group.

Rewrites, for each group (see ``modelcrunch.analysis.groups``) and its kept channels ``K``:
producer weights ``W[K]`` (Conv axis 0, ConvTranspose axis 1, Gemm/MatMul output features) and
bias ``b[K]``; BatchNorm ``gamma/beta/mean/var[K]``; broadcast constants of element-wise ops;
depthwise filters ``W[K]`` with ``group = |K|``; consumer input slices ``W[:, K]`` (Conv), ``B[K, :]``
(Gemm/MatMul, expanded to ``K*block + j`` after a Flatten); Reshape targets shrink by the removed
elements. The result is a smaller *dense* model; when the removed channels carry exactly zero
signal the outputs are unchanged.

Limits: the main graph only; groups the analysis cannot map are left alone (reason recorded).
Initializers shared with nodes outside a group are copied before slicing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.groups import ChannelGroup, const_array, expand_indices, find_groups
from modelcrunch.errors import ModelcrunchError
from modelcrunch.passes._ir import register_array
from modelcrunch.passes.prune import importance as imp

logger = logging.getLogger(__name__)

IMPORTANCES = ("l1", "l2", "bn", "activation")
SCOPES = ("local", "global")


@dataclass(frozen=True)
class StructuredOptions:
    ratio: float = 0.3
    scope: str = "local"
    importance: str = "l2"
    min_channels: int = 1
    min_keep_ratio: float = 0.1
    round_to: int = 1
    exclude: tuple[str, ...] = ()
    heads: bool = False  # also prune whole attention heads (groups whose channel is a head)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ModelcrunchError(f"--ratio {self.ratio}: must be in [0, 1)")
        if self.scope not in SCOPES:
            raise ModelcrunchError(f"--scope {self.scope}: choose one of {', '.join(SCOPES)}")
        if self.importance not in IMPORTANCES:
            raise ModelcrunchError(f"--importance {self.importance}: choose one of {', '.join(IMPORTANCES)}")
        if self.round_to < 1 or self.min_channels < 1:
            raise ModelcrunchError("--round-to and --min-channels must be >= 1")


@dataclass(frozen=True)
class GroupDecision:
    group: ChannelGroup
    kept: np.ndarray | None  # None: skipped (group.reason or excluded)
    reason: str | None


def ensure_node_names(model: ir.Model) -> None:
    """Give every unnamed (or duplicate-named) node of the main graph a unique name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def _excluded(group: ChannelGroup, nodes: dict[str, ir.Node], exclude: tuple[str, ...]) -> str | None:
    for name in [*group.producers, *group.consumers, *group.depthwise]:
        node = nodes[name]
        if name in exclude or any(
            p.node == name
            for p in group.params
            if nodes[p.node].inputs[p.input] is not None and nodes[p.node].inputs[p.input].name in exclude
        ):
            return f"excluded by --exclude ({name})"
        if name in group.producers and node.op_type in exclude:
            return f"excluded by --exclude ({node.op_type})"
    return None


def plan(
    model: ir.Model,
    options: StructuredOptions,
    *,
    calibration: Iterable[dict[str, np.ndarray]] | None = None,
    input_shapes: dict[str, list[int | str]] | None = None,
) -> list[GroupDecision]:
    """Find the groups, score them and decide which channels each keeps."""
    ensure_node_names(model)
    groups = find_groups(model, input_shapes)
    nodes = {n.name: n for n in model.graph}
    candidates = []
    decisions: dict[int, GroupDecision] = {}
    for g in groups:
        reason = g.reason or _excluded(g, nodes, options.exclude)
        if reason is None and g.block > 1 and not options.heads:
            reason = f"attention heads ({g.size} heads of {g.block}): enable with --heads"
        if reason is not None:
            decisions[g.id] = GroupDecision(g, None, reason)
        else:
            candidates.append(g)
    if options.importance == "activation":
        if calibration is None:
            raise ModelcrunchError("--importance activation needs --calibration DATA")
        scores = imp.activation_scores(model, candidates, calibration)
    elif options.importance == "bn":
        scores = {g.id: imp.bn_scores(model, g) for g in candidates}
    else:
        scores = {g.id: imp.weight_scores(model, g, options.importance) for g in candidates}
    sizes = {g.id: g.size for g in candidates}
    if options.scope == "global":
        kept = imp.select_global(
            scores,
            sizes,
            options.ratio,
            min_channels=options.min_channels,
            min_keep_ratio=options.min_keep_ratio,
            round_to=options.round_to,
        )
    else:
        kept = imp.select_local(
            scores, sizes, options.ratio, min_channels=options.min_channels, round_to=options.round_to
        )
    for g in candidates:
        decisions[g.id] = GroupDecision(g, kept[g.id], None)
    return [decisions[g.id] for g in groups]


def _set_input(graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray, names: set[str]) -> None:
    value = node.inputs[index]
    private = (
        value.const_value is not None
        and len(value.uses()) == 1
        and not value.is_graph_input()
        and not value.is_graph_output()
    )
    if private:
        value.const_value = ir.tensor(array, name=value.name)
        value.shape = ir.Shape(array.shape)
        return
    node.replace_input_with(index, _new_initializer(graph, f"{value.name}_pruned", array, names))


def _new_initializer(graph: ir.Graph, base: str, array: np.ndarray, names: set[str]) -> ir.Value:
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    names.add(name)
    return register_array(graph, name, array)


def apply(model: ir.Model, decisions: list[GroupDecision]) -> None:
    """Slice every coupled tensor of the decided groups, in place."""
    graph = model.graph
    nodes = {n.name: n for n in graph}
    removals: dict[tuple[str, int], dict[int, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    reshape_delta: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    split_sizes: dict[str, list[int]] = {}
    depthwise: set[str] = set()
    members: set[str] = set()
    for d in decisions:
        if d.kept is None or len(d.kept) == d.group.size:
            continue
        pruned = np.setdiff1d(np.arange(d.group.size), d.kept)
        for p in d.group.params:
            removals[(p.node, p.input)][p.axis].append(expand_indices(pruned, p.offset, p.block))
        for node_name, dim, block in d.group.reshapes:
            reshape_delta[node_name][dim] += len(pruned) * block
        for node_name, output, block, sizes in d.group.splits:
            split_sizes.setdefault(node_name, list(sizes))[output] -= len(pruned) * block
        depthwise.update(d.group.depthwise)
        members.update(m.value for m in d.group.members)
    names = {v.name for v in graph.initializers.values()} | {
        v.name for n in graph for v in n.outputs if v is not None
    }
    for (node_name, index), axes in removals.items():
        node = nodes[node_name]
        array = const_array(node.inputs[index])
        for axis, chunks in axes.items():
            array = np.delete(array, np.unique(np.concatenate(chunks)), axis=axis)
        _set_input(graph, node, index, np.ascontiguousarray(array), names)
    for node_name, deltas in reshape_delta.items():
        node = nodes[node_name]
        target = const_array(node.inputs[1]).astype(np.int64).copy()
        for dim, delta in deltas.items():
            if target[dim] > 0:
                target[dim] -= delta
        _set_input(graph, node, 1, target, names)
    opset = model.opset_imports.get("", 17)
    for node_name, sizes in split_sizes.items():
        node = nodes[node_name]
        if opset >= 13:
            if len(node.inputs) < 2 or node.inputs[1] is None:
                node.resize_inputs(2)
                node.replace_input_with(
                    1, _new_initializer(graph, f"{node_name}_split", np.array(sizes), names)
                )
            else:
                _set_input(graph, node, 1, np.array(sizes, dtype=np.int64), names)
        else:
            node.attributes["split"] = ir.AttrInt64s("split", sizes)
    for node_name in depthwise:
        node = nodes[node_name]
        node.attributes["group"] = ir.AttrInt64("group", int(node.inputs[1].const_value.shape[0]))
    for node in graph:
        for v in node.outputs:
            if v is not None and v.name in members and not v.is_graph_output():
                v.shape = None


def prune_structured(
    model: ir.Model,
    options: StructuredOptions,
    *,
    calibration: Iterable[dict[str, np.ndarray]] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    input_shapes: dict[str, list[int | str]] | None = None,
) -> list[GroupDecision]:
    """Plan and apply structured pruning in place; returns the decision for every group."""
    if on_progress:
        on_progress("analysing channel groups", 0, 1)
    decisions = plan(model, options, calibration=calibration, input_shapes=input_shapes)
    apply(model, decisions)
    if on_progress:
        on_progress("analysing channel groups", 1, 1)
    skipped = sum(1 for d in decisions if d.kept is None)
    logger.info("pruned %d groups, skipped %d", len(decisions) - skipped, skipped)
    return decisions
