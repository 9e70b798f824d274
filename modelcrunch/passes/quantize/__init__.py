"""Quantization: int8 (dynamic, static), weight-only MatMulNBits, storage-only int8 and fp16,
built on ``onnxruntime.quantization`` with pre-processing, an accuracy guard and a speed guard."""

from modelcrunch.passes.quantize import _ort  # noqa: F401  (first: tames ORT's logging set-up)
from modelcrunch.passes.quantize.config import (
    CalibrationMethod,
    Mode,
    Precision,
    QuantFormat,
    QuantizeOptions,
    WeightAlgorithm,
)
from modelcrunch.passes.quantize.pipeline import quantize_model
from modelcrunch.passes.quantize.report import QuantizeReport

__all__ = [
    "CalibrationMethod",
    "Mode",
    "Precision",
    "QuantFormat",
    "QuantizeOptions",
    "QuantizeReport",
    "WeightAlgorithm",
    "quantize_model",
]
