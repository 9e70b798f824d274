"""Bias correction of statically quantized layers (Nagel et al. 2019, "Data-free quantization",
the empirical form on calibration data).

Rounding a layer's weights to int8 shifts its output's mean: with ``ΔW = W_q − W``, a layer computing
``y = W x + b`` gives ``E[y_q] − E[y] = ΔW E[x]`` per output channel. The shift passes through
every later layer and, on detectors and segmenters, moves score maps across their thresholds. It
is removed by folding ``−ΔW E[x]`` into the layer's bias.

``E[x]`` is the per-channel mean of the layer's input in the *float* model on the calibration
samples (for a Conv: over batch and positions, each kernel tap seeing the channel's mean; padding
is ignored). ``W_q`` is read back from the quantized model (its ``DequantizeLinear`` of the int8
weight), so the correction matches exactly what ONNX Runtime will compute. Layers: Conv (any
group count) and Gemm with a quantized constant weight and a bias, where the bias is an int32
``DequantizeLinear`` (QDQ; the integer is re-rounded on the same scale) or a float constant.
Layers without a bias are left alone: a float bias added to a QDQ Conv would stop ONNX Runtime
fusing it into QLinearConv.

The caller measures the corrected model and keeps it only where the task verdict is no worse
(``pipeline._bias_corrected``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper

from modelcrunch.runtime.capture import with_activations

logger = logging.getLogger(__name__)

#: Calibration samples the input means are read on.
SAMPLES = 32
#: The layers corrected.
LAYERS = ("Conv", "Gemm")


def input_means(float_model: Path, feeds: Sequence[dict]) -> dict[str, np.ndarray]:
    """Conv/Gemm node name → the per-channel mean of its first input in ``float_model`` on ``feeds``."""
    model = ir.load(str(float_model))
    wanted = {
        n.name: n.inputs[0].name for n in model.graph if n.op_type in LAYERS and n.inputs[0] is not None
    }
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for values in with_activations(model, set(wanted.values()), feeds[:SAMPLES]):
        for value in set(wanted.values()):
            x = np.asarray(values[value], dtype=np.float64)
            if x.ndim < 2:
                continue
            channels = x.reshape(x.shape[0], x.shape[1], -1) if x.ndim > 2 else x[:, :, None]
            sums[value] = sums.get(value, 0.0) + channels.sum(axis=(0, 2))
            counts[value] = counts.get(value, 0) + channels.shape[0] * channels.shape[2]
    return {node: sums[v] / counts[v] for node, v in wanted.items() if v in sums}


def correct(quantized: Path, float_model: Path, means: dict[str, np.ndarray], out: Path) -> list[str]:
    """Write ``quantized`` with its biases corrected to ``out``; the names of the corrected layers."""
    proto = onnx.load(str(quantized))
    reference = onnx.load(str(float_model))
    floats = {t.name: t for t in reference.graph.initializer}
    float_nodes = {n.name: n for n in reference.graph.node}
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    uses = Counter(name for n in graph.node for name in n.input)
    done = []
    for node in graph.node:
        if node.op_type not in LAYERS or node.name not in means or len(node.input) < 3:
            continue
        source = float_nodes.get(node.name)
        if source is None or len(source.input) < 2 or source.input[1] not in floats:
            continue
        w_q = _dequantized(producer.get(node.input[1]), inits)
        w = numpy_helper.to_array(floats[source.input[1]]).astype(np.float64)
        if w_q is None or w_q.shape != w.shape:
            continue
        shift = _shift(node, w_q - w, means[node.name])
        if shift is None or not np.all(np.isfinite(shift)):
            continue
        bias = producer.get(node.input[2])
        shared = uses[node.input[2]] > 1 or (bias is not None and uses[bias.input[0]] > 1)
        if not shared and _add_to_bias(node.input[2], -shift, producer, inits):  # a shared bias: left
            done.append(node.name)
    onnx.save(proto, str(out))
    return done


def _dequantized(dq: onnx.NodeProto | None, inits: dict) -> np.ndarray | None:
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
        return None
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    zero = (
        numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64)
        if len(dq.input) > 2 and dq.input[2] in inits
        else 0.0
    )
    if np.ndim(scale) == 1 and scale.size > 1:
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = np.reshape(zero, shape) if np.ndim(zero) else zero
    return (q - zero) * scale


def _shift(node: onnx.NodeProto, delta: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """``ΔW E[x]`` per output channel."""
    if node.op_type == "Gemm":
        attrs = {a.name: a for a in node.attribute}
        if attrs.get("transA") is not None and attrs["transA"].i:
            return None
        matrix = delta.T if attrs.get("transB") is not None and attrs["transB"].i else delta  # [K, N]
        return mean @ matrix if mean.shape[0] == matrix.shape[0] else None
    if delta.ndim < 3:
        return None
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    out_channels, per_group = delta.shape[0], delta.shape[1]
    if mean.shape[0] != per_group * group or out_channels % group:
        return None
    taps = delta.reshape(out_channels, per_group, -1).sum(axis=2)  # [O, Cin/g]
    inputs = mean.reshape(group, per_group)[np.arange(out_channels) // (out_channels // group)]  # [O, Cin/g]
    return (taps * inputs).sum(axis=1)


def _add_to_bias(name: str, change: np.ndarray, producer: dict, inits: dict) -> bool:
    dq = producer.get(name)
    if name in inits:  # a float bias
        bias = numpy_helper.to_array(inits[name])
        if bias.dtype.kind != "f" or bias.shape != change.shape:
            return False
        inits[name].CopyFrom(numpy_helper.from_array((bias + change).astype(bias.dtype), name))
        return True
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
        return False
    q = numpy_helper.to_array(inits[dq.input[0]])
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    if q.dtype != np.int32 or q.shape != change.shape or np.any(scale == 0):
        return False
    value = np.rint(q + change / scale)
    info = np.iinfo(np.int32)
    fixed = np.clip(value, info.min, info.max).astype(np.int32)
    inits[dq.input[0]].CopyFrom(numpy_helper.from_array(fixed, dq.input[0]))
    return True
