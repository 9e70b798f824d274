"""Storage-only int8: weights stored as int8 and dequantized to fp32 once, when the session loads.

Rewrites every float32 initializer ``W`` with at least ``MIN_ELEMENTS`` elements (``MIN_WEIGHT_ELEMENTS``
for a layer's weight: the depthwise and squeeze-excite kernels of mobile CNNs are small) into
``W' = Mul(Cast(W_q, to=FLOAT), s)`` with symmetric per-channel scales
``s_c = max|W[c]| / 127`` and ``W_q = clip(round(W / s), -127, 127)`` (int8). The channel axis
follows the consumer: output channels of Conv (0) / ConvTranspose (1), output columns of MatMul
(last) and Gemm (0 with transB, else 1), columns of an embedding Gather; per-tensor when the
consumers disagree. Works in every graph, If/Loop bodies included. Embedding tables (only ever
gathered by rows) are gathered as int8 and only the gathered rows dequantized, at run time, so
the fp32 table never exists in memory.
``Cast`` + ``Mul`` is ``DequantizeLinear`` written with ops ONNX Runtime constant-folds: a real
``DequantizeLinear`` is deliberately not folded (it is kept for QDQ fusion), so it would run at
every inference and block weight pre-packing — measured 1.8x slower on the sample CNN.
The file is ~4x smaller; activations and kernels stay fp32, so speed is about unchanged and the
error is only the weight rounding (relative error <= 1/254 per channel).

The ``quantize`` pipeline stores the pre-processed model (``preprocess.py``: ONNX Runtime's
basic, hardware-independent optimisations), so BatchNormalization is already folded into its
Conv and there is no float BN parameter left over: PP-OCR's direction classifier goes from 0.45x
to 0.33x of its size that way, the rest of that 0.6 MB file being biases, scales and graph.

Bytes beside the int8 values (they are most of what is left of a small mobile CNN's file):

* per-channel scales are rounded *up* to a float16 value before the weights are rounded, so they
  are stored as float16 (``Cast`` to float, folded at load: exact) where every scale of the tensor
  is a normal float16 and there are at least ``HALF_MIN_ELEMENTS`` of them;
* layer biases (Conv/ConvTranspose/Gemm input 2) are stored as float16 the same way (not with
  ``weight_slots_only``): they compute in fp32, off by at most 2^-11 of their value, far below the
  weights' rounding;
* the new values and nodes get short names (``q3``, ``s3``...): the dequantized weight keeps the
  original weight's name, so the layer still reads the same tensor name. ONNX Runtime's generated
  names (``ConvBnFusion_W_conv11_linear_weights``) stored four more times each were 5 % of that file.

PP-OCR's direction classifier (0.59 MB): 0.33x → 0.29x of its size with the three together.

Limits: weights that are graph inputs or outputs are left alone; small tensors (norms, tiny
biases) stay float32.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from modelcrunch.passes._ir import FreshNames, register_array

logger = logging.getLogger(__name__)

MIN_ELEMENTS = 1024
#: ... and for a tensor read only as a layer's weight (per-channel scales cost 4 bytes per channel).
MIN_WEIGHT_ELEMENTS = 256
#: Scales and biases stored as float16 from this many elements (a ``Cast`` node costs ~30 bytes).
HALF_MIN_ELEMENTS = 32
_HALF = np.finfo(np.float16)


def _fits_half(array: np.ndarray) -> bool:
    """Whether storing ``array`` as float16 pays (enough elements) and keeps every value finite."""
    return array.size >= HALF_MIN_ELEMENTS and bool(np.all(np.abs(array) <= _HALF.max))


def _exact_half(array: np.ndarray) -> bool:
    """Whether every value of ``array`` is a normal float16 value (stored as float16 exactly)."""
    back = array.astype(np.float16).astype(np.float32)
    return bool(np.all(np.abs(array) >= _HALF.tiny) and np.array_equal(back, array))


def _half_rounded_up(scale: np.ndarray) -> np.ndarray:
    """``scale`` rounded up to float16 values where they are normal float16 (else unchanged):
    rounding up keeps every ``|W| / scale`` within 127."""
    half = scale.astype(np.float16)
    half = np.where(half.astype(np.float32) < scale, np.nextafter(half, np.float16(np.inf)), half)
    normal = (scale >= _HALF.tiny) & (half <= _HALF.max)
    return np.where(normal, half.astype(np.float32), scale).astype(np.float32)


def _float_constant(
    graph: ir.Graph, names: FreshNames, stem: str, array: np.ndarray, half: bool, anchor: list[ir.Node]
) -> ir.Value:
    """``array`` (float32) as a graph value: a float16 initializer + ``Cast`` to float (appended to
    ``anchor``; ONNX Runtime folds it at load) if ``half``, else a float32 initializer."""
    if not half:
        return register_array(graph, names(stem), array)
    stored = register_array(graph, names(stem), array.astype(np.float16))
    cast = ir.node("Cast", [stored], attributes={"to": ir.DataType.FLOAT}, name=names(f"{stem}c"))
    cast.outputs[0].name = names(f"{stem}f")
    anchor.append(cast)
    return cast.outputs[0]


def _axis_for(value: ir.Value, rank: int) -> int | None:
    """The per-channel axis all consumers agree on, or None for per-tensor."""
    axes: set[int | None] = set()
    for use in value.uses():
        node, index = use.node, use.idx
        if node.op_type == "Conv" and index == 1:
            axes.add(0)
        elif node.op_type == "ConvTranspose" and index == 1:
            axes.add(1)
        elif node.op_type == "MatMul" and index == 1:
            axes.add(rank - 1)
        elif node.op_type == "Gemm" and index == 1:
            trans_b = node.attributes.get("transB")
            axes.add(0 if trans_b is not None and trans_b.as_int() else 1)
        elif node.op_type == "Gather" and index == 0:
            axis = node.attributes.get("axis")
            axes.add(1 if axis is None or axis.as_int() == 0 else None)  # rows are gathered: scale per column
        else:
            axes.add(None)
    return axes.pop() if len(axes) == 1 else None


def _weight_slot(node: ir.Node, index: int) -> bool:
    """Whether input ``index`` of ``node`` is a layer's weight (not a bias, a scale or an activation)."""
    if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
        return index == 1
    return node.op_type == "Gather" and index == 0


