"""``quantize`` on a model that is already quantized: never a second quantization on the first.

* Every weighted layer already int8 / 4-bit (QDQ, QOperator, dynamic, MatMulNBits, int8 storage):
  nothing adds value. The model is written unchanged (verified like any output), exit 0, and
  the report says what was found.
* Some float32 layers left: only the weight-side modes run (``storage``, ``weight-only``), which
  touch float constants alone; activation modes (``static``, ``dynamic``) would put a second
  quantize/dequantize around the already-quantized layers and are refused when asked for.

Half-precision models (float16 weights) are not integer-quantized: the usual modes apply.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import onnx_ir as ir

from modelcrunch.analysis.quantized import (
    OptimizedLayer,
    float_weighted_layers,
    is_integer_quantized,
    optimized_layers,
    summary,
)
from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import load_model, model_size_bytes, save_model
from modelcrunch.passes.quantize.config import Mode, QuantizeOptions
from modelcrunch.passes.quantize.report import QuantizeReport

WEIGHT_SIDE = (Mode.STORAGE, Mode.WEIGHT_ONLY)


@dataclasses.dataclass(frozen=True)
class Existing:
    layers: list[OptimizedLayer]
    floats: list[str]  # weighted layers still float32

    @property
    def quantized(self) -> bool:
        return is_integer_quantized(self.layers)

    def note(self) -> str:
        left = f"{len(self.floats)} float32 layer(s) left" if self.floats else "no float32 layer left"
        return f"the model is already quantized: {summary(self.layers)}; {left}"


def find_existing(model: ir.Model) -> Existing:
    return Existing(optimized_layers(model), float_weighted_layers(model))


def restrict_options(options: QuantizeOptions, existing: Existing) -> QuantizeOptions:
    """Options that quantize only the float layers left (weight-side modes), or a one-line refusal."""
    if options.mode == Mode.AUTO:
        return dataclasses.replace(options, mode=Mode.STORAGE)
    if options.mode not in WEIGHT_SIDE:
        raise ModelcrunchError(
            f"{existing.note()}: --mode {options.mode.value} would quantize it a second time; use "
            "--mode storage or weight-only for the float layers left, or start from the float model"
        )
    return options


def unchanged_report(
    source: Path,
    output: Path,
    model: ir.Model,
    existing: Existing,
    options: QuantizeOptions,
    *,
    overwrite_input: bool,
    started: float,
) -> QuantizeReport:
    """Write ``model`` unchanged and report why (nothing left that quantization would improve)."""
    del model  # the source as stored (not canonicalized, no node names added) is what is kept
    saved = save_model(
        load_model(source, canonical=False), output, source=source, overwrite_input=overwrite_input
    )
    note = existing.note()
    return QuantizeReport(
        model=str(source),
        output=str(saved.path),
        mode="none",
        mode_reason=f"{note}: written unchanged",
        size_before=model_size_bytes(source),
        size_after=saved.size_bytes,
        fidelity=None,
        latency=None,
        nodes_quantized=[],
        nodes_excluded=[],
        op_counts={},
        candidates=[],
        calibration={"source": None, "samples": 0, "synthetic": False, "method": None},
        evaluation={"source": "the unchanged model", "samples": 0, "labels": False},
        target={"min_cosine": options.effective_min_cosine, "met": True},
        warnings=[f"{note}: written unchanged; to re-quantize, start from the float model"],
        seconds=time.perf_counter() - started,
    )
