"""Per-token dynamic int8: the accurate fall-back for MatMuls that per-tensor int8 hurts.

ONNX Runtime's dynamic int8 (``DynamicQuantizeLinear``) gives a whole activation tensor one
scale, so one outlier token (padding, [CLS], a GELU spike) coarsens every other token. This
rewrite gives each row of the activation its own symmetric scale (the ZeroQuant / LLM.int8()
recipe) and still runs the integer kernel::

    x2 = Reshape(x, [-1, K])                                rows m = 1..M (tokens)
    s  = max(max_k x2[m], -min_k x2[m], eps) / 127          per row (two reductions, no Abs pass)
    q  = QuantizeLinear(x2, s, 128, axis=0)                 uint8 centred on 128
    y2 = Cast(MatMulInteger(q, Wq, 128)) · s ⊗ w            Wq = round(W / w), w = max|W[:, n]| / 127
    y  = Reshape(y2, shape(x)[:-1] + [N])

The zero point is the constant 128, because ``MatMulInteger`` in ONNX Runtime takes only a
scalar zero point for its first input: an asymmetric per-row zero point needs a column-sum
correction, i.e. three more element-wise passes over the output. Measured on MiniLM-L6 with
every MatMul per-token (batch 1, seq 128, 2 threads, interleaved): this form gives embedding
cosine 0.9972 at 0.60x latency of fp32, the asymmetric form 0.9988 at 0.66x, per-tensor int8
0.9932 at 0.52x. So ``quantize`` uses it only for the layers the sensitivity analysis finds,
before keeping any float.

Limits: MatMul with a constant 2-D float weight, in the main graph; opset >= 13 (per-axis
QuantizeLinear, Unsqueeze with axes as an input). Anything else is left as it is (float).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelcrunch.io import names_read
from modelcrunch.passes._ir import REDUCE_AXES_INPUT_OPSET
from modelcrunch.passes.quantize.preprocess import default_opset

logger = logging.getLogger(__name__)

MIN_OPSET = 13


def _rewritable(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    if node.op_type != "MatMul" or len(node.input) != 2:
        return False
    weight = inits.get(node.input[1])
    return weight is not None and weight.data_type == TensorProto.FLOAT and len(weight.dims) == 2


def per_token_rewrite(model: onnx.ModelProto, names: Iterable[str]) -> list[str]:
    """Rewrite the named MatMuls of ``model``'s main graph in place; returns those rewritten.

    The integer MatMul keeps the original node's name, so reports and exclusion lists still match.
    """
    wanted = set(names)
    opset = default_opset(model)
    if not wanted or opset < MIN_OPSET:
        return []
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        consts.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    shared = {
        "eps": const("per_token_eps", np.float32(1e-8)),
        "q_max": const("per_token_127", np.float32(127)),
        "zero_point": const("per_token_zero_point", np.uint8(128)),
        "last": const("per_token_last_axis", np.array([-1], np.int64)),
        "start": const("per_token_start", np.array([0], np.int64)),
        "end": const("per_token_end", np.array([-1], np.int64)),
    }
    done: list[str] = []
    replaced: set[str] = set()
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name not in wanted or not _rewritable(node, inits):
            nodes.append(node)
            continue
        nodes.extend(
            _per_token_nodes(node, numpy_helper.to_array(inits[node.input[1]]), const, shared, opset)
        )
        done.append(node.name)
        replaced.add(node.input[1])
    if not done:
        return []
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(consts)
    read = names_read(graph)
    stale = {weight for weight in replaced if weight not in read}  # float weights nothing reads now
    kept = [t for t in graph.initializer if t.name not in stale]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    logger.info("per-token int8: %d MatMuls", len(done))
    return done


def _per_token_nodes(node: onnx.NodeProto, weight: np.ndarray, const, shared: dict[str, str], opset: int):
    x, y, p = node.input[0], node.output[0], node.name
    scale_w = (np.abs(weight).max(axis=0) / 127.0).astype(np.float32)
    scale_w = np.where(scale_w > 0, scale_w, np.float32(1.0)).astype(np.float32)
    w_q = np.clip(np.rint(weight / scale_w), -127, 127).astype(np.int8)
    w_q_name = const(f"{p}_per_token_Wq", w_q)
    scale_w_name = const(f"{p}_per_token_w_scale", scale_w)
    flat = const(f"{p}_per_token_flat", np.array([-1, weight.shape[0]], np.int64))
    width = const(f"{p}_per_token_width", np.array([weight.shape[1]], np.int64))
    out: list[onnx.NodeProto] = []

    def add(op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        name = output or f"{p}/per_token/{op}_{len(out)}"
        out.append(helper.make_node(op, inputs, [name], name=f"{p}/per_token/{op}_{len(out)}", **attrs))
        return name

    def reduce(op: str, value: str) -> str:
        if opset >= REDUCE_AXES_INPUT_OPSET:
            return add(op, [value, shared["last"]], keepdims=0)
        return add(op, [value], axes=[-1], keepdims=0)

    x2 = add("Reshape", [x, flat])
    peak = add("Max", [reduce("ReduceMax", x2), add("Neg", [reduce("ReduceMin", x2)]), shared["eps"]])
    scale = add("Div", [peak, shared["q_max"]])
    zero = add("Expand", [shared["zero_point"], add("Shape", [scale])])
    q = add("QuantizeLinear", [x2, scale, zero], axis=0)
    acc = add("Cast", [add("MatMulInteger", [q, w_q_name, shared["zero_point"]])], to=TensorProto.FLOAT)
    out[-2].name = p  # the integer MatMul keeps the original name
    scaled = add("Mul", [add("Mul", [acc, add("Unsqueeze", [scale, shared["last"]])]), scale_w_name])
    lead = add("Slice", [add("Shape", [x]), shared["start"], shared["end"]])
    add("Reshape", [scaled, add("Concat", [lead, width], axis=0)], output=y)
    return out
