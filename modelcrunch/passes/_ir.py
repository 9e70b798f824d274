"""onnx-ir helpers shared by the passes."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import onnx_ir as ir

#: Opset from which ReduceMax/ReduceMin/ReduceSum... take their axes as an input, not an attribute.
REDUCE_AXES_INPUT_OPSET = 18


def register_array(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` as the initializer ``name`` of ``graph`` (dtype and shape from the array)."""
    array = np.ascontiguousarray(array)
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value


class FreshNames:
    """Names no value or node of ``model`` uses (subgraphs included), for the nodes a pass adds.

    ``names("q")`` gives ``q0``, ``q1``...; ``names("x_peak", numbered=False)`` gives ``x_peak``
    while it is free, then ``x_peak1``...
    """

    def __init__(self, model: ir.Model) -> None:
        #: how many values of the model carry each name (a name may repeat in sibling subgraphs)
        self.values: Counter[str] = Counter()
        nodes: set[str] = set()
        for graph in model.graphs():
            self.values.update(v.name for v in (*graph.inputs, *graph.initializers.values()) if v.name)
            for node in graph:
                nodes.add(node.name or "")
                self.values.update(v.name for v in node.outputs if v.name)
        self.taken: set[str] = nodes | set(self.values)
        self.count: dict[str, int] = {}

    def __call__(self, base: str, *, numbered: bool = True) -> str:
        if not numbered and base not in self.taken:
            self.taken.add(base)
            return base
        k = self.count.get(base, 0 if numbered else 1)
        while f"{base}{k}" in self.taken:
            k += 1
        self.count[base] = k + 1
        name = f"{base}{k}"
        self.taken.add(name)
        return name


def name_nodes(model: ir.Model) -> None:
    """Give every node of every graph a stable unique name (exclusion and reports are by name)."""
    seen: set[str] = set()
    for graph in model.graphs():
        for index, node in enumerate(graph):
            if not node.name or node.name in seen:
                node.name = f"{node.op_type}_{index}_{len(seen)}"
            seen.add(node.name)


def annotated_names(model: ir.Model) -> frozenset[str]:
    """Names of the intermediate values (node outputs) of ``model`` that carry a type or shape."""
    return frozenset(
        value.name
        for graph in model.graphs()
        for node in graph
        for value in node.outputs
        if value.name and (value.type is not None or value.shape is not None) and not value.is_graph_output()
    )


def drop_shape_annotations(model: ir.Model, keep: frozenset[str] = frozenset()) -> int:
    """Forget the types and shapes of intermediate values and initializers, except ``keep``.

    Shape inference during pre-processing annotates every value; saved, that is one
    ``value_info`` per tensor (6 % of a QDQ model's file on PP-OCR det) which ONNX Runtime
    infers again anyway. Graph inputs and outputs keep theirs. Returns how many were dropped.
    """
    dropped = 0
    for graph in model.graphs():
        io = {id(v) for v in graph.inputs} | {id(v) for v in graph.outputs}
        values = [*graph.initializers.values(), *(v for node in graph for v in node.outputs)]
        for value in values:
            if id(value) in io or value.name in keep or (value.type is None and value.shape is None):
                continue
            value.type = None
            value.shape = None
            dropped += 1
    return dropped


def share_subgraph_copies(model: ir.Model, min_elements: int = 1024) -> tuple[int, int]:
    """Identical tensors held as initializers by several subgraphs become one main-graph
    initializer that every one of them reads (an outer-scope value). ONNX Runtime's constant
    folding writes such copies: silero-vad's LSTM weights, reshaped inside both branches of an
    inner If, came back as one folded copy per branch (545k → 809k weights). Returns (copies
    dropped, bytes saved). Tensors under ``min_elements`` and graph inputs are left alone."""
    groups: dict[tuple, list[tuple[ir.Graph, ir.Value]]] = {}
    for graph in model.graphs():
        if graph is model.graph:
            continue
        inputs = {id(v) for v in graph.inputs}
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is None or tensor.size < min_elements or id(value) in inputs:
                continue
            array = tensor.numpy()
            key = (tensor.dtype, array.shape, hashlib.sha256(array.tobytes()).hexdigest())
            groups.setdefault(key, []).append((graph, value))
    shared = [copies for copies in groups.values() if len(copies) > 1]
    if not shared:
        return 0, 0
    names = FreshNames(model)
    dropped = saved = 0
    for copies in shared:
        home, kept = copies[0]
        home.initializers.pop(kept.name)
        if names.values[kept.name] > 1:  # a sibling subgraph uses the name; the main graph may not
            kept.name = names(kept.name, numbered=False)
        model.graph.register_initializer(kept)
        for graph, value in copies[1:]:
            value.replace_all_uses_with(kept)
            graph.initializers.pop(value.name)
            dropped += 1
            saved += kept.const_value.nbytes
    return dropped, saved