def _gathered_rows(graph: ir.Graph, value: ir.Value, axis: int | None) -> bool:
    """An embedding table: only gathered by rows (of the main graph, into non-output values)."""
    return axis == 1 and all(
        use.node.op_type == "Gather"
        and use.idx == 0
        and use.node.graph is graph
        and not use.node.outputs[0].is_graph_output()
        for use in value.uses()
    )


def _dequantize_rows(
    graph: ir.Graph, gather: ir.Node, q_value: ir.Value, s_value: ir.Value, names: FreshNames
) -> None:
    """``Gather(table)`` → ``Mul(Cast(Gather(table_int8)), scale)``: only the gathered rows are
    dequantized, at run time, so the fp32 table never exists (a folded Cast+Mul would hold it)."""
    rows = gather.outputs[0]
    uses = list(rows.uses())
    gather.replace_input_with(0, q_value)
    cast = ir.node("Cast", [rows], attributes={"to": ir.DataType.FLOAT}, name=names("dqc"))
    mul = ir.node("Mul", [cast.outputs[0], s_value], name=names("dq"))
    cast.outputs[0].name = names("c")
    mul.outputs[0].name = names("r")
    mul.outputs[0].shape = rows.shape
    mul.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    rows.type = ir.TensorType(ir.DataType.INT8)
    for use in uses:
        use.node.replace_input_with(use.idx, mul.outputs[0])
    graph.insert_after(gather, [cast, mul])


