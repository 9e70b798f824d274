"""Float-exact rewrites that leave fewer element-wise ops for int8 to wrap in Quantize/Dequantize.

Mobile CNNs exported from Paddle or PyTorch spell out, op by op, what one kernel could do:
PP-LCNetV3's "learnable affine blocks" scale and shift every Conv output and every activation by
a scalar (``Mul`` + ``Add``), and HardSwish arrives as ``Add(3) → Clip(0, 6) → Mul(x) → Div(6)``.
ONNX Runtime folds none of them (its Conv+Mul fusion wants the constant as the second input and
a per-channel shape; it has no HardSwish fusion), and after static quantization each op becomes a
QLinearAdd/QLinearMul or a float op between a Dequantize/Quantize pair. Four rewrites, exact up
to float rounding:

* ``fold_conv_output_affine``: ``Conv(x; W, b) · k + d``, ``k`` and ``d`` constant per output
  channel or scalar → ``Conv(x; W·k, b·k + d)``. ``Sub`` is ``Add`` of ``-d``, ``Div`` is ``Mul``
  by ``1/k``.
* ``fold_conv_input_affine``: ``Conv(x·k + d; W, b)`` → ``Conv(x; W·k, b + Σ W·d)``, the sum over
  each output's input channels and kernel taps. Only for a Conv without padding: padding adds
  zeros after the shift, and zeros before it are different values. ``k``/``d`` scalar, or per
  input channel for an ungrouped Conv.
* ``fuse_hard_swish``: ``x · clip(x + 3, 0, 6) / 6`` (``Div(6)`` or ``Mul(1/6)``, before or after
  the product) → ``HardSwish(x)`` at opset ≥ 14, else ``x · HardSigmoid(x; α=1/6, β=1/2)``.
* ``clamp_masked_softmax``: ``Softmax(scores + mask)`` with an additive mask constant (BERT's
  ``-10000``, Hugging Face's ``finfo.min``) → ``Softmax(max(x, max(x) − 80))``. Not a fusion: x86
  ``exp`` is ~10x slower where its result underflows, which every masked position does. MiniLM's
  fp32 latency alone: 0.89x; after dynamic int8, the Softmaxes had been 28 % of the run time.

Each applies only where the constants are initializers (not graph inputs) and every intermediate
value is read by one node and is not a graph output; a graph output the rewrite produces keeps its
name and type, so the signature never changes.
Weights shared with other nodes are copied, never changed in place. Main graph only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.passes._ir import REDUCE_AXES_INPUT_OPSET, FreshNames, register_array

logger = logging.getLogger(__name__)

_AFFINE = ("Mul", "Add", "Sub", "Div")
_CLIP_RANGE = (0.0, 6.0)


@dataclass(frozen=True)
class FuseResult:
    output_affine: int = 0  # Mul/Add/Sub/Div nodes folded into the Conv before them
    input_affine: int = 0  # ... into the Conv after them
    hard_swish: int = 0  # HardSwish patterns fused
    softmax: int = 0  # masked Softmax inputs clamped (no denormal exp)

    @property
    def changed(self) -> bool:
        return bool(self.output_affine or self.input_affine or self.hard_swish or self.softmax)

    def describe(self) -> str:
        parts = []
        if self.output_affine or self.input_affine:
            parts.append(f"{self.output_affine + self.input_affine} Mul/Add folded into Convs")
        if self.hard_swish:
            parts.append(f"{self.hard_swish} HardSwish fused")
        if self.softmax:
            parts.append(f"{self.softmax} masked Softmax inputs clamped to max − 80 (no denormal exp)")
        return "; ".join(parts)


def _constant(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.is_graph_input() or value.const_value is None:
        return None
    array = value.const_value.numpy()
    return array if array.dtype.kind == "f" else None


def _private(value: ir.Value) -> bool:
    """Read by exactly one node and not a graph output: the rewrite may drop it."""
    return len(value.uses()) == 1 and not value.is_graph_output()


def _sole_user(value: ir.Value) -> ir.Node | None:
    return next(iter(value.uses())).node if _private(value) else None


def _affine_step(node: ir.Node, x: ir.Value) -> tuple[str, np.ndarray] | None:
    """(``"scale"`` | ``"shift"``, constant) when ``node`` computes ``x·k``, ``x/k``, ``x+d`` or ``x-d``."""
    if node.op_type not in _AFFINE or len(node.inputs) != 2 or x not in node.inputs:
        return None
    position = list(node.inputs).index(x)
    other = _constant(node.inputs[1 - position])
    if other is None or (node.op_type in ("Sub", "Div") and position != 0):
        return None
    if node.op_type == "Mul":
        return "scale", other
    if node.op_type == "Div":
        return ("scale", 1.0 / other) if np.all(other != 0) else None
    return "shift", other if node.op_type == "Add" else -other


def _per_channel(constant: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``constant`` as a vector over axis 1 of a rank-``rank`` tensor, or None if it varies elsewhere."""
    if constant.size == 1:
        return np.full(channels, constant.ravel()[0], dtype=constant.dtype)
    if constant.ndim > rank:
        return None
    shape = (1,) * (rank - constant.ndim) + constant.shape
    if shape[1] != channels or any(s != 1 for i, s in enumerate(shape) if i != 1):
        return None
    return constant.reshape(channels)


