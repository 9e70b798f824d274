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

GPTQ rounds each column once, in order, and never revisits it. ``_refine`` then runs coordinate
descent on the same objective (QuantEase, Behdin et al. 2023): each weight in turn moves to the
integer that minimises ``tr((W − sQ) H (W − sQ)ᵀ)`` with every other weight fixed (``H`` damped as
GPTQ's is: undamped, the held-out error fell less, PP-OCRv4 rec 0.234 against 0.224 of nearest
rounding's), sweeping until no integer changes or ``SWEEPS`` times. Each move lowers that objective,
so the result is never worse than GPTQ's on it. It costs about one matrix product with ``H`` per
sweep, as one AdaRound iteration does; AdaRound's soft-rounding descent (tried per layer on PP-OCRv4
rec, 500 Adam steps, three λ) stayed above GPTQ's error on every layer, 0.4-1.1x nearest rounding's
against GPTQ's 0.02-0.29x.

Layers: MatMul with a constant 2-D weight ``[I, O]`` (x: rows of the input's last axis), 2-D Conv
with ``group=1`` (x: im2col patches, ``modelcrunch.passes.im2col``) and depthwise 2-D Conv (one
``kH·kW`` problem per channel). Others (grouped Convs, ``auto_pad=SAME_*``, shared weights, Gemm,
ConvTranspose, embedding tables) keep RTN. ``H`` comes from the float model's activations on the
first ``SAMPLES`` calibration samples, at most ``MAX_ROWS`` input rows per sample and layer (a
fixed-seed subsample) and ``CHUNK`` layers captured per session run, so memory stays bounded.

On PP-OCRv4 rec (int8 storage of every weight): per-step top-1 agreement 99.1 % → 99.7 %, output
cosine 0.9963 → 0.9990, lines read identically 93 % → 96.5 %.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.channels import attr_value
from modelcrunch.passes.im2col import im2col
from modelcrunch.passes.quantize.storage import quantize_array
from modelcrunch.runtime.capture import with_activations

logger = logging.getLogger(__name__)

MAX_ROWS = 2048
DEPTHWISE_ROWS = 1024  # ... for a depthwise Conv, whose H is only kH·kW square
SAMPLES = 32  # calibration samples H is measured on
CHUNK = 32
DAMP = 0.01
BLOCK = 128  # columns rounded between two updates of the rest of W (GPTQ's lazy batching)
SWEEPS = 4  # coordinate-descent passes over every weight after GPTQ (``_refine``); 0: GPTQ alone
MAX_COLUMNS = 8192  # I above this (huge im2col or MatMul inputs): RTN, H would not be worth its memory


@dataclass(frozen=True)
class _Layer:
    node: ir.Node
    kind: str  # "matmul" | "conv" | "depthwise"

    @property
    def weight(self) -> str:  # initializer name
        return self.node.inputs[1].name

    @property
    def activation(self) -> str:  # the layer's input tensor
        return self.node.inputs[0].name


def _layer(node: ir.Node) -> _Layer | None:
    if node.op_type not in ("MatMul", "Conv") or len(node.inputs) < 2 or node.inputs[0] is None:
        return None
    weight = node.inputs[1]
    if weight is None or weight.const_value is None or weight.is_graph_input() or len(weight.uses()) != 1:
        return None
    shape = weight.const_value.shape
    if node.op_type == "MatMul":
        return _Layer(node, "matmul") if len(shape) == 2 and shape[0] <= MAX_COLUMNS else None
    if len(shape) != 4 or attr_value(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None
    group = attr_value(node, "group", 1)
    if group == 1 and shape[1] * shape[2] * shape[3] <= MAX_COLUMNS:
        return _Layer(node, "conv")
    return _Layer(node, "depthwise") if shape[1] == 1 and group == shape[0] else None


def _accumulate(
    layer: _Layer, x: np.ndarray, hessian: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    if layer.kind == "matmul":
        rows = x.reshape(-1, x.shape[-1]).astype(np.float32, copy=False)
        if len(rows) > MAX_ROWS:
            rows = rows[np.sort(rng.choice(len(rows), MAX_ROWS, replace=False))]
        update = rows.T @ rows
    else:
        kernel = tuple(layer.node.inputs[1].const_value.shape[2:])
        limit = MAX_ROWS if layer.kind == "conv" else DEPTHWISE_ROWS
        rows = im2col(x, layer.node, kernel, rows=limit, rng=rng).astype(np.float32, copy=False)
        if layer.kind == "conv":
            update = rows.T @ rows
        else:  # depthwise: one kH·kW problem per channel, [C, rows, K]
            patches = rows.reshape(len(rows), x.shape[1], -1).transpose(1, 0, 2)
            update = np.matmul(patches.transpose(0, 2, 1), patches)  # batched BLAS (einsum: 20x slower)
    if hessian is None:
        return update.astype(np.float64)
    hessian += update
    return hessian


def layer_hessians(
    model: ir.Model,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    threads: int | None = None,
    kinds: frozenset[str] | None = None,
) -> dict[str, tuple[_Layer, np.ndarray]]:
    """weight name → (layer, ``Σ x xᵀ``) for every layer GPTQ handles (of ``kinds`` only, when
    given), on the float ``model``."""
    layers = [
        layer
        for node in model.graph
        if (layer := _layer(node)) is not None and (kinds is None or layer.kind in kinds)
    ]
    if not layers or not feeds:
        return {}
    rng = np.random.default_rng(0)
    found: dict[str, tuple[_Layer, np.ndarray]] = {}
    for start in range(0, len(layers), CHUNK):
        chunk = layers[start : start + CHUNK]
        sums: dict[str, np.ndarray | None] = {layer.weight: None for layer in chunk}
        names = {layer.activation for layer in chunk}
        for values in with_activations(model, names, feeds[:SAMPLES], threads=threads):
            for layer in chunk:
                sums[layer.weight] = _accumulate(layer, values[layer.activation], sums[layer.weight], rng)
        found.update({layer.weight: (layer, sums[layer.weight]) for layer in chunk})
    return found


def _gptq(
    weights: np.ndarray, hessian: np.ndarray, scale: np.ndarray, lo: int = -127, hi: int = 127
) -> np.ndarray:
    """Integers in ``[lo, hi]`` of ``weights`` ``[B, O, I]`` with scales ``[B, O]`` (or ``[B, O, I]``,
    one per weight: block-wise scales), each batch's rounding error spread through its ``H``
    ``[B, I, I]`` (B > 1: the channels of a depthwise Conv), then refined (``_refine``); rounded to
    nearest where ``H`` cannot be inverted."""
    scale = scale if scale.ndim == 3 else np.broadcast_to(scale[..., None], weights.shape)
    q = _columns(weights, hessian, scale, lo, hi)
    if q is None:
        return np.clip(np.rint(weights / scale), lo, hi).astype(np.int8)
    return _refine(weights, hessian, scale, q, lo, hi)  # GPTQ's own copies of W and H are freed by now


def _columns(
    weights: np.ndarray, hessian: np.ndarray, scale: np.ndarray, lo: int, hi: int
) -> np.ndarray | None:
    """GPTQ proper: the columns rounded in turn (``scale`` ``[B, O, I]``); None when ``H`` is singular."""
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
        return None
    q = np.zeros(w.shape, dtype=np.int8)
    columns = w.shape[2]
    for start in range(0, columns, BLOCK):  # lazy batch updates: the rest of W once per block
        end = min(start + BLOCK, columns)
        block = w[:, :, start:end]
        errors = np.zeros_like(block)
        for i in range(end - start):
            step = scale[:, :, start + i]
            column = np.clip(np.rint(block[:, :, i] / step), lo, hi)
            q[:, :, start + i] = column
            errors[:, :, i] = (block[:, :, i] - column * step) / upper[:, start + i, start + i, None]
            block[:, :, i + 1 :] -= errors[:, :, i, None] * upper[:, None, start + i, start + i + 1 : end]
        w[:, :, end:] -= np.matmul(errors, upper[:, start:end, end:])
    return q


def _refine(
    weights: np.ndarray, hessian: np.ndarray, scale: np.ndarray, q: np.ndarray, lo: int, hi: int
) -> np.ndarray:
    """``q`` improved by coordinate descent on ``tr(D H Dᵀ)``, ``D = W − s·q`` (all ``[B, O, I]``,
    ``H`` ``[B, I, I]``, damped by ``DAMP``). Moving ``q_j`` by ``δ`` changes it by
    ``s_j δ (s_j δ H_jj − 2 g_j)``, ``g = D H``, so the best integer move is ``round(g_j / (s_j H_jj))``.
    ``g`` is kept current within a block of ``BLOCK`` columns and brought up to date for the rest once
    per block."""
    ints = q.astype(np.float64)
    h = hessian.astype(np.float64)
    diag = np.einsum("bii->bi", h)  # a view: writes go to h
    diag += DAMP * diag.mean(axis=1, keepdims=True)
    grad = np.matmul(weights - scale * ints, h)
    columns = weights.shape[2]
    for _ in range(SWEEPS):
        moved = False
        for start in range(0, columns, BLOCK):
            end = min(start + BLOCK, columns)
            block = grad[:, :, start:end].copy()
            shifts = np.zeros(block.shape)
            for i in range(end - start):
                j = start + i
                curvature = scale[:, :, j] * diag[:, j, None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    move = np.where(curvature > 0, np.rint(block[:, :, i] / curvature), 0.0)
                target = np.clip(ints[:, :, j] + move, lo, hi)
                move = target - ints[:, :, j]
                if not move.any():
                    continue
                moved = True
                ints[:, :, j] = target
                shifts[:, :, i] = scale[:, :, j] * move
                block -= shifts[:, :, i, None] * h[:, None, j, start:end]
            grad[:, :, start:end] = block
            if shifts.any():  # later sweeps leave most blocks as they are
                grad[:, :, :start] -= np.matmul(shifts, h[:, start:end, :start])
                grad[:, :, end:] -= np.matmul(shifts, h[:, start:end, end:])
        if not moved:
            break
    return ints.astype(np.int8)


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


def gptq_blocks(
    weights: np.ndarray, hessian: np.ndarray, scales: np.ndarray, block: int, bits: int
) -> np.ndarray:
    """Signed ``bits``-bit values ``[N, K]`` of a MatMul's ``weights`` ``[K, N]`` under block-wise
    scales ``scales`` ``[N, ceil(K / block)]`` (MatMulNBits' symmetric layout: each column's ``block``
    consecutive K entries share a scale), rounded by GPTQ through the layer's ``H`` ``[K, K]``."""
    k = weights.shape[0]
    per_weight = np.repeat(scales.astype(np.float64), block, axis=1)[:, :k]
    half = 1 << (bits - 1)
    return _gptq(weights.T[None], hessian[None], per_weight[None], -half, half - 1)[0]


def pack_blocks(values: np.ndarray, block: int, bits: int) -> np.ndarray:
    """MatMulNBits' ``B`` ``[N, blocks, block * bits / 8]`` (uint8) of signed values ``[N, K]``:
    offset by the implicit zero point ``2^(bits-1)``, K padded to whole blocks with zero bytes (as
    ONNX Runtime's quantizer pads; the kernel reads K entries only), two 4-bit values per byte, the
    first in the low nibble."""
    n, k = values.shape
    blocks = -(-k // block)
    unsigned = np.zeros((n, blocks * block), dtype=np.uint8)
    unsigned[:, :k] = values.astype(np.int16) + (1 << (bits - 1))
    if bits == 8:
        return unsigned.reshape(n, blocks, block)
    pairs = unsigned.reshape(n, blocks, block // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).astype(np.uint8)


def unpack_blocks(packed: np.ndarray, k: int, bits: int) -> np.ndarray:
    """The signed values ``[N, K]`` of MatMulNBits' ``B`` (``pack_blocks`` undone)."""
    n = packed.shape[0]
    if bits == 8:
        unsigned = packed.reshape(n, -1)
    else:
        unsigned = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1)
    return unsigned[:, :k].astype(np.int16) - (1 << (bits - 1))


def matmul_hessians(
    model: ir.Model, feeds: Sequence[dict[str, np.ndarray]], *, threads: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The float MatMuls' output name → (weights ``[K, N]``, ``H``): what ``weight_only.apply_gptq``
    re-rounds MatMulNBits weights with."""
    found = {}
    matmuls = layer_hessians(model, feeds, threads=threads, kinds=frozenset({"matmul"}))
    for name, (layer, hessian) in matmuls.items():  # Conv Hessians would be measured for nothing
        weights = model.graph.initializers[name].const_value.numpy()
        found[layer.node.outputs[0].name] = (weights, hessian)
    return found
