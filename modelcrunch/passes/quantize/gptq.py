"""Error-compensating rounding of int8 weights (GPTQ, Frantar et al. 2022) for the storage form.

A layer computes ``y = W x`` (``W``: ``[O, I]``, one row per output channel). Rounding each weight to
its nearest int8 step (RTN) minimises ``‖W − Q‖²``; what matters is ``E‖(W − Q) x‖²`` over the
layer's real inputs. GPTQ rounds the input columns one at a time and spreads each column's
rounding error over the columns not rounded yet, through the Cholesky factor ``U`` of ``H⁻¹``,
``H = E[x xᵀ]`` (the layer's inputs on the calibration data):

    q_i = round(w_i / s) · s;   W[:, j>i] −= ((w_i − q_i) / U_ii) · U_i,j

Scales stay RTN's (symmetric per output channel, ``max|W_o| / 127``, ``storage.quantize_array``),
so the stored form and its dequantization are unchanged: only which integer a weight gets differs.
``H`` gets 1 % of its mean diagonal added (the paper's damping); inputs that are always zero get
zero weight.

Layers: MatMul with a constant 2-D weight ``[I, O]`` (x: rows of the input's last axis), 2-D Conv
with ``group=1`` (x: im2col patches, with strides, pads and dilations) and depthwise 2-D Conv (one
``kH·kW`` problem per channel). Others (grouped Convs, ``auto_pad=SAME_*``, shared weights, Gemm,
ConvTranspose, embedding tables) keep RTN. ``H`` comes from the float model's activations on the
first ``SAMPLES`` calibration samples, at most ``MAX_ROWS`` input rows per sample and layer (a
fixed-seed subsample) and ``CHUNK`` layers captured per session run, so memory stays bounded.

On PP-OCRv4 rec (int8 storage of every weight): per-step top-1 agreement 99.1 % → 99.4 % and
line-string agreement 93 % → 97 %; GPTQ on its 1x1 Convs alone takes them from 99.15 % to 99.8 %.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from modelcrunch.passes.quantize.storage import quantize_array

logger = logging.getLogger(__name__)

MAX_ROWS = 4096
DEPTHWISE_ROWS = 1024  # ... for a depthwise Conv, whose H is only kH·kW square
SAMPLES = 32  # calibration samples H is measured on
CHUNK = 32
DAMP = 0.01
BLOCK = 128  # columns rounded between two updates of the rest of W (GPTQ's lazy batching)
MAX_COLUMNS = 8192  # I above this (huge im2col or MatMul inputs): RTN, H would not be worth its memory


@dataclass(frozen=True)
class _Layer:
    node: str
    weight: str  # initializer name
    kind: str  # "matmul" | "conv" | "depthwise"
    activation: str  # the layer's input tensor
    attrs: dict


def _ints(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else default


def _layers(model: ir.Model) -> list[_Layer]:
    found = []
    for node in model.graph:
        if node.op_type not in ("MatMul", "Conv") or len(node.inputs) < 2 or node.inputs[0] is None:
            continue
        weight = node.inputs[1]
        if weight is None or weight.const_value is None or weight.is_graph_input() or len(weight.uses()) != 1:
            continue
        shape = weight.const_value.shape
        if node.op_type == "MatMul":
            if len(shape) == 2 and shape[0] <= MAX_COLUMNS:
                found.append(_Layer(node.name, weight.name, "matmul", node.inputs[0].name, {}))
            continue
        auto_pad = node.attributes.get("auto_pad")
        if len(shape) != 4 or (auto_pad is not None and auto_pad.as_string() not in ("NOTSET", "VALID")):
            continue
        group = node.attributes.get("group")
        group = group.as_int() if group is not None else 1
        kernel = list(shape[2:])
        attrs = {
            "kernel": kernel,
            "strides": _ints(node, "strides", [1, 1]),
            "pads": _ints(node, "pads", [0, 0, 0, 0]),
            "dilations": _ints(node, "dilations", [1, 1]),
        }
        if group == 1 and shape[1] * kernel[0] * kernel[1] <= MAX_COLUMNS:
            found.append(_Layer(node.name, weight.name, "conv", node.inputs[0].name, attrs))
        elif shape[1] == 1 and group == shape[0]:
            found.append(_Layer(node.name, weight.name, "depthwise", node.inputs[0].name, attrs))
    return found


def _patches(x: np.ndarray, attrs: dict, rng: np.random.Generator, rows: int = MAX_ROWS) -> np.ndarray:
    """im2col of ``x`` ``[N, C, H, W]`` at most ``rows`` output positions: ``[C, P, kH·kW]``,
    in the weight's (C, kH, kW) order (positions drawn with a fixed seed)."""
    top, left, bottom, right = attrs["pads"]
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["strides"], attrs["dilations"]
    if (kh, kw) == (1, 1) and not any(attrs["pads"]):
        windows = x[:, :, ::sh, ::sw, None, None]
    else:
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
        windows = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    n, c, oh, ow = windows.shape[:4]
    flat = (
        windows.transpose(1, 0, 2, 3, 4, 5).reshape(c, n * oh * ow, kh * kw) if n * oh * ow <= rows else None
    )
    if flat is None:  # sample positions before copying the windows
        keep = np.sort(rng.choice(n * oh * ow, rows, replace=False))
        b, i, j = np.unravel_index(keep, (n, oh, ow))
        flat = windows[b, :, i, j].transpose(1, 0, 2, 3).reshape(c, rows, kh * kw)
    return flat.astype(np.float32, copy=False)