def _conv_params(node: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(weight, bias) of a Conv whose weight (and bias, if any) are constant; a zero bias if none."""
    if node.op_type != "Conv" or len(node.inputs) < 2:
        return None
    weight = _constant(node.inputs[1])
    if weight is None or weight.ndim < 3:
        return None
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return weight, np.zeros(weight.shape[0], dtype=weight.dtype)
    bias = _constant(node.inputs[2])
    return None if bias is None else (weight, bias)


def _set_conv_params(
    graph: ir.Graph, conv: ir.Node, weight: np.ndarray, bias: np.ndarray, names: FreshNames
) -> None:
    """New initializers for the Conv's weight and bias (the old ones may be shared)."""
    olds = [conv.inputs[1], conv.inputs[2] if len(conv.inputs) > 2 else None]
    for index, array in ((1, weight), (2, bias)):
        name = names(f"{conv.name or conv.op_type}_{'W' if index == 1 else 'B'}_folded", numbered=False)
        value = register_array(graph, name, array.astype(olds[0].const_value.dtype.numpy()))
        if index < len(conv.inputs):
            conv.replace_input_with(index, value)
        else:
            conv.resize_inputs(3)
            conv.replace_input_with(2, value)
    for old in olds:
        _drop_if_unused(graph, old)


def _drop_if_unused(graph: ir.Graph, value: ir.Value | None) -> None:
    if (
        value is not None
        and value.name in graph.initializers
        and not value.uses()
        and not value.is_graph_input()
        and not value.is_graph_output()
    ):
        graph.initializers.pop(value.name)


def _take_place(graph: ir.Graph, old: ir.Value, new: ir.Value) -> None:
    """``new`` replaces ``old`` everywhere, as a graph output too (under ``old``'s name and type)."""
    output = old.is_graph_output()
    ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
    if output:
        name, old.name = old.name, None
        new.name, new.type, new.shape = name, old.type, old.shape


def _remove(graph: ir.Graph, nodes: list[ir.Node]) -> None:
    constants = [v for node in nodes for v in node.inputs if v is not None and v.const_value is not None]
    graph.remove(nodes, safe=True)
    for value in constants:
        _drop_if_unused(graph, value)


def fold_conv_output_affine(model: ir.Model) -> int:
    """Fold ``Mul``/``Add``/``Sub``/``Div`` by constants after a Conv into its weight and bias."""
    graph = model.graph
    names = FreshNames(model)
    folded = 0
    for conv in list(graph):
        while True:
            params = _conv_params(conv)
            out = conv.outputs[0]
            user = _sole_user(out)
            if params is None or user is None:
                break
            step = _affine_step(user, out)
            weight, bias = params
            vector = None if step is None else _per_channel(step[1], weight.shape[0], weight.ndim)
            if vector is None:
                break
            if step[0] == "scale":
                weight = weight * vector.reshape(-1, *([1] * (weight.ndim - 1)))
                bias = bias * vector
            else:
                bias = bias + vector
            _set_conv_params(graph, conv, weight, bias, names)
            _take_place(graph, user.outputs[0], out)
            _remove(graph, [user])
            folded += 1
    return folded


def _unpadded(conv: ir.Node) -> bool:
    auto_pad = conv.attributes.get("auto_pad")
    if auto_pad is not None and auto_pad.as_string() not in ("NOTSET", "VALID"):
        return False
    pads = conv.attributes.get("pads")
    return pads is None or not any(pads.as_ints())


def fold_conv_input_affine(model: ir.Model) -> int:
    """Fold a chain of ``Mul``/``Add``/``Sub``/``Div`` by constants before an unpadded Conv into it."""
    graph = model.graph
    names = FreshNames(model)
    folded = 0
    for conv in list(graph):
        params = _conv_params(conv)
        if params is None or not _unpadded(conv):
            continue
        weight, bias = params
        group = conv.attributes.get("group")
        grouped = group is not None and group.as_int() != 1
        chain: list[tuple[ir.Node, str, np.ndarray]] = []  # (node, "scale" | "shift", per input channel)
        value = conv.inputs[0]
        while value is not None and value.producer() is not None and _private(value):
            node = value.producer()
            inputs = [v for v in node.inputs if v is not None and _constant(v) is None]
            step = _affine_step(node, inputs[0]) if len(inputs) == 1 else None
            if step is None or (grouped and step[1].size != 1):
                break
            vector = _per_channel(step[1], weight.shape[1], weight.ndim)
            if vector is None:
                break
            chain.append((node, step[0], vector))
            value = inputs[0]
        if not chain:
            continue
        scale = np.ones(weight.shape[1], dtype=np.float64)
        shift = np.zeros(weight.shape[1], dtype=np.float64)
        for _, kind, vector in reversed(chain):  # from x towards the Conv
            if kind == "scale":
                scale, shift = scale * vector, shift * vector
            else:
                shift = shift + vector
        taps = (1, -1, *([1] * (weight.ndim - 2)))
        new_bias = bias + (weight * shift.reshape(taps)).reshape(weight.shape[0], -1).sum(axis=1)
        new_weight = weight * scale.reshape(taps)
        _set_conv_params(graph, conv, new_weight, new_bias, names)
        conv.replace_input_with(0, value)
        _remove(graph, [node for node, _, _ in chain])
        folded += len(chain)
    return folded


def _scalar(value: ir.Value | None) -> float | None:
    constant = _constant(value)
    return float(constant.ravel()[0]) if constant is not None and constant.size == 1 else None


def _clip_range(node: ir.Node) -> tuple[float | None, float | None]:
    if len(node.inputs) > 1:  # opset >= 11: min and max are inputs
        bounds = [_scalar(node.inputs[i]) if i < len(node.inputs) else None for i in (1, 2)]
        return bounds[0], bounds[1]
    low, high = node.attributes.get("min"), node.attributes.get("max")
    return (low.as_float() if low else None), (high.as_float() if high else None)


def _is_sixth(node: ir.Node, x: ir.Value) -> bool:
    """``node`` computes ``x / 6`` (as ``Div(6)`` or ``Mul(1/6)``)."""
    step = _affine_step(node, x)
    return (
        step is not None
        and step[0] == "scale"
        and step[1].size == 1
        and np.isclose(step[1].ravel()[0], 1 / 6)
    )


def _hard_swish_match(add: ir.Node) -> tuple[ir.Value, list[ir.Node]] | None:
    """(x, the pattern's nodes in order) when ``add`` starts ``x · clip(x + 3, 0, 6) / 6``."""
    step = None
    x = None
    for candidate in add.inputs:
        if candidate is not None and _constant(candidate) is None:
            x, step = candidate, _affine_step(add, candidate)
    if x is None or step is None or step[0] != "shift" or step[1].size != 1 or step[1].ravel()[0] != 3:
        return None
    clip = _sole_user(add.outputs[0])
    if clip is None or clip.op_type != "Clip" or _clip_range(clip) != _CLIP_RANGE:
        return None
    second = _sole_user(clip.outputs[0])
    if second is None:
        return None
    if second.op_type == "Mul" and set(second.inputs) == {x, clip.outputs[0]}:  # x·clip, then /6
        third = _sole_user(second.outputs[0])
        if third is not None and _is_sixth(third, second.outputs[0]):
            return x, [add, clip, second, third]
    elif _is_sixth(second, clip.outputs[0]):  # clip/6, then ·x
        third = _sole_user(second.outputs[0])
        if third is not None and third.op_type == "Mul" and set(third.inputs) == {x, second.outputs[0]}:
            return x, [add, clip, second, third]
    return None


def fuse_hard_swish(model: ir.Model) -> int:
    """Replace ``x · clip(x + 3, 0, 6) / 6`` by ``HardSwish`` (opset ≥ 14) or ``x · HardSigmoid(x)``."""
    graph = model.graph
    opset = model.opset_imports.get("", 1)
    names = FreshNames(model)
    fused = 0
    for add in list(graph):
        if add.op_type != "Add":
            continue
        match = _hard_swish_match(add)
        if match is None:
            continue
        x, nodes = match
        name = nodes[-1].name or f"hard_swish_{fused}"
        if opset >= 14:
            new = [ir.node("HardSwish", [x], name=name)]
        else:
            gate_name = names(f"{name}_gate", numbered=False)
            gate = ir.node("HardSigmoid", [x], attributes={"alpha": 1 / 6, "beta": 0.5}, name=gate_name)
            new = [gate, ir.node("Mul", [x, gate.outputs[0]], name=name)]
        for node in new:  # same type and shape as x: quantizers only touch tensors typed float
            node.outputs[0].type, node.outputs[0].shape = x.type, x.shape
        graph.insert_before(nodes[0], new)
        _take_place(graph, nodes[-1].outputs[0], new[-1].outputs[0])
        _remove(graph, nodes)
        fused += 1
    return fused


#: A constant at or below this, added before a Softmax, is an additive mask (BERT's -10000, Hugging
#: Face's finfo(float32).min, -1e9, -inf).
MASK_CONSTANT = -1e4
#: Softmax inputs are clamped to ``max - SOFTMAX_FLOOR``: exp(-80) = 1.8e-35 is still a normal float32
#: (exp underflows to denormals below -87.3).
SOFTMAX_FLOOR = 80.0
_MASK_PATH = ("Add", "Sub", "Mul", "Where", "Cast", "Unsqueeze", "Expand", "Reshape", "Concat", "Squeeze")


def _mask_constant(value: ir.Value, depth: int = 6) -> bool:
    """Whether ``value`` is computed (through ``_MASK_PATH`` ops) from a constant ≤ ``MASK_CONSTANT``."""
    array = _constant(value)
    if array is not None:
        return array.size > 0 and bool(np.nanmin(array) <= MASK_CONSTANT)
    node = value.producer()
    if depth == 0 or node is None or node.op_type not in _MASK_PATH:
        return False
    return any(v is not None and _mask_constant(v, depth - 1) for v in node.inputs)


def clamp_masked_softmax(model: ir.Model) -> int:
    """``Softmax(x)`` → ``Softmax(max(x, max(x) − 80))`` where ``x`` is ``scores + mask`` with an
    additive mask constant (``MASK_CONSTANT``).

    Why: x86 ``exp`` (MLAS's, ORT's Softmax) is ~10x slower when its result is a denormal or underflows,
    and a mask of ``finfo.min`` makes every masked position do that: on MiniLM at sequence 128 the six
    Softmaxes were 3.1 of 11 ms after int8. Exact to float32 rounding: a clamped position's weight
    goes from below ``exp(-80)`` to ``exp(-80) = 1.8e-35`` of the row's largest, far below half an ulp
    of the row sum (≥ 1); a row whose every value is the mask stays uniform (``max − 80`` rounds to
    ``max``). Opset ≥ 13 (``axis`` is one axis); the reduction keeps its axis for broadcasting.
    """
    graph = model.graph
    opset = model.opset_imports.get("", 1)
    if opset < 13:
        return 0
    floor = None
    axes: dict[int, ir.Value] = {}  # one initializer per reduced axis, shared by the Softmaxes
    names = FreshNames(model)
    clamped = 0
    for softmax in list(graph):
        x = softmax.inputs[0] if softmax.op_type == "Softmax" and softmax.inputs else None
        add = x.producer() if x is not None else None
        if add is None or add.op_type != "Add" or not any(_mask_constant(v) for v in add.inputs if v):
            continue
        if floor is None:
            floor = register_array(
                graph, names("softmax_floor", numbered=False), np.array(SOFTMAX_FLOOR, np.float32)
            )
        axis = softmax.attributes.get_int("axis", -1)
        name = softmax.name or "softmax"
        if opset >= REDUCE_AXES_INPUT_OPSET:
            if axis not in axes:
                axes[axis] = register_array(
                    graph, names(f"softmax_axes{axis}", numbered=False), np.array([axis], np.int64)
                )
            peak = ir.node("ReduceMax", [x, axes[axis]], attributes={"keepdims": 1})
        else:
            peak = ir.node("ReduceMax", [x], attributes={"axes": [axis], "keepdims": 1})
        low = ir.node("Sub", [peak.outputs[0], floor])
        clamp = ir.node("Max", [x, low.outputs[0]])
        for node, role in ((peak, "peak"), (low, "floor"), (clamp, "clamp")):
            node.name = names(f"{name}_{role}", numbered=False)
            node.outputs[0].name = names(f"{name}_{role}_out", numbered=False)
            node.outputs[0].type = x.type
        clamp.outputs[0].shape = x.shape
        graph.insert_before(softmax, [peak, low, clamp])
        softmax.replace_input_with(0, clamp.outputs[0])
        clamped += 1
    return clamped


def fuse_for_int8(model: ir.Model) -> FuseResult:
    """All the rewrites, in place: HardSwish first (its ``Add(3)`` must not fold into a Conv)."""
    hard_swish = fuse_hard_swish(model)
    output_affine = fold_conv_output_affine(model)
    input_affine = fold_conv_input_affine(model)
    result = FuseResult(output_affine, input_affine, hard_swish, clamp_masked_softmax(model))
    if result.changed:
        logger.info("fusion: %s", result.describe())
    return result
