"""Static int8: calibrated activation ranges + int8 weights, via ``onnxruntime.quantization``.

Rewrites each selected node ``y = op(x, W)`` into ``y = op(DQ(Q(x)), DQ(W_q))`` (QDQ format; ORT
fuses the groups into QLinearConv / QLinearMatMul kernels) or into QOperator nodes. Per-channel
weights: ``W_q[c] = round(W[c] / s_c)``, ``s_c = max|W[c]| / 127`` (``/ 63`` with reduce_range,
the default on x86 CPUs without VNNI, whose u8s8 kernels saturate otherwise: see
``config.u8s8_saturates``). Activation ranges come from the
calibration method (minmax, entropy, percentile) over the calibration feeds; they are computed
once and cached in the caller's temporary folder, so repeated quantizations (sensitivity
analysis) reuse them.

Limits: ORT's QDQ tool does not quantize inside If/Loop/Scan bodies (reported as excluded); only
``op_types`` are quantized (default: ops with int8 kernels on the CPU provider).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from onnxruntime import quantization as ortq

from modelcrunch.passes.quantize.calibration import FeedReader
from modelcrunch.passes.quantize.config import CalibrationMethod, Precision, QuantFormat, QuantizeOptions

logger = logging.getLogger(__name__)

_METHODS = {
    CalibrationMethod.MINMAX: ortq.CalibrationMethod.MinMax,
    CalibrationMethod.ENTROPY: ortq.CalibrationMethod.Entropy,
    CalibrationMethod.PERCENTILE: ortq.CalibrationMethod.Percentile,
}


def _extra_options(options: QuantizeOptions) -> dict[str, object]:
    extra: dict[str, object] = {"WeightSymmetric": True}
    if options.precision is Precision.S8S8:
        extra["ActivationSymmetric"] = True
    if options.calibration_method is CalibrationMethod.PERCENTILE:
        extra["CalibPercentile"] = 99.999
    if options.calibration_method is CalibrationMethod.ENTROPY:
        extra["CalibTensorRangeSymmetric"] = False
    return extra


def quantize_static_model(
    src: Path,
    dst: Path,
    *,
    options: QuantizeOptions,
    feeds: Sequence[dict[str, np.ndarray]],
    op_types: Sequence[str],
    per_channel: bool,
    cache: Path,
    nodes_to_quantize: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] = (),
) -> None:
    """Write the statically quantized ``src`` to ``dst``; calibrates on the first call per ``cache``."""
    extra = _extra_options(options)
    try:
        _run(
            src, dst, options, feeds, op_types, per_channel, cache, nodes_to_quantize, nodes_to_exclude, extra
        )
    except ValueError as exc:
        # ORT's int32-bias weight-scale adjustment crashes on some bias layouts (array truth value);
        # the adjustment is an accuracy nicety, so retry without it.
        logger.info("quantize_static failed (%s); retrying without the int32-bias scale adjustment", exc)
        extra["QDQDisableWeightAdjustForInt32Bias"] = True
        _run(
            src, dst, options, feeds, op_types, per_channel, cache, nodes_to_quantize, nodes_to_exclude, extra
        )


def _run(src, dst, options, feeds, op_types, per_channel, cache, nodes_to_quantize, nodes_to_exclude, extra):  # noqa: ANN001
    activation = ortq.QuantType.QUInt8 if options.precision is Precision.U8S8 else ortq.QuantType.QInt8
    fmt = ortq.QuantFormat.QDQ if options.quant_format is QuantFormat.QDQ else ortq.QuantFormat.QOperator
    ortq.quantize_static(
        str(src),
        str(dst),
        None if cache.is_file() else FeedReader(feeds),
        quant_format=fmt,
        op_types_to_quantize=list(op_types),
        per_channel=per_channel,
        reduce_range=options.effective_reduce_range,
        activation_type=activation,
        weight_type=ortq.QuantType.QInt8,
        nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize is not None else None,
        nodes_to_exclude=list(nodes_to_exclude),
        calibrate_method=_METHODS[options.calibration_method],
        extra_options=extra,
        calibration_cache_path=str(cache),
    )
