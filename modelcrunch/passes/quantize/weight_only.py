"""Weight-only block-wise quantization to MatMulNBits (int4/int8), via ORT's MatMulNBitsQuantizer.

Rewrites ``MatMul(x, W)`` with constant ``W[K, N]`` into ``MatMulNBits(x, W_q, scales)`` where each
block of ``block_size`` consecutive K entries of a column has its own scale:
``W_q = round(W / s_b)``, ``s_b = max|W_b| / (2^(bits-1) - 1)`` (RTN, symmetric), or HQQ's
optimised scales/zero points. With 4 bits, large embedding ``Gather`` tables become
``GatherBlockQuantized`` (blocks along the hidden axis). ``accuracy_level=4`` lets the CPU kernel
compute in int8 (fastest on x86); 0 keeps fp32 compute.

Limits: Gemm and Conv are not rewritten (no MatMulNBits equivalent); quantized Gather needs
opset 21. ORT's quantizer merely relabels an older model as opset 21, which breaks every op whose
signature changed (ReduceMean's axes, ...), so ``gather_opset`` converts the model properly first
(checker + ORT load) and leaves embeddings float when that is not safe.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import matmul_nbits_quantizer as nbits

from modelcrunch.passes.quantize.config import QuantizeOptions, WeightAlgorithm
from modelcrunch.passes.quantize.gptq import gptq_blocks, pack_blocks
from modelcrunch.passes.quantize.preprocess import default_opset, raise_opset

logger = logging.getLogger(__name__)

#: Embedding tables smaller than this stay float (GatherBlockQuantized only pays for big tables).
MIN_GATHER_ELEMENTS = 4096
#: GatherBlockQuantized's int4 tables need opset 21 (and IR version 10).
GATHER_OPSET = 21


def _unsuitable_gathers(model: onnx.ModelProto) -> list[str]:
    """Gather nodes whose data is not a big 2-D float initializer (shape gathers, index tables)."""
    inits = {t.name: t for t in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.op_type != "Gather":
            continue
        data = inits.get(node.input[0])
        ok = (
            data is not None
            and data.data_type == onnx.TensorProto.FLOAT
            and len(data.dims) == 2
            and int(np.prod(data.dims)) >= MIN_GATHER_ELEMENTS
            and all(a.name != "axis" or a.i == 0 for a in node.attribute)
        )
        if not ok:
            bad.append(node.name)
    return bad


def gather_opset(model: onnx.ModelProto, options: QuantizeOptions) -> tuple[onnx.ModelProto, bool, list[str]]:
    """(model to quantize, whether its embedding Gathers may be quantized, notes)."""
    if options.bits != 4 or len(_unsuitable_gathers(model)) == sum(
        n.op_type == "Gather" for n in model.graph.node
    ):
        return model, False, []
    opset = default_opset(model)
    if opset >= GATHER_OPSET:
        return model, True, []
    converted = raise_opset(model, GATHER_OPSET)
    if converted is None:
        return (
            model,
            False,
            [f"opset {opset} does not convert safely to {GATHER_OPSET}: embedding Gathers left float"],
        )
    return converted, True, [f"opset raised from {opset} to {GATHER_OPSET} (4-bit embedding Gather needs it)"]


def quantize_weight_only_model(
    model: onnx.ModelProto,
    *,
    options: QuantizeOptions,
    gathers: bool = True,
    nodes_to_quantize: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] = (),
    hessians: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> onnx.ModelProto:
    """The model with constant-weight MatMuls (and, with ``gathers``, 4-bit embedding Gathers) as
    MatMulNBits; ``gathers`` needs opset 21 (see ``gather_opset``). With ``hessians`` (RTN only),
    the MatMuls they name are rounded by GPTQ (``apply_gptq``)."""
    unnamed = [n for n in model.graph.node if not n.name]
    for index, node in enumerate(unnamed):
        node.name = f"{node.op_type}_{index}_mc"
    gathers = gathers and options.bits == 4 and default_opset(model) >= GATHER_OPSET
    op_types: tuple[str, ...] = ("MatMul", "Gather") if gathers else ("MatMul",)
    exclude = set(nodes_to_exclude) | set(_unsuitable_gathers(model))
    if options.weight_algorithm is WeightAlgorithm.HQQ:
        algo: nbits.WeightOnlyQuantConfig = nbits.HQQWeightOnlyQuantConfig(
            block_size=options.block_size, bits=options.bits, op_types_to_quantize=("MatMul",)
        )
    else:
        algo = nbits.DefaultWeightOnlyQuantConfig(
            block_size=options.block_size,
            is_symmetric=True,
            accuracy_level=options.accuracy_level,
            op_types_to_quantize=op_types,
            quant_axes=(("MatMul", 0), ("Gather", 1)),
            bits=options.bits,
        )
    quantizer = nbits.MatMulNBitsQuantizer(
        model,
        bits=options.bits,
        block_size=options.block_size,
        is_symmetric=True,
        accuracy_level=options.accuracy_level,
        nodes_to_exclude=sorted(exclude),
        algo_config=algo,
        nodes_to_include=list(nodes_to_quantize) if nodes_to_quantize is not None else None,
    )
    quantizer.process()
    quantized = quantizer.model.model
    if hessians:
        count = apply_gptq(quantized, hessians)
        logger.info("GPTQ rounding for %d MatMulNBits weights", count)
    return quantized


def apply_gptq(model: onnx.ModelProto, hessians: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """Re-round, in place, the ``B`` of every symmetric MatMulNBits of ``model`` whose output is a key
    of ``hessians`` (the float MatMul's output → its weights ``[K, N]`` and ``H``), by GPTQ under the
    scales ONNX Runtime's quantizer chose (``gptq.gptq_blocks``); the count re-rounded."""
    inits = {t.name: t for t in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        found = hessians.get(node.output[0]) if node.op_type == "MatMulNBits" else None
        if found is None or (len(node.input) > 3 and node.input[3]):  # zero points: asymmetric
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        packed, scales = inits.get(node.input[1]), inits.get(node.input[2])
        weights, hessian = found
        if packed is None or scales is None or weights.shape != (attrs["K"], attrs["N"]):
            continue
        bits, block = attrs["bits"], attrs["block_size"]
        steps = numpy_helper.to_array(scales).reshape(attrs["N"], -1)
        values = gptq_blocks(weights, hessian, steps, block, bits)
        rounded = pack_blocks(values, block, bits).reshape(packed.dims)
        packed.CopyFrom(numpy_helper.from_array(rounded, packed.name))
        count += 1
    return count
