"""One builder per mode: ``build(nodes_to_quantize | None, nodes_to_exclude) -> path`` of a candidate.

Builders write into the run's temporary folder and share pre-processing and calibration (the
calibration cache), so the sensitivity analysis can rebuild a mode many times cheaply.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from modelcrunch.passes._ir import annotated_names
from modelcrunch.passes.quantize.calibration import Feeds, OutputRecord
from modelcrunch.passes.quantize.config import (
    DYNAMIC_OP_TYPES,
    STATIC_OP_TYPES,
    Mode,
    QuantFormat,
    QuantizeOptions,
    WeightAlgorithm,
)
from modelcrunch.passes.quantize.dynamic import quantize_dynamic_model
from modelcrunch.passes.quantize.fp16 import BFLOAT16, FLOAT16, convert_half, half_layers, keep_reasons
from modelcrunch.passes.quantize.gptq import gptq_weights, matmul_hessians
from modelcrunch.passes.quantize.per_token import per_token_rewrite
from modelcrunch.passes.quantize.preprocess import Prepared, prepare
from modelcrunch.passes.quantize.primitives import float_islands, hand_built_math
from modelcrunch.passes.quantize.qdq import compact_qdq
from modelcrunch.passes.quantize.ranges import activation_absmax
from modelcrunch.passes.quantize.sensitivity import Build
from modelcrunch.passes.quantize.static import quantize_static_model
from modelcrunch.passes.quantize.storage import storage_quantize
from modelcrunch.passes.quantize.weight_only import gather_opset, quantize_weight_only_model

logger = logging.getLogger(__name__)


@dataclass
class Workspace:
    """Shared state of one quantize run; everything on disk lives under ``work``."""

    work: Path
    options: QuantizeOptions
    model: ir.Model  # canonical original (Constant weights lifted, every node named)
    calibration: Feeds
    record: OutputRecord | None = None  # the calibration run's model outputs, for the reference to reuse
    stack_size: int = 1  # calibration samples the model can run stacked (``calibration.batched``)
    _counter: itertools.count = field(default_factory=itertools.count)
    _prepared: dict[bool, Prepared] = field(default_factory=dict)
    _absmax: dict[str, float] | None = None
    _gptq: dict[str, np.ndarray] | None = None

    def new_path(self, tag: str) -> Path:
        return self.work / f"{tag}_{next(self._counter)}.onnx"

    def prepared(self, *, per_channel: bool) -> Prepared:
        if per_channel not in self._prepared:
            folder = self.work / f"prep_{next(self._counter)}"
            folder.mkdir()
            self._prepared[per_channel] = prepare(
                self.model, folder, per_channel=per_channel, fuse=self.options.fuse
            )
        return self._prepared[per_channel]

    def absmax(self) -> dict[str, float]:
        if self._absmax is None:
            self._absmax = activation_absmax(ir.to_proto(self.model), self.calibration.samples)
        return self._absmax

    def gptq(self, model: ir.Model) -> dict[str, np.ndarray]:
        """GPTQ int8 values of the prepared ``model``'s weights (read, not changed); none without
        real calibration data, or when measuring the layers' inputs fails (rounding to nearest then,
        said in the log)."""
        if self._gptq is None:
            self._gptq = {}
            if self.options.gptq and not self.calibration.synthetic:
                try:
                    self._gptq = gptq_weights(model, self.calibration.samples, threads=self.options.threads)
                except Exception as exc:  # noqa: BLE001 - an optimisation: storage still works without it
                    logger.warning("GPTQ skipped, weights rounded to nearest: %s", str(exc).splitlines()[0])
        return self._gptq

    def matmul_hessians(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``gptq.matmul_hessians`` of the float model, for weight-only GPTQ; none without real
        calibration data, with ``--no-gptq``, or when measuring fails (rounding to nearest then)."""
        if not self.options.gptq or self.calibration.synthetic:
            return {}
        try:
            return matmul_hessians(self.model, self.calibration.samples, threads=self.options.threads)
        except Exception as exc:  # noqa: BLE001 - an optimisation: weight-only still works without it
            logger.warning("GPTQ skipped, weights rounded to nearest: %s", str(exc).splitlines()[0])
            return {}

    def copy_model(self) -> ir.Model:
        return ir.serde.deserialize_model(ir.to_proto(self.model))


@dataclass(frozen=True)
class ModeBuild:
    build: Build
    layers: list[str]  # nodes the sensitivity analysis may keep float, in graph order
    notes: list[str]
    compactable: bool = False  # leaves float weights that ``compact_copy`` may store as int8
    kept: dict[str, str] = field(default_factory=dict)  # kept float by rule, before any measurement: reason
    float_source: Path | None = None  # static: the float model it quantizes (for ``bias_correction``)


def _nodes(model: onnx.ModelProto, op_types: Sequence[str]) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in op_types and n.name]