def _accumulate(
    layer: _Layer, x: np.ndarray, hessian: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    if layer.kind == "matmul":
        rows = x.reshape(-1, x.shape[-1]).astype(np.float32, copy=False)
        if len(rows) > MAX_ROWS:
            rows = rows[np.sort(rng.choice(len(rows), MAX_ROWS, replace=False))]
        update = rows.T @ rows
    elif layer.kind == "conv":
        patches = _patches(x, layer.attrs, rng)  # [C, P, K]
        rows = patches.transpose(1, 0, 2).reshape(patches.shape[1], -1)
        update = rows.T @ rows
    else:  # depthwise: one K x K problem per channel
        patches = _patches(x, layer.attrs, rng, DEPTHWISE_ROWS)
        update = np.matmul(patches.transpose(0, 2, 1), patches)  # batched BLAS (einsum: 20x slower)
    if hessian is None:
        return update.astype(np.float64)
    hessian += update
    return hessian


def layer_hessians(
    model: ir.Model, feeds: Sequence[dict[str, np.ndarray]], *, threads: int | None = None
) -> dict[str, tuple[_Layer, np.ndarray]]:
    """weight name → (layer, ``Σ x xᵀ``) for every layer GPTQ handles, on the float ``model``."""
    import onnxruntime as ort

    layers = _layers(model)
    if not layers or not feeds:
        return {}
    base = ir.to_proto(model)
    known = {o.name for o in base.graph.output}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    rng = np.random.default_rng(0)
    found: dict[str, tuple[_Layer, np.ndarray]] = {}
    for start in range(0, len(layers), CHUNK):
        chunk = layers[start : start + CHUNK]
        proto = onnx.ModelProto()
        proto.CopyFrom(base)
        inputs = set(feeds[0])
        names = sorted({layer.activation for layer in chunk} - known - inputs)
        proto.graph.output.extend(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names
        )
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        wanted = [*names, *sorted({layer.activation for layer in chunk} & known - inputs)]
        sums: dict[str, np.ndarray | None] = {layer.weight: None for layer in chunk}
        for feed in feeds[:SAMPLES]:
            outputs = session.run(wanted, feed) if wanted else []  # run([]) would return every output
            values = {**feed, **dict(zip(wanted, outputs, strict=True))}
            for layer in chunk:
                sums[layer.weight] = _accumulate(layer, values[layer.activation], sums[layer.weight], rng)
        found.update({layer.weight: (layer, sums[layer.weight]) for layer in chunk})
    return found


def _gptq(weights: np.ndarray, hessian: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int8 of ``weights`` ``[B, O, I]`` with scales ``[B, O]``, each batch's rounding error spread
    through its ``H`` ``[B, I, I]`` (B > 1: the channels of a depthwise Conv)."""
    w = weights.astype(np.float64)
    h = hessian.copy()
    diag = np.einsum("bii->bi", h)  # a view: writes go to h
    dead = diag <= 0
    diag[dead] = 1.0
    w[np.broadcast_to(dead[:, None, :], w.shape)] = 0.0
    diag += DAMP * diag.mean(axis=1, keepdims=True)
    try:
        upper = np.linalg.cholesky(np.linalg.inv(h)).transpose(0, 2, 1)
    except np.linalg.LinAlgError:
        return np.clip(np.rint(weights / scale[..., None]), -127, 127).astype(np.int8)
    q = np.zeros(w.shape, dtype=np.int8)
    columns = w.shape[2]
    for start in range(0, columns, BLOCK):  # lazy batch updates: the rest of W once per block
        end = min(start + BLOCK, columns)
        block = w[:, :, start:end]
        errors = np.zeros_like(block)
        for i in range(end - start):
            column = np.clip(np.rint(block[:, :, i] / scale), -127, 127)
            q[:, :, start + i] = column
            errors[:, :, i] = (block[:, :, i] - column * scale) / upper[:, start + i, start + i, None]
            block[:, :, i + 1 :] -= errors[:, :, i, None] * upper[:, None, start + i, start + i + 1 : end]
        w[:, :, end:] -= np.matmul(errors, upper[:, start:end, end:])
    return q


def gptq_int8(weights: np.ndarray, layer: _Layer, hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, scales) of ``weights`` as ``storage.quantize_array`` lays them out."""
    axis = weights.ndim - 1 if layer.kind == "matmul" else 0
    rtn, scale = quantize_array(weights, axis)
    if layer.kind == "matmul":  # [I, O]: rows are the output columns
        return _gptq(weights.T[None], hessian[None], scale[None])[0].T.copy(), scale
    if layer.kind == "conv":
        rows = weights.reshape(1, weights.shape[0], -1)
        return _gptq(rows, hessian[None], scale[None]).reshape(weights.shape), scale
    rows = weights.reshape(weights.shape[0], 1, -1)  # depthwise: one row per channel
    return _gptq(rows, hessian, scale[:, None]).reshape(rtn.shape), scale


def gptq_weights(
    model: ir.Model, feeds: Sequence[dict[str, np.ndarray]], *, threads: int | None = None
) -> dict[str, np.ndarray]:
    """initializer name → its int8 values under GPTQ, for every layer of ``model`` it handles."""
    rounded = {}
    for name, (layer, hessian) in layer_hessians(model, feeds, threads=threads).items():
        weights = model.graph.initializers[name].const_value.numpy()
        rounded[name] = gptq_int8(weights, layer, hessian)[0]
    logger.info("GPTQ rounding for %d weights", len(rounded))
    return rounded