def quantize_array(weights: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scales): symmetric, per ``axis`` or per tensor; scales rounded up to
    float16 values where they are normal float16, so they store as float16 exactly."""
    if axis is None:
        scale = np.asarray(np.abs(weights).max() / 127.0, dtype=np.float32)
        bshape: tuple[int, ...] = ()
    else:
        reduce = tuple(i for i in range(weights.ndim) if i != axis)
        scale = (np.abs(weights).max(axis=reduce) / 127.0).astype(np.float32)
        bshape = tuple(-1 if i == axis else 1 for i in range(weights.ndim))
    scale = _half_rounded_up(np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32))
    scaled = weights / (scale.reshape(bshape) if bshape else scale)
    return np.clip(np.rint(scaled), -127, 127).astype(np.int8), scale


def storage_quantize(
    model: ir.Model,
    *,
    exclude: frozenset[str] = frozenset(),
    include: frozenset[str] | None = None,
    weight_slots_only: bool = False,
    rounded: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
    """Rewrite ``model`` in place; returns the names of the weights stored as int8.

    ``exclude`` names nodes whose weights stay float (a weight shared with one of them stays too);
    ``include``, when given, limits the rewrite to weights read only by those nodes;
    ``weight_slots_only`` limits it to tensors read only as the weight of a Conv/ConvTranspose/
    MatMul/Gemm or as an embedding table (Gather), never biases or other operands: used after
    another quantizer has left float weights behind, beside its own float biases and scales;
    ``rounded`` gives int8 values for main-graph weights computed elsewhere (``gptq.py``, same
    scales) to store instead of rounding to nearest.
    """
    quantized: list[str] = []
    halved = 0
    names = FreshNames(model)
    for graph in model.graphs():
        outputs = {id(v) for v in graph.outputs}
        inputs = {id(v) for v in graph.inputs}
        for name, value in list(graph.initializers.items()):
            tensor = value.const_value
            if (
                tensor is None
                or tensor.dtype != ir.DataType.FLOAT
                or id(value) in outputs
                or id(value) in inputs
                or not value.uses()
                or any(use.node.name in exclude for use in value.uses())
                or (include is not None and any(use.node.name not in include for use in value.uses()))
            ):
                continue
            layer_weight = all(_weight_slot(use.node, use.idx) for use in value.uses())
            if tensor.size < (MIN_WEIGHT_ELEMENTS if layer_weight else MIN_ELEMENTS) or (
                weight_slots_only and not layer_weight
            ):
                bias = tensor.numpy()
                if (
                    not weight_slots_only
                    and all(_bias_slot(use.node, use.idx) for use in value.uses())
                    and _fits_half(bias)
                ):
                    added: list[ir.Node] = []
                    _substitute(graph, value, _float_constant(graph, names, "b", bias, True, added), added)
                    halved += 1
                continue
            weights = tensor.numpy()
            axis = _axis_for(value, weights.ndim)
            q, scale = quantize_array(weights, axis)
            if rounded and graph is model.graph and name in rounded and rounded[name].shape == q.shape:
                q = rounded[name]
            scale = (
                scale.reshape([-1 if i == axis else 1 for i in range(q.ndim)]) if axis is not None else scale
            )
            added = []
            half = _fits_half(scale) and _exact_half(scale)
            s_value = _float_constant(graph, names, "s", scale, half, added)
            if _gathered_rows(graph, value, axis):
                graph.initializers.pop(name)
                q_value = register_array(graph, name, q)  # the table keeps its name, stored int8
                for use in list(value.uses()):
                    _dequantize_rows(graph, use.node, q_value, s_value, names)
                _prepend(graph, added)
                quantized.append(name)
                continue
            q_value = register_array(graph, names("q"), q)
            cast = ir.node("Cast", [q_value], attributes={"to": ir.DataType.FLOAT}, name=names("dqc"))
            cast.outputs[0].name = names("c")
            node = ir.node("Mul", [cast.outputs[0], s_value], name=names("dq"))
            node.outputs[0].shape = ir.Shape(weights.shape)
            node.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
            _substitute(graph, value, node.outputs[0], [*added, cast, node])
            quantized.append(name)
    logger.info("storage int8: %d weights; float16: %d biases", len(quantized), halved)
    return quantized


def _bias_slot(node: ir.Node, index: int) -> bool:
    """Whether input ``index`` of ``node`` is a layer's bias."""
    return node.op_type in ("Conv", "ConvTranspose", "Gemm") and index == 2


def _prepend(graph: ir.Graph, nodes: list[ir.Node]) -> None:
    if not nodes:
        return
    if len(graph) > 0:
        graph.insert_before(next(iter(graph)), nodes)
    else:
        graph.extend(nodes)


def _substitute(graph: ir.Graph, value: ir.Value, replacement: ir.Value, nodes: list[ir.Node]) -> None:
    """Replace the initializer ``value`` by ``replacement`` (computed by ``nodes``, put first in the
    graph), which takes over its name: the layers still read the tensor they read before."""
    name = value.name
    value.replace_all_uses_with(replacement)
    graph.initializers.pop(name)
    replacement.name = name
    _prepend(graph, nodes)