def _const_weight_nodes(model: onnx.ModelProto, op_types: Sequence[str]) -> list[str]:
    """Nodes dynamic int8 rewrites (``MatMulConstBOnly``): MatMul/Gemm with a constant weight."""
    inits = {t.name for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in op_types and n.name and (n.op_type not in ("MatMul", "Gemm") or n.input[1] in inits)
    ]


def _weighted(model: ir.Model) -> list[str]:
    names = []
    for node in model.graph:
        weight = (
            node.inputs[0] if node.op_type == "Gather" else (node.inputs[1] if len(node.inputs) > 1 else None)
        )
        if weight is not None and weight.is_initializer():
            names.append(node.name)
    return names


def per_token_nodes(path: Path) -> set[str]:
    """Names of the MatMuls ``per_token_rewrite`` produced in the model at ``path``."""
    model = onnx.load(str(path), load_external_data=False)
    return {
        n.name
        for n in model.graph.node
        if n.op_type == "MatMulInteger" and f"{n.name}_per_token_Wq" in n.input
    }


def _finish(
    path: Path,
    *,
    per_token: Sequence[str],
    qdq: bool,
    compact: bool,
    keep_exact: Collection[str],
    annotated: frozenset[str],
) -> None:
    """Rewrite ORT's dynamic/static output at ``path`` in one load and one save:

    * the main graph's ``value_info`` (ORT's shape inference annotates every tensor) is dropped,
      except the source's own ``annotated`` values, as the saved output's will be
      (``drop_shape_annotations``): less to write here and to load for every later use;
    * ``per_token``: the MatMuls the sensitivity analysis took out of per-tensor int8 get per-token
      int8 activations instead (``per_token.py``);
    * ``qdq``: zero points that say 0 and ORT's long generated names are dropped (``qdq.py``);
    * ``compact``: the float weights the pass left (embedding tables, Convs under dynamic int8) are
      stored in the int8 storage form and still compute in fp32 (``compact_weights``).
    """
    proto = onnx.load(str(path))
    infos = proto.graph.value_info
    kept = [info for info in infos if info.name in annotated]
    changed = len(kept) < len(infos)
    if changed:
        del infos[:]
        infos.extend(kept)
    changed = bool(per_token and per_token_rewrite(proto, per_token)) or changed
    changed = bool(qdq and compact_qdq(proto)) or changed
    if compact:
        model = ir.serde.deserialize_model(proto)
        if compact_weights(model, keep_exact):
            ir.save(model, path)
            return
    if changed:
        onnx.save(proto, str(path))


def compact_weights(model: ir.Model, keep_exact: Collection[str]) -> bool:
    """Store the float weights of ``model`` (read only as a layer's weight or an embedding table)
    as int8 (``storage.py``), except those of the ``keep_exact`` nodes: the user's --exclude, the
    layers the sensitivity analysis keeps float and, while it probes, the layers it leaves out.
    Measured with the candidate, like everything else in it."""
    return bool(storage_quantize(model, exclude=frozenset(keep_exact), weight_slots_only=True))


def compact_copy(ws: Workspace, path: Path, keep_exact: Collection[str]) -> Path | None:
    """A copy of the candidate at ``path`` with ``compact_weights`` applied; None if nothing changes.
    The pipeline keeps it only if it still meets the target (weight rounding can flip near ties)."""
    model = ir.serde.deserialize_model(onnx.load(str(path)))
    if not compact_weights(model, keep_exact):
        return None
    out = ws.new_path(path.stem.split("_")[0] + "_compact")
    ir.save(model, out)
    return out


#: The half-precision modes and their ONNX types (``fp16.py``).
HALF_MODES = {Mode.FP16: FLOAT16, Mode.BF16: BFLOAT16}
BF16_NOTE = (
    "bf16 stores weights as bfloat16 and computes in fp32 (ONNX Runtime's CPU provider has no "
    "bfloat16 MatMul/Conv/Add kernels): ~2x smaller, same speed"
)


