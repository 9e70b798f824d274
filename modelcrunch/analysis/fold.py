"""Fold small constant sub-expressions of a throwaway ModelProto so shape inference can see them.

Used only to *infer shapes* (never to rewrite the user's model). Exporters often compute Pad
pads, Reshape targets and Slice bounds with chains like ``Shape → Cast → Slice → Concat`` or
``ConstantOfShape → Concat → Reshape → Transpose``; onnx's data propagation stops at some of them,
and inside If/Loop bodies it does not run at all. This pass evaluates, with
``onnx.reference``, every default-domain node whose inputs are all known small constants
(initializers of at most ``MAX_ELEMENTS`` elements, earlier folded outputs, or ``Shape`` of a
value whose static shape is known), and replaces it with an initializer of its result.

Limits: only outputs of at most ``MAX_ELEMENTS`` elements are folded; random and control-flow
ops are never evaluated; a node the reference evaluator cannot run is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from modelcrunch.io import node_subgraphs

logger = logging.getLogger(__name__)

MAX_ELEMENTS = 4096
_NEVER = {
    "If",
    "Loop",
    "Scan",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "SequenceConstruct",
    "SequenceEmpty",
}

#: Looks a value's static shape up by name; None when unknown.
StaticShape = Callable[[str], "tuple[int, ...] | None"]


def _run(node: onnx.NodeProto, inputs: list[np.ndarray], opset: int) -> list[np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" for k in range(len(inputs))]
    renamed = onnx.NodeProto()
    renamed.CopyFrom(node)
    del renamed.input[:]
    renamed.input.extend(n if orig else "" for n, orig in zip(names, node.input, strict=True))
    graph = onnx.helper.make_graph(
        [renamed],
        "fold",
        [
            onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a, orig in zip(names, inputs, node.input, strict=True)
            if orig
        ],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        feeds = {n: a for n, a, orig in zip(names, inputs, node.input, strict=True) if orig}
        return [np.asarray(x) for x in ReferenceEvaluator(model).run(None, feeds)]
    except Exception as exc:  # noqa: BLE001 - folding is best effort
        logger.debug("cannot fold %s (%s): %s", node.name, node.op_type, exc)
        return None


def _fold_graph(
    graph: onnx.GraphProto, consts: dict[str, np.ndarray], shape_of: StaticShape, opset: int
) -> int:
    consts = dict(consts)  # a subgraph sees its outer scope, not the other way round
    for init in graph.initializer:
        if (
            np.prod(init.dims, dtype=np.int64) <= MAX_ELEMENTS
            and init.data_location != onnx.TensorProto.EXTERNAL
        ):
            consts[init.name] = numpy_helper.to_array(init)
    folded = 0
    keep: list[onnx.NodeProto] = []
    for node in graph.node:
        for sub in node_subgraphs(node):
            folded += _fold_graph(sub, consts, shape_of, opset)
        outputs = _evaluate(node, consts, shape_of, opset)
        if outputs is None:
            keep.append(node)
            continue
        for name, array in zip(node.output, outputs, strict=True):
            consts[name] = array
            graph.initializer.append(numpy_helper.from_array(array, name))
        folded += 1
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def _evaluate(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], shape_of: StaticShape, opset: int
) -> list[np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER or not node.output:
        return None
    if node.op_type == "Shape" and not any(a.name in ("start", "end") for a in node.attribute):
        shape = shape_of(node.input[0])
        return None if shape is None else [np.array(shape, dtype=np.int64)]
    if not all(name == "" or name in consts for name in node.input):
        return None
    outputs = _run(node, [consts[n] for n in node.input if n], opset)
    if outputs is None or any(o.size > MAX_ELEMENTS or o.dtype == object for o in outputs):
        return None
    return outputs


def fold_constants(proto: onnx.ModelProto, shape_of: StaticShape) -> int:
    """Fold in place; returns the number of nodes folded (main graph and subgraphs)."""
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 17)
    return _fold_graph(proto.graph, {}, shape_of, opset)
