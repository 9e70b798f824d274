"""Input second moments ``G = Σ xᵀx`` of the layers to factorize, from calibration data.

The main graph is copied with every needed activation added as a graph output and run batch by
batch in ONNX Runtime (``runtime/capture.py``); each batch's rows are folded into a float64 ``G``
and dropped, so memory is one batch of activations plus one ``G`` per layer. Rows are:

* MatMul/Gemm: the activation flattened to (rows, K) (transposed first for Gemm ``transA``).
* Conv (2-D, group 1): the im2col patches (rows, C·kh·kw) at the conv's strides, pads (auto_pad
  resolved on the actual input size) and dilations; at most ``max_rows`` random rows per batch.

Layers inside subgraphs, N-D convs other than 2-D, and patches wider than ``MAX_GRAM`` get no ``G``
(they fall back to plain SVD and the report says so).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.channels import attr_value
from modelcrunch.data import Dataset
from modelcrunch.passes.factorize.layers import Layer
from modelcrunch.passes.im2col import im2col
from modelcrunch.runtime.capture import with_activations

logger = logging.getLogger(__name__)

MAX_GRAM = 8192


def gram_width(layer: Layer) -> int:
    return layer.matrix.shape[0] if layer.kind == "linear" else int(np.prod(layer.matrix.shape[1:]))


def calibration_problem(layer: Layer, model: ir.Model) -> str | None:
    """Why ``layer`` cannot get activation statistics, or None."""
    if layer.graph is not model.graph:
        return "inside a subgraph"
    if layer.kind == "conv" and layer.matrix.ndim != 4:
        return "only 2-D convs get patch statistics"
    if gram_width(layer) > MAX_GRAM:
        return f"input width {gram_width(layer)} > {MAX_GRAM}"
    return None


def _rows(layer: Layer, x: np.ndarray, rng: np.random.Generator, max_rows: int) -> np.ndarray:
    if layer.kind == "conv":
        return im2col(x, layer.node, tuple(layer.matrix.shape[2:]), rows=max_rows, rng=rng).astype(np.float64)
    if layer.op_type == "Gemm" and attr_value(layer.node, "transA", 0):
        rows = x.T
    else:
        rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] > max_rows:
        rows = rows[rng.choice(rows.shape[0], max_rows, replace=False)]
    return rows.astype(np.float64)


def collect_grams(
    model: ir.Model,
    layers: list[Layer],
    dataset: Dataset,
    *,
    batch_size: int = 16,
    max_rows: int = 8192,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """``G`` per layer key for the ``layers`` of the main graph (see the module docstring)."""
    layers = [layer for layer in layers if calibration_problem(layer, model) is None]
    if not layers:
        return {}
    graph_inputs = {v.name for v in model.graph.inputs}
    names = {layer.node.inputs[0].name for layer in layers}
    grams = {layer.key: np.zeros((gram_width(layer),) * 2) for layer in layers}
    rng = np.random.default_rng(0)
    total = math.ceil(len(dataset) / batch_size)
    batches = ({k: v for k, v in feeds.items() if k in graph_inputs} for feeds in dataset.batches(batch_size))
    for step, values in enumerate(with_activations(model, names, batches, optimization="basic"), start=1):
        for layer in layers:
            rows = _rows(layer, np.asarray(values[layer.node.inputs[0].name]), rng, max_rows)
            grams[layer.key] += rows.T @ rows
        if on_progress is not None:
            on_progress("calibrating", step, total)
    logger.info("collected input statistics for %d layers over %d samples", len(layers), len(dataset))
    return grams