def mode_build(ws: Workspace, mode: Mode) -> ModeBuild:
    options = ws.options
    if mode in (Mode.STATIC, Mode.DYNAMIC):
        prep = ws.prepared(per_channel=options.per_channel)
        op_types = options.op_types or (STATIC_OP_TYPES if mode is Mode.STATIC else DYNAMIC_OP_TYPES)
        cache = ws.work / f"calibration_{options.calibration_method.value}_{prep.per_channel}.json"
        prepared = prep.load()
        layers = (
            _nodes(prepared, op_types) if mode is Mode.STATIC else _const_weight_nodes(prepared, op_types)
        )
        annotated = annotated_names(ws.model)
        kept: dict[str, str] = {}
        if mode is Mode.STATIC and not options.op_types:
            kept = hand_built_math(prepared, op_types)
            kept |= float_islands(prepared, op_types, floats=kept)

        def build(only: Sequence[str] | None, exclude: Sequence[str]) -> Path:
            out = ws.new_path(mode.value)
            floats = set(exclude)
            if mode is Mode.STATIC and not options.op_types and floats - set(kept):
                # a layer made float (--exclude, the sensitivity analysis) can leave its neighbours an island
                islands = float_islands(prepared, op_types, floats)
                exclude = [*exclude, *(n for n in islands if n not in floats)]
            if mode is Mode.STATIC:
                quantize_static_model(
                    prep.path,
                    out,
                    options=options,
                    feeds=ws.calibration.samples,
                    op_types=op_types,
                    per_channel=prep.per_channel,
                    cache=cache,
                    nodes_to_quantize=only,
                    nodes_to_exclude=exclude,
                    record=ws.record,
                    stack_size=ws.stack_size,
                )
            else:
                quantize_dynamic_model(
                    prep.path,
                    out,
                    op_types=op_types,
                    per_channel=prep.per_channel,
                    reduce_range=options.effective_reduce_range,
                    nodes_to_quantize=only,
                    nodes_to_exclude=exclude,
                )
            fallback = mode is Mode.DYNAMIC and options.per_token
            left_out = set(layers) - set(only) if only is not None else set()
            _finish(
                out,
                per_token=[n for n in exclude if n not in set(options.exclude)] if fallback else [],
                qdq=mode is Mode.STATIC and options.quant_format is QuantFormat.QDQ,
                compact=options.compact,
                keep_exact={*options.exclude, *exclude, *left_out},
                annotated=annotated,
            )
            return out

        notes = list(prep.notes)
        if options.reduce_range is None and options.effective_reduce_range:
            notes.append("7-bit weights (reduce_range): this CPU has no VNNI, full-range u8s8 would saturate")
        source = prep.path if mode is Mode.STATIC else None
        return ModeBuild(build, layers, notes, compactable=True, kept=kept, float_source=source)

    if mode is Mode.WEIGHT_ONLY:
        proto, gathers, notes = gather_opset(ir.to_proto(ws.model), options)
        hessians = ws.matmul_hessians() if options.weight_algorithm is WeightAlgorithm.RTN else {}
        if hessians:
            notes.append(f"GPTQ rounding of {len(hessians)} MatMul weights (--no-gptq rounds to nearest)")

        def build(only: Sequence[str] | None, exclude: Sequence[str]) -> Path:
            copy = onnx.ModelProto()
            copy.CopyFrom(proto)
            out = ws.new_path(mode.value)
            quantized = quantize_weight_only_model(
                copy, options=options, gathers=gathers, nodes_to_quantize=only, nodes_to_exclude=exclude,
                hessians=hessians,
            )  # fmt: skip
            onnx.save(quantized, str(out))
            return out

        return ModeBuild(build, _nodes(proto, ("MatMul", "Gather") if gathers else ("MatMul",)), notes)

    if mode is Mode.STORAGE:
        prep = ws.prepared(per_channel=options.per_channel)  # BatchNormalization folded into Conv
        prepared = ir.serde.deserialize_model(prep.load())
        rounded = ws.gptq(prepared)

        def build(only: Sequence[str] | None, exclude: Sequence[str]) -> Path:
            model = ir.serde.deserialize_model(prep.load())
            storage_quantize(
                model,
                exclude=frozenset(exclude),
                include=None if only is None else frozenset(only),
                rounded=rounded,
            )
            out = ws.new_path(mode.value)
            ir.save(model, out)
            return out

        notes = list(prep.notes)
        if rounded:
            notes.append(f"GPTQ rounding of {len(rounded)} weights from the calibration data")
        return ModeBuild(build, _weighted(prepared), notes)

    if mode in HALF_MODES:
        dtype = HALF_MODES[mode]
        layers = half_layers(ws.model, dtype)

        def build(only: Sequence[str] | None, exclude: Sequence[str]) -> Path:
            model = ws.copy_model()
            keep = set(exclude) | (set(layers) - set(only) if only is not None else set())
            absmax = ws.absmax() if dtype == FLOAT16 else None  # bf16 has fp32's range
            convert_half(model, dtype=dtype, absmax=absmax, exclude=frozenset(keep))
            out = ws.new_path(mode.value)
            ir.save(model, out)
            return out

        notes = [BF16_NOTE] if mode is Mode.BF16 else []
        return ModeBuild(build, layers, notes)
    raise ValueError(f"no builder for mode {mode}")


def half_keep_reasons(ws: Workspace, mode: Mode, exclude: frozenset[str]) -> dict[str, str]:
    """Why nodes stay fp32 under fp16/bf16, decided as the build decides it (fp16 after shape inference)."""
    if mode is Mode.BF16:
        return keep_reasons(ws.model, {}, exclude, dtype=BFLOAT16)
    model = ws.copy_model()
    ShapeInferencePass()(model)
    return keep_reasons(model, ws.absmax(), exclude)


def nonfinite_outputs(path: Path, feeds: Sequence[dict[str, np.ndarray]]) -> int:
    """How many feeds give a NaN/inf in any output (the fp16/bf16 check on the calibration data)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sum(
        any(
            not np.all(np.isfinite(o)) for o in session.run(None, feed) if np.issubdtype(o.dtype, np.floating)
        )
        for feed in feeds
    )
