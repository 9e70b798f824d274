"""Estimate of peak activation memory for one inference, from static shapes.

Method: walk the main graph's nodes in topological order. A tensor is allocated when its
producer runs and freed right after its last consumer ran (a consumer inside an If/Loop/Scan
body counts as a use by that control-flow node). Graph inputs are live for the whole run, graph
outputs from when they are produced to the end. While a node runs, its inputs and outputs are
live together. The peak is the largest total of live bytes at any node.

This estimates ONNX Runtime's arena *without* memory-pattern reuse, in-place ops, fusion or
workspace buffers: the real figure can be lower (reuse, fusion) or higher (workspaces,
allocator rounding). Weights are not counted (see the weight bytes). Tensors inside subgraphs
are not counted. When any tensor's size is unknown (unresolved dims), the result is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from modelcrunch.analysis.shapes import ShapeTable, numel


@dataclass(frozen=True)
class MemoryEstimate:
    peak_bytes: int | None
    inputs_bytes: int | None
    outputs_bytes: int | None
    #: Name of the node at which the peak occurs (None when unknown).
    peak_node: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "peak_bytes": self.peak_bytes,
            "inputs_bytes": self.inputs_bytes,
            "outputs_bytes": self.outputs_bytes,
            "peak_node": self.peak_node,
        }


def tensor_bytes(value: ir.Value, table: ShapeTable) -> int | None:
    count, dtype = numel(table.shape(value)), table.dtype(value)
    if count is None or dtype is None or dtype == ir.DataType.STRING:
        return None
    return (count * dtype.bitwidth + 7) // 8


def _subgraph_nodes(node: ir.Node) -> list[ir.Node]:
    nodes = []
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            nodes.extend(attr.value.all_nodes())
        elif attr.type == ir.AttributeType.GRAPHS:
            for g in attr.value:
                nodes.extend(g.all_nodes())
    return nodes


def _sum(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def estimate_activation_memory(model: ir.Model, table: ShapeTable) -> MemoryEstimate:
    graph = model.graph
    order = {node: i for i, node in enumerate(graph)}
    for node, i in list(order.items()):
        for inner in _subgraph_nodes(node):
            order[inner] = i  # a use inside a subgraph is a use by the control-flow node
    last_use: dict[ir.Value, int] = {}
    for node in graph:
        for out in node.outputs:
            uses = [order.get(user, len(order)) for user, _ in out.uses()]
            last_use[out] = max(uses, default=order[node])
    graph_inputs = [v for v in graph.inputs if not v.is_initializer()]
    inputs_bytes = _sum([tensor_bytes(v, table) for v in graph_inputs])
    outputs_bytes = _sum([tensor_bytes(v, table) for v in graph.outputs])
    if inputs_bytes is None or outputs_bytes is None:
        return MemoryEstimate(None, inputs_bytes, outputs_bytes, None)
    outputs = set(graph.outputs)
    live = inputs_bytes
    peak, peak_node = live, None
    frees: dict[int, int] = {}
    for i, node in enumerate(graph):
        produced = 0
        for out in node.outputs:
            if not out.name:
                continue
            size = tensor_bytes(out, table)
            if size is None:
                return MemoryEstimate(None, inputs_bytes, outputs_bytes, None)
            produced += size
            if out not in outputs and out not in graph_inputs:
                frees[last_use[out]] = frees.get(last_use[out], 0) + size
        live += produced
        if live > peak:
            peak, peak_node = live, node.name
        live -= frees.pop(i, 0)
    return MemoryEstimate(peak, inputs_bytes, outputs_bytes, peak_node)
