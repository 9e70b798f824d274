"""Channel-coupling groups of an ONNX graph (the DepGraph idea, on onnx-ir).

A *group* is the set of tensor slices that must lose the same channels together so the graph stays
consistent: a producer's output channels (Conv/ConvTranspose filters, Gemm/MatMul output features)
and their bias, the BatchNorm entries, every element-wise op and activation on the way, all
branches of a residual Add/Mul/Sub, Concat/Split ranges, pools, Flatten/Reshape into a Gemm, squeeze-
excitation broadcasts, depthwise convs, and finally the consumers' input slices (next Conv's input
channels, Gemm/MatMul rows).

Channel ``i`` (0 <= i < size) of a group lives, in every member value, at the indices
``offset + i*block + j`` (0 <= j < block) of one axis: ``offset`` comes from Concat/Split, ``block``
from Flatten/Reshape merging the channel axis with the spatial axes that follow it.

The analysis walks the graph from each producer, forward (consumers) and backward (producers of the
other operands of element-wise ops), through a per-op handler. Anything it cannot map exactly — a
graph output, an unknown op, an unmappable Reshape, a grouped conv, a Split that straddles the
range — makes the group *unprunable* with that reason. A Split/Concat boundary inside the range
makes the seed retry as sub-ranges cut at the boundary (YOLO-style C2f blocks).
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from modelcrunch.analysis.channel_ops import HANDLERS
from modelcrunch.analysis.channels import (
    ChannelGroup,
    GraphFacts,
    Occurrence,
    ParamSlice,
    Port,
    Unprunable,
    attr_value,
    const_array,
    expand_indices,
)

__all__ = ["ChannelGroup", "Occurrence", "ParamSlice", "const_array", "expand_indices", "find_groups"]

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ walking


def producer_channels(node: ir.Node) -> int | None:
    """Output channels of a node that can seed a group, else None."""
    w = node.inputs[1] if len(node.inputs) > 1 else None
    shape = None if w is None or w.const_value is None else tuple(w.const_value.shape)
    if shape is None:
        return None
    if node.op_type == "Conv" and attr_value(node, "group", 1) == 1:
        return int(shape[0])
    if node.op_type == "ConvTranspose" and attr_value(node, "group", 1) == 1:
        return int(shape[1])
    if node.op_type == "Gemm" and not attr_value(node, "transA", 0):
        return int(shape[0] if attr_value(node, "transB", 0) else shape[1])
    if node.op_type == "MatMul" and len(shape) == 2:
        return int(shape[1])
    return None


def _walk(facts: GraphFacts, node: ir.Node, offset: int, size: int, group: ChannelGroup) -> None:
    out = node.outputs[0]
    queue: list[tuple[ir.Value, Occurrence, str | None]] = [
        (out, Occurrence(out.name, _out_axis(facts, node), offset, group.block), None)
    ]
    seen_occ: set[Occurrence] = set()
    seen_visit: set[tuple[str, Port, Occurrence]] = set()
    params: dict[tuple, ParamSlice] = {}
    while queue:
        value, occ, came_from = queue.pop()
        occ = Occurrence(value.name, occ.axis, occ.offset, occ.block, size)
        if occ in seen_occ:
            continue
        seen_occ.add(occ)
        shape = facts.shape(value)
        if shape is None or occ.axis >= len(shape) or shape[occ.axis] is None:
            raise Unprunable(f"'{value.name}': static channel size unknown")
        if occ.offset + size * occ.block > shape[occ.axis]:
            raise Unprunable(f"'{value.name}': channel range exceeds its axis")
        group.members.append(occ)
        if value.is_graph_output():
            raise Unprunable(f"reaches graph output '{value.name}'")
        visits: list[tuple[ir.Node, Port]] = []
        producer = value.producer()
        if producer is None:
            raise Unprunable(f"channels come from graph input '{value.name}'")
        visits.append((producer, ("out", value.index())))
        visits += [(use.node, ("in", use.idx)) for use in value.uses()]
        for user, port in visits:
            key = (user.name, port, occ)
            if key in seen_visit or user.name == came_from:
                continue
            seen_visit.add(key)
            if user.graph is not facts.graph:
                raise Unprunable(f"'{value.name}' is used inside a subgraph")
            if user.domain not in ("", "ai.onnx", "com.microsoft"):
                raise Unprunable(f"unknown op {user.domain}::{user.op_type} '{user.name}'")
            handler = HANDLERS.get(user.op_type)
            if handler is None:
                raise Unprunable(f"unknown op {user.op_type} '{user.name}'")
            coupling = handler(facts, user, port, occ)
            for p in coupling.params:
                params[(p.node, p.input, p.axis, p.offset, p.block)] = p
            if coupling.role == "producer" and user.name not in group.producers:
                group.producers.append(user.name)
            elif coupling.role == "consumer" and user.name not in group.consumers:
                group.consumers.append(user.name)
            elif coupling.role == "depthwise" and user.name not in group.depthwise:
                group.depthwise.append(user.name)
            if coupling.split is not None:
                entry = (user.name, *coupling.split)
                if entry not in group.splits:
                    group.splits.append(entry)
            if coupling.reshape is not None:
                entry = (user.name, *coupling.reshape)
                if entry not in group.reshapes:
                    group.reshapes.append(entry)
            queue += [(v, o, user.name) for v, o in coupling.links]
    group.params = list(params.values())
    if not group.consumers:
        raise Unprunable("no consumer layer takes these channels")


def _out_axis(facts: GraphFacts, node: ir.Node) -> int:
    if node.op_type == "MatMul":
        return len(facts.shape(node.outputs[0]) or (0, 0)) - 1
    return 1


def find_groups(
    model: ir.Model, input_shapes: dict[str, list[int | str]] | None = None
) -> list[ChannelGroup]:
    """Every channel group of the main graph, prunable or not (with the reason).

    ``input_shapes`` fixes the graph inputs' open dims (``--shape``, or the data's) for analysis."""
    facts = GraphFacts(model, input_shapes)
    groups: list[ChannelGroup] = []
    covered: set[str] = set()
    for node in model.graph:
        size = producer_channels(node)
        if size is None or node.name in covered:
            continue
        pending = [(0, size, 0, 1)]  # (offset, channels, retry depth, block)
        while pending:
            offset, width, depth, block = pending.pop(0)
            group = ChannelGroup(id=len(groups), size=width, producers=[node.name], block=block)
            try:
                _walk(facts, node, offset, width, group)
            except Unprunable as exc:
                if exc.cuts and depth < 4:
                    bounds = [0, *sorted(set(exc.cuts)), width]
                    pending += [
                        (offset + a * block, b - a, depth + 1, block)
                        for a, b in zip(bounds, bounds[1:], strict=False)
                        if b > a
                    ]
                    continue
                if exc.regroup > 1 and block == 1 and width % exc.regroup == 0 and depth < 4:
                    pending.append((offset, width // exc.regroup, depth + 1, exc.regroup))
                    continue
                group.reason = exc.reason
            covered.update(group.producers)
            groups.append(group)
    for i, group in enumerate(groups):
        group.id = i
    return groups
