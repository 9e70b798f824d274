"""Already-optimized copies of the tiny test models: QDQ and QOperator int8 (ONNX Runtime's
quantizer), dynamic int8, float16 weights and a 4-bit MatMulNBits layer (modelcrunch's own)."""

from __future__ import annotations

from pathlib import Path

import models_prune as mp
import numpy as np
from models import mlp_proto, save_proto
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)


class _Reader(CalibrationDataReader):
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        rng = np.random.default_rng(0)
        self.feeds = iter([{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(8)])

    def get_next(self):  # noqa: ANN201 - ORT's interface
        return next(self.feeds, None)


def float_models(folder: Path) -> dict[str, Path]:
    """``conv`` (fixed batch 1, Conv-BN-Relu-Conv) and ``mlp`` (Gemm, MatMul), with data."""
    conv = mp.conv_bn_relu_conv()
    for value in [*conv.graph.input, *conv.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    rng = np.random.default_rng(1)
    np.savez(folder / "conv_data.npz", x=rng.standard_normal((8, 3, 8, 8)).astype(np.float32))
    np.savez(folder / "mlp_data.npz", input=rng.standard_normal((8, 16)).astype(np.float32))
    return {
        "conv": save_proto(conv, folder / "conv.onnx"),
        "mlp": save_proto(mlp_proto(), folder / "mlp.onnx"),
    }


def quantized_models(folder: Path) -> dict[str, Path]:
    """``{name: path}``: conv_qdq, conv_qop, mlp_qdq, mlp_dynamic (all int8, no float layer left)."""
    floats = float_models(folder)
    out = {name: folder / f"{name}.onnx" for name in ("conv_qdq", "conv_qop", "mlp_qdq", "mlp_dynamic")}
    conv_shape, mlp_shape = (1, 3, 8, 8), (1, 16)
    quantize_static(floats["conv"], out["conv_qdq"], _Reader("x", conv_shape), quant_format=QuantFormat.QDQ,
                    per_channel=True)  # fmt: skip
    quantize_static(
        floats["conv"], out["conv_qop"], _Reader("x", conv_shape), quant_format=QuantFormat.QOperator
    )
    quantize_static(floats["mlp"], out["mlp_qdq"], _Reader("input", mlp_shape), quant_format=QuantFormat.QDQ)
    quantize_dynamic(floats["mlp"], out["mlp_dynamic"], weight_type=QuantType.QInt8)
    return out


def data_for(name: str, folder: Path) -> Path:
    return folder / f"{name.split('_')[0]}_data.npz"
