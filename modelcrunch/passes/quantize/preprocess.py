"""Make a real model safe to hand to ONNX Runtime's quantization tools.

What it rewrites, in order:

1. Constant-node weights are already initializers (``modelcrunch.io.load_model`` lifts them, in
   subgraphs too), so ORT's "Expected ... to be an initializer" crash cannot happen.
2. Opset: per-channel QDQ needs ``DequantizeLinear(axis=...)`` (opset 13). A model below 13 is
   converted with ``onnx.version_converter`` and the result must pass the checker and load in ONNX
   Runtime; when it does not, quantization falls back to per-tensor (and says so) instead of writing
   a file ONNX Runtime rejects.
3. ``quant_pre_process`` (ORT's basic graph optimisation + shape inference) runs with a fallback
   chain: ONNX's own shape inference, kept when it typed every tensor of the main graph (ORT's
   quantizers only quantize tensors they know to be float); else ORT's symbolic shape inference;
   else none. Symbolic inference goes second because it can be slow: 18.5 s on PP-OCRv4 det,
   whose dynamic H and W make sympy expressions through Resize, where ONNX's takes 0.1 s and
   ``quantize_static`` itself 4.5 s. Every file it writes lives in the caller's temporary folder,
   never in the working directory.
4. Exact float fusions (``modelcrunch/passes/fuse.py``): scalar Mul/Add folded into the Convs
   beside them, HardSwish built from Add/Clip/Mul/Div fused, so int8 has fewer element-wise ops to
   wrap in Quantize/Dequantize pairs. PP-OCRv4 rec runs 0.59x as long in fp32 after them alone.
   Masked attention Softmaxes get their inputs clamped so ``exp`` never underflows (MiniLM 0.89x).
5. Weight copies that ORT's constant folding wrote into several If/Loop branches (a reshaped
   outer-scope weight comes back folded once per branch) become one main-graph initializer again:
   silero-vad's pre-processed model had 1.48x the weights of the original.
6. A Gemm bias of shape ``(1, N)`` (ORT's optimiser makes one from ``MatMul`` + ``Add``) becomes
   ``(N,)``, the same under broadcasting: ORT's int32-bias scale check indexes a per-channel bias
   by output channel and crashes on the 2-D one (magika), which cost a second quantization
   without that check.

Limits: models over 2 GB are handled by ORT's external-data path only as far as ORT supports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx_ir as ir
from onnx import version_converter

from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import node_subgraphs, scratch_cwd
from modelcrunch.passes._ir import FreshNames, register_array, share_subgraph_copies
from modelcrunch.passes.fuse import fuse_for_int8
from modelcrunch.passes.quantize.config import WEIGHTED_OP_TYPES

logger = logging.getLogger(__name__)

PER_CHANNEL_MIN_OPSET = 13


@dataclass
class Prepared:
    """The pre-processed model, written to ``path`` inside the caller's temporary folder."""

    path: Path
    opset: int
    per_channel: bool
    shape_inference: str  # "symbolic" | "onnx" | "none"
    optimized: bool
    notes: list[str] = field(default_factory=list)

    def load(self) -> onnx.ModelProto:
        return onnx.load(str(self.path))


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def _loads_in_ort(model: onnx.ModelProto) -> bool:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors come back as exceptions (one line)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        onnx.checker.check_model(model)
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any failure means "not safe"
        logger.info("opset-converted model rejected: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return False
    return True


def raise_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto | None:
    """The model converted to ``target`` if that is safe (checker + ORT load), else None."""
    try:
        converted = version_converter.convert_version(model, target)
    except Exception as exc:  # noqa: BLE001 - the converter raises bare RuntimeErrors
        logger.info("version conversion to opset %d failed: %s", target, exc)
        return None
    return converted if _loads_in_ort(converted) else None


def _pre_process(src: Path, dst: Path, *, optimize: bool) -> tuple[str, bool]:
    """Run ORT's quant_pre_process with the fallback chain; returns (shape inference used, optimized)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts = [("onnx", True, False), ("symbolic", False, False), ("none", True, True)]
    for optimized in [True, False] if optimize else [False]:
        for label, skip_symbolic, skip_onnx in attempts:
            try:
                with scratch_cwd():  # ORT's symbolic shape inference writes into the working directory
                    quant_pre_process(
                        str(src),
                        str(dst),
                        skip_optimization=not optimized,
                        skip_symbolic_shape=skip_symbolic,
                        skip_onnx_shape=skip_onnx,
                        auto_merge=True,
                    )
                onnx.checker.check_model(str(dst))
                if label == "onnx" and (
                    untyped := _untyped_tensors(onnx.load(str(dst), load_external_data=False))
                ):
                    logger.info(
                        "ONNX shape inference left %d tensors untyped (e.g. %s)", len(untyped), untyped[0]
                    )
                    continue
                return label, optimized
            except Exception as exc:  # noqa: BLE001 - each stage fails in its own way; try the next
                logger.info(
                    "pre-processing (shape=%s, optimize=%s) failed: %s",
                    label,
                    optimized,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
    dst.write_bytes(src.read_bytes())
    return "none", False


def _untyped_tensors(model: onnx.ModelProto) -> list[str]:
    """Main-graph node outputs without an element type after shape inference."""
    typed = {
        v.name
        for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type
    } | {t.name for t in model.graph.initializer}
    return [o for node in model.graph.node for o in node.output if o and o not in typed]


def prepare(
    model: ir.Model, workdir: Path, *, per_channel: bool, optimize: bool = True, fuse: bool = True
) -> Prepared:
    """Write a quantization-ready copy of ``model`` into ``workdir`` (see the module docstring)."""
    proto = ir.to_proto(model)
    notes: list[str] = []
    opset = default_opset(proto)
    if opset < PER_CHANNEL_MIN_OPSET:
        converted = raise_opset(proto, PER_CHANNEL_MIN_OPSET)
        if converted is not None:
            notes.append(f"opset raised from {opset} to {PER_CHANNEL_MIN_OPSET} (per-channel int8 needs it)")
            proto, opset = converted, PER_CHANNEL_MIN_OPSET
        elif opset < 10:
            raise ModelcrunchError(
                f"opset {opset} has no QuantizeLinear and the model does not convert safely to opset 13"
            )
        elif per_channel:
            per_channel = False
            notes.append(f"opset {opset} does not convert safely to 13: per-tensor quantization instead")
    src = workdir / "original.onnx"
    onnx.save(proto, str(src))
    dst = workdir / "prepared.onnx"
    shape_inference, optimized = _pre_process(src, dst, optimize=optimize)
    if shape_inference == "none":
        notes.append("shape inference failed (ONNX's and symbolic): tensors of unknown type stay float")
    if fuse or any(node_subgraphs(node) for node in proto.graph.node):
        _rewrite(dst, notes, fuse=fuse)
    return Prepared(dst, opset, per_channel, shape_inference, optimized, notes)


def _rewrite(path: Path, notes: list[str], *, fuse: bool) -> None:
    """Rewrite the pre-processed model at ``path``, in one load and save: the weight copies ORT's
    constant folding left in If/Loop branches shared again (``share_subgraph_copies``), and with
    ``fuse`` the exact float fusions of ``passes/fuse.py``."""
    prepared = ir.load(path)
    flattened = flatten_gemm_bias(prepared)
    dropped, saved = share_subgraph_copies(prepared)
    if dropped:
        notes.append(
            f"{dropped} weight copies that constant folding wrote into If/Loop branches shared again "
            f"({saved / 1e6:.2f} MB)"
        )
    result = fuse_for_int8(prepared) if fuse else None
    if result is not None and result.changed:
        notes.append(f"fused before quantizing (exact in float): {result.describe()}")
    if flattened or dropped or (result is not None and result.changed):
        ir.save(prepared, path)


def flatten_gemm_bias(model: ir.Model) -> int:
    """Main-graph Gemm biases of shape ``(1, N)``, N > 1, made ``(N,)`` (see the module docstring);
    a bias another node reads too gets a reshaped copy. Returns how many."""
    found = []
    for node in model.graph:
        bias = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None
        if bias is None or bias.const_value is None or bias.is_graph_input() or bias.is_graph_output():
            continue
        shape = bias.const_value.shape
        if len(shape) == 2 and shape[0] == 1 and shape[1] > 1:
            found.append((node, bias))
    names = FreshNames(model) if found else None
    for node, bias in found:
        flat = bias.const_value.numpy().reshape(-1)
        node.replace_input_with(
            2, register_array(model.graph, names(f"{bias.name}_flat", numbered=False), flat)
        )
        if not bias.uses():
            model.graph.initializers.pop(bias.name)
    return len(found)


def subgraph_weighted_nodes(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(node name, owner If/Loop/Scan name) for weighted ops that live inside subgraphs."""
    found: list[tuple[str, str]] = []

    def walk(graph: onnx.GraphProto, owner: str | None) -> None:
        for node in graph.node:
            if owner is not None and node.op_type in WEIGHTED_OP_TYPES:
                found.append((node.name or node.output[0], owner))
            for sub in node_subgraphs(node):
                walk(sub, node.name or node.op_type)

    walk(model.graph, None)
    return found
