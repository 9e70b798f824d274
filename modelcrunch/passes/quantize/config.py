"""Typed options of ``modelcrunch quantize`` (no string-keyed dicts cross the library boundary)."""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from modelcrunch.errors import ModelcrunchError
from modelcrunch.runtime.judge import Targets


class Mode(str, Enum):
    AUTO = "auto"
    DYNAMIC = "dynamic"  # int8 weights, activations quantized at run time
    STATIC = "static"  # calibrated int8 activations and weights (QDQ or QOperator)
    WEIGHT_ONLY = "weight-only"  # MatMulNBits block-wise int4/int8 (MatMul, embedding Gather)
    STORAGE = "storage"  # int8 weights dequantized at load time, fp32 compute (~4x smaller, same speed)
    FP16 = "fp16"  # float16 weights and compute, fp32 I/O, overflow-prone ops kept fp32
    BF16 = "bf16"  # bfloat16 weights cast to fp32 at load (~2x smaller, fp32 speed): no bf16 CPU kernels


class CalibrationMethod(str, Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Precision(str, Enum):
    U8S8 = "u8s8"  # uint8 activations, int8 weights (the fast path on x86)
    S8S8 = "s8s8"


class QuantFormat(str, Enum):
    QDQ = "qdq"
    QOPERATOR = "qoperator"


class WeightAlgorithm(str, Enum):
    RTN = "rtn"
    HQQ = "hqq"


#: Ops that have int8 kernels on ONNX Runtime's CPU provider, or that a QDQ pair passes through
#: (data movement, removable activations). QDQ around anything else makes models slower; ops that
#: build normalisations by hand (ReduceMean, Sub, Pow, Sqrt, Div) are never quantized.
STATIC_OP_TYPES: tuple[str, ...] = (
    "Conv", "MatMul", "Gemm", "Add", "Mul", "Relu", "Clip", "LeakyRelu", "Sigmoid",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Resize",
    "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Split",
)  # fmt: skip
#: Dynamic quantization only pays where the weights are large: MatMulInteger / DynamicQuantizeMatMul.
DYNAMIC_OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm", "Attention", "LSTM")
#: Ops whose weights count as "quantizable layers" in reports and sensitivity analysis.
WEIGHTED_OP_TYPES: tuple[str, ...] = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Gather")


@dataclass(frozen=True)
class QuantizeOptions:
    """Everything that changes what ``quantize`` produces. Defaults are the safe, fast choices."""

    mode: Mode = Mode.AUTO
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    precision: Precision = Precision.U8S8
    quant_format: QuantFormat = QuantFormat.QDQ
    per_channel: bool = True
    reduce_range: bool | None = None  # 7-bit int8 weights; None = only where u8s8 could saturate
    bits: int = 4  # weight-only
    block_size: int = 32  # weight-only
    accuracy_level: int | None = 4  # MatMulNBits compute: 4 = int8 (fast on CPU), 0 = fp32
    weight_algorithm: WeightAlgorithm = WeightAlgorithm.RTN
    exclude: tuple[str, ...] = ()  # node names kept in float
    op_types: tuple[str, ...] | None = None  # override the per-mode op lists
    min_cosine: float | None = None  # fidelity target: worst output cosine
    max_drop: float | None = None  # fidelity target: accuracy drop in points (needs labels)
    max_channel_error: float | None = None  # gate: worst output-channel error / that channel's scale
    min_top1_agreement: float | None = None  # gate: argmax agreement over the last axis (classes, CTC steps)
    top1_outputs: tuple[str, ...] | None = None  # outputs the top-1 gate reads (None: every one with classes)
    min_mask_iou: float | None = None  # gate: IoU of the > 0.5 masks of probability maps
    mask_outputs: tuple[str, ...] | None = None  # outputs the mask gate reads (None: every probability one)
    min_f1: float | None = None  # gate: detection F1 against the original's decoded detections
    min_string_agreement: float | None = None  # gate: share of CTC-decoded strings identical
    min_decision_agreement: float | None = None  # gate: scalar decisions at 0.5 that agree
    output_kinds: tuple[tuple[str, str], ...] = ()  # --output-kind NAME=KIND (and ("*", KIND) for --task)
    metric: str | None = None  # --metric module:function
    holdout: float = 0.2  # share of --calibration held out for the verdict when no --eval is given
    keep_best: bool = False  # write the best candidate even when it misses the target (exit 3 all the same)
    allow_slower: bool = False  # auto: a chosen model slower than the original is not a failure
    require_faster: bool = False
    sensitivity: bool = True  # keep the worst layers in float until the target is met
    bias_correction: bool = True  # static: fold each int8 layer's mean output shift into its bias
    gptq: bool = True  # storage: GPTQ error-compensating rounding from the calibration data (``gptq.py``)
    fuse: bool = True  # static/dynamic/storage: exact float fusions first (``passes/fuse.py``)
    compact: bool = True  # dynamic/static: store the float weights they leave (embeddings...) as int8
    per_token: bool = True  # dynamic: sensitive MatMuls get per-token int8 activations before float
    max_calibration_samples: int = 128
    max_eval_samples: int = 256
    threads: int | None = 2
    provider: str = "cpu"
    bench: bool = True
    bench_seconds: float = 4.0

    def __post_init__(self) -> None:
        for name, kind in _ENUM_FIELDS.items():  # accept the enum's string values too
            value = getattr(self, name)
            if not isinstance(value, kind):
                try:
                    object.__setattr__(self, name, kind(value))
                except ValueError:
                    choices = ", ".join(k.value for k in kind)
                    raise ModelcrunchError(f"{name} '{value}': choose one of {choices}") from None
        if self.bits not in (4, 8):
            raise ModelcrunchError(f"--bits {self.bits}: weight-only quantization supports 4 or 8 bits")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ModelcrunchError(f"--block-size {self.block_size}: must be a power of two >= 16")
        if self.accuracy_level is not None and self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ModelcrunchError(f"--accuracy-level {self.accuracy_level}: must be 0..4")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise ModelcrunchError(f"--min-cosine {self.min_cosine}: must be within [-1, 1]")
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 100.0:
            raise ModelcrunchError(f"--max-drop {self.max_drop}: must be within [0, 100] points")
        if self.min_top1_agreement is not None and not 0.0 <= self.min_top1_agreement <= 1.0:
            raise ModelcrunchError(f"--min-top1-agreement {self.min_top1_agreement}: must be within [0, 1]")
        if self.min_mask_iou is not None and not 0.0 <= self.min_mask_iou <= 1.0:
            raise ModelcrunchError(f"--min-mask-iou {self.min_mask_iou}: must be within [0, 1]")
        for flag, value in (
            ("--min-f1", self.min_f1),
            ("--min-string-agreement", self.min_string_agreement),
            ("--min-decision-agreement", self.min_decision_agreement),
        ):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ModelcrunchError(f"{flag} {value}: must be within [0, 1]")
        if not 0.0 <= self.holdout < 1.0:
            raise ModelcrunchError(f"--holdout {self.holdout}: must be within [0, 1)")
        if self.max_channel_error is not None and not self.max_channel_error > 0:
            raise ModelcrunchError(f"--max-channel-error {self.max_channel_error}: must be > 0")
        if self.max_calibration_samples < 1 or self.max_eval_samples < 1:
            raise ModelcrunchError("sample limits must be positive")

    @property
    def effective_reduce_range(self) -> bool:
        """7-bit weights where the CPU's u8s8 kernels could saturate (see ``u8s8_saturates``)."""
        return self.reduce_range if self.reduce_range is not None else u8s8_saturates()

    @property
    def targets(self) -> Targets:
        """The quality targets of the judge (``runtime/judge.py``)."""
        return Targets(
            min_cosine=self.min_cosine,
            min_top1=self.min_top1_agreement,
            min_strings=self.min_string_agreement,
            min_f1=self.min_f1,
            min_mask_iou=self.min_mask_iou,
            min_decisions=self.min_decision_agreement,
            max_drop=self.max_drop,
        )

    @property
    def effective_min_cosine(self) -> float:
        """The cosine target (also used when only --max-drop is given, as a safety net)."""
        return self.min_cosine if self.min_cosine is not None else 0.99


_ENUM_FIELDS: dict[str, type[Enum]] = {
    "mode": Mode,
    "calibration_method": CalibrationMethod,
    "precision": Precision,
    "quant_format": QuantFormat,
    "weight_algorithm": WeightAlgorithm,
}


_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def u8s8_saturates() -> bool:
    """True on x86 CPUs without VNNI (AVX2/AVX-512BW only).

    There MLAS multiplies uint8 activations by int8 weights with ``vpmaddubsw``, which adds two
    u8*s8 products into a saturating int16: with full-range weights, 255*127*2 > 32767 and large
    activations clip. 7-bit weights (``reduce_range``) make 255*63*2 fit. On the sample digits CNN
    this is the difference between output cosine 0.993 and 0.9998 at the same speed. VNNI CPUs
    (``vpdpbusd``, 32-bit accumulation) and ARM never saturate.
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return True  # x86 of unknown kind: 7-bit weights are safe everywhere
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return not _VNNI_FLAGS & set(flags)
