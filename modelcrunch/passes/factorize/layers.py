"""Finding the layers that can be factorized, and saying why the others cannot.

A *layer* is a MatMul, Gemm or Conv node whose weight is a constant initializer (Constant nodes are
lifted into initializers by ``modelcrunch.io.load_model``), in the main graph or any subgraph.
Its weight is read into the canonical float64 form used by the decompositions:

* MatMul ``Y = X·W`` and Gemm ``Y = α·op(X)·op(W) + β·C``: the matrix ``M = α·op(W)`` (K×N).
* Conv: the kernel ``W`` (O, C, k1, ..., kd) as stored.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.channels import attr_value
from modelcrunch.analysis.quantized import weight_origin

FLOAT_TYPES = (ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


@dataclass
class Layer:
    """A factorizable node and what the decompositions need to know about it."""

    key: str
    node: ir.Node
    graph: ir.Graph
    kind: str  # "linear" | "conv"
    weight: ir.Value
    matrix: np.ndarray  # linear: M (K×N); conv: kernel (O, C, *k)
    rows: int  # linear: activation rows per run (symbolic dims → 1); conv: output positions
    in_positions: int  # conv: input spatial positions (1 for linear)
    in_graph: str
    seq: int = 0  # position in the model's node order (for reports)

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def name(self) -> str:
        return self.node.name or self.key

    @property
    def params(self) -> int:
        return int(self.matrix.size)

    @property
    def macs(self) -> int:
        return self.params * self.rows

    @property
    def shape_text(self) -> str:
        return "×".join(str(d) for d in self.matrix.shape)


@dataclass(frozen=True)
class Skipped:
    key: str
    name: str
    op_type: str
    graph: str
    reason: str
    params: int = 0
    macs: int = 0
    seq: int = 0


def _static(dims: Sequence | None) -> int:
    """Product of the static dims (symbolic or unknown dims count as 1)."""
    if dims is None:
        return 1
    return math.prod(d if isinstance(d, int) and d > 0 else 1 for d in dims)


def _excluded(node: ir.Node, exclude: Sequence[str]) -> str | None:
    for pattern in exclude:
        if node.op_type == pattern:
            return f"excluded by --exclude {pattern} (op type)"
        if node.name and fnmatch.fnmatchcase(node.name, pattern):
            return f"excluded by --exclude {pattern}"
    return None


def _weight_problem(weight: ir.Value | None, node: ir.Node) -> str | None:
    if weight is None or weight.const_value is None or not weight.is_initializer():
        origin = weight_origin(weight)
        if origin is not None:
            return f"already quantized: {origin}; factorize the float model, then quantize"
        return "no constant weight: both operands are computed at run time"
    if weight.is_graph_input():
        return "weight is also a graph input (it may be overridden at run time)"
    if weight.is_graph_output():
        return "weight is also a graph output"
    if weight.const_value.dtype not in FLOAT_TYPES:
        return f"weight dtype {weight.const_value.dtype.name} is not floating point"
    users = {use.node for use in weight.uses()}
    if len(users) > 1:
        others = sorted(u.name or u.op_type for u in users if u is not node)
        return (
            f"weight '{weight.name}' is shared with {len(others)} other node(s) ({', '.join(others[:3])}); "
            "skipped so every user keeps the exact weight"
        )
    return None


ShapeOf = Callable[[ir.Value], Sequence | None]


def _declared_shape(value: ir.Value) -> Sequence | None:
    return value.shape


def _matrix(weight: ir.Value | None, node: ir.Node) -> np.ndarray | str:
    """The 2-D constant weight of a MatMul/Gemm as float64, or why it cannot be factorized."""
    problem = _weight_problem(weight, node)
    if problem:
        return problem
    w = weight.const_value.numpy().astype(np.float64)
    if w.ndim != 2:
        return f"weight has rank {w.ndim}; only 2-D weights are factorized"
    return w


def _linear(node: ir.Node, graph: ir.Graph, shape_of: ShapeOf) -> tuple[np.ndarray, int] | str:
    x = node.inputs[0]
    if node.op_type == "MatMul":
        weight = node.inputs[1]
        if x is not None and x.const_value is not None and (weight is None or weight.const_value is None):
            return "constant is MatMul's left operand; only right-hand weights are factorized"
        w = _matrix(weight, node)
        if isinstance(w, str):
            return w
        x_shape = shape_of(x) if x is not None else None
        rows = _static(list(x_shape)[:-1]) if x_shape is not None else 1
        return w, rows
    # Gemm
    a, weight = node.inputs[0], node.inputs[1]
    if a is not None and a.const_value is not None and weight.const_value is None:
        return "constant is Gemm's first input (A); only B weights are factorized"
    w = _matrix(weight, node)
    if isinstance(w, str):
        return w
    if attr_value(node, "transB", 0):
        w = w.T
    w = w * float(attr_value(node, "alpha", 1.0))
    rows = 1
    a_shape = shape_of(a) if a is not None else None
    if a_shape is not None and len(a_shape) == 2:
        rows = _static([a_shape[1 if attr_value(node, "transA", 0) else 0]])
    return w, rows


def _conv(node: ir.Node, shape_of: ShapeOf) -> tuple[np.ndarray, int, int] | str:
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    problem = _weight_problem(weight, node)
    if problem:
        return problem
    w = weight.const_value.numpy().astype(np.float64)
    group = int(attr_value(node, "group", 1))
    if group > 1:
        if w.shape[1] == 1:
            return (
                f"depthwise conv (group={group}, one input channel per filter): "
                "no channel redundancy to factor"
            )
        return f"grouped conv (group={group}): factorizing would mix groups"
    x, y = node.inputs[0], node.outputs[0]
    x_shape, y_shape = (shape_of(x) if x is not None else None), shape_of(y)
    out_positions = _static(list(y_shape)[2:]) if y_shape is not None else 1
    in_positions = _static(list(x_shape)[2:]) if x_shape is not None else 1
    if y_shape is not None and len(y_shape) > 0:
        out_positions *= _static([y_shape[0]])
        in_positions *= _static([y_shape[0]])
    return w, out_positions, in_positions


def find_layers(
    model: ir.Model,
    *,
    exclude: Sequence[str] = (),
    min_size: int = 0,
    shape_of: ShapeOf = _declared_shape,
) -> tuple[list[Layer], list[Skipped]]:
    """Every MatMul/Gemm/Conv of every (sub)graph: factorizable layers, and the rest with a reason.

    ``shape_of`` gives a value's shape for MAC counting (default: the shape the model declares).
    """
    layers: list[Layer] = []
    skipped: list[Skipped] = []
    for g_index, graph in enumerate(model.graphs()):
        graph_name = graph.name or ("main" if g_index == 0 else f"subgraph{g_index}")
        for n_index, node in enumerate(graph):
            if node.domain not in ("", "ai.onnx") or node.op_type not in ("MatMul", "Gemm", "Conv"):
                continue
            key = f"{graph_name}/{node.name or f'{node.op_type}_{n_index}'}"
            weight = node.inputs[1] if len(node.inputs) > 1 else None
            size = weight.const_value.size if weight is not None and weight.const_value is not None else 0

            def skip(
                reason: str, node: ir.Node = node, key: str = key, size: int = size, where: str = graph_name
            ) -> None:
                skipped.append(
                    Skipped(
                        key,
                        node.name or key,
                        node.op_type,
                        where,
                        reason,
                        size,
                        seq=len(layers) + len(skipped),
                    )
                )

            reason = _excluded(node, exclude)
            if reason:
                skip(reason)
                continue
            if node.op_type == "Conv":
                found = _conv(node, shape_of)
                if isinstance(found, str):
                    skip(found)
                    continue
                matrix, rows, in_positions = found
                kind = "conv"
            else:
                found = _linear(node, graph, shape_of)
                if isinstance(found, str):
                    skip(found)
                    continue
                (matrix, rows), in_positions, kind = found, 1, "linear"
            if matrix.size < min_size:
                skip(f"weight has {matrix.size} parameters < --min-size {min_size}")
                continue
            seq = len(layers) + len(skipped)
            layers.append(Layer(key, node, graph, kind, weight, matrix, rows, in_positions, graph_name, seq))
    return layers, skipped
