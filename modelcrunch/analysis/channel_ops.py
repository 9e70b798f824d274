"""How each ONNX op carries a channel group from one of its ports to the others (one handler per op).

A handler gets the port the group arrives on (``("in", i)`` or ``("out", i)``) and the group's
Occurrence there, and returns the Occurrences on the other ports, the constant slices it owns and
its role (producer / consumer / depthwise), or raises Unprunable with the reason."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.channels import (
    Coupling,
    GraphFacts,
    Handler,
    Occurrence,
    ParamSlice,
    Port,
    Unprunable,
    attr_value,
    const_array,
)

UNARY = {
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "Clip",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Erf",
    "Softplus",
    "Softsign",
    "Mish",
    "Identity",
    "Dropout",
    "Cast",
    "Abs",
    "Neg",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "ThresholdedRelu",
    "Not",
    "IsNaN",
    "IsInf",
    "Swish",
    "QuickGelu",
    "FastGelu",
    "BiasGelu",
}
ELEMENTWISE = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "PRelu",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Mod",
}
SPATIAL = {
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "Resize",
    "Upsample",
}
REDUCE = {
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceL1",
    "ReduceL2",
    "ReduceProd",
    "ReduceSumSquare",
    "ReduceLogSumExp",
}


def _same(node: ir.Node, port: Port, occ: Occurrence, out: int = 0, inp: int = 0) -> Coupling:
    """in[inp] <-> out[out], same axis."""
    if port == ("in", inp):
        return Coupling(links=[(node.outputs[out], occ)])
    if port == ("out", out):
        return Coupling(links=[(node.inputs[inp], occ)])
    raise Unprunable(f"{node.op_type} '{node.name}': channels reach an unsupported operand")


def _check_extra_outputs(node: ir.Node, used_from: int = 1) -> None:
    for out in node.outputs[used_from:]:
        if out is not None and (out.uses() or out.is_graph_output()):
            raise Unprunable(f"{node.op_type} '{node.name}': extra output '{out.name}' is used")


def h_unary(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    _check_extra_outputs(node)
    if port[0] == "in" and port[1] != 0:
        raise Unprunable(f"{node.op_type} '{node.name}': channels reach a parameter input")
    return _same(node, port, occ)


def h_spatial(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    _check_extra_outputs(node)
    if occ.axis != 1 or occ.block != 1:
        raise Unprunable(f"{node.op_type} '{node.name}': channels are not on axis 1")
    if node.op_type in ("Resize", "Upsample"):
        scales = const_array(
            node.inputs[2]
            if node.op_type == "Resize" and len(node.inputs) > 2
            else node.inputs[1]
            if len(node.inputs) > 1
            else None
        )
        if scales is not None and scales.size > 1 and scales.reshape(-1)[1] != 1:
            raise Unprunable(f"{node.op_type} '{node.name}' scales the channel axis")
    if port[0] == "in" and port[1] != 0:
        raise Unprunable(f"{node.op_type} '{node.name}': channels reach a parameter input")
    return _same(node, port, occ)


def h_batchnorm(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    _check_extra_outputs(node)
    if occ.axis != 1 or (port[0] == "in" and port[1] != 0):
        raise Unprunable(f"{node.op_type} '{node.name}': channels are not its normalized axis")
    coupling = _same(node, port, occ)
    for i in range(1, len(node.inputs)):
        if const_array(node.inputs[i]) is None:
            raise Unprunable(f"{node.op_type} '{node.name}': parameter {i} is not constant")
        kind = "bn_scale" if i == 1 else "bn_other"
        coupling.params.append(ParamSlice(node.name, i, 0, occ.offset, occ.block, kind))
    return coupling


def h_elementwise(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    out = node.outputs[0]
    out_shape = facts.shape(out)
    if out_shape is None:
        raise Unprunable(f"{node.op_type} '{node.name}': output shape unknown")
    rank = len(out_shape)
    if port[0] == "out":
        out_axis = occ.axis
    else:
        in_shape = facts.shape(node.inputs[port[1]])
        if in_shape is None:
            raise Unprunable(f"{node.op_type} '{node.name}': input shape unknown")
        out_axis = occ.axis + rank - len(in_shape)
    full = out_shape[out_axis]
    coupling = Coupling()
    if port[0] == "in":
        coupling.links.append((out, Occurrence(out.name, out_axis, occ.offset, occ.block)))
    for i, value in enumerate(node.inputs):
        if value is None or port == ("in", i):
            continue
        shape = facts.shape(value)
        if shape is None:
            raise Unprunable(f"{node.op_type} '{node.name}': shape of '{value.name}' unknown")
        axis = out_axis - (rank - len(shape))
        if axis < 0 or shape[axis] == 1:
            continue  # broadcast along the channel axis: not coupled
        if shape[axis] != full or full is None:
            raise Unprunable(f"{node.op_type} '{node.name}': operand '{value.name}' does not align")
        member = Occurrence(value.name, axis, occ.offset, occ.block)
        if const_array(value) is not None:
            coupling.params.append(ParamSlice(node.name, i, axis, occ.offset, occ.block, "const"))
        else:
            coupling.links.append((value, member))
    return coupling


def h_concat(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    rank = len(facts.shape(node.outputs[0]) or ())
    axis = attr_value(node, "axis", 0) % max(rank, 1)
    if axis != occ.axis:
        return h_elementwise(facts, node, port, occ)
    sizes = [facts.dim(v, axis) for v in node.inputs]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    if port[0] == "in":
        return Coupling(
            links=[
                (
                    node.outputs[0],
                    Occurrence(node.outputs[0].name, axis, occ.offset + int(starts[port[1]]), occ.block),
                )
            ]
        )
    return _locate(node, node.inputs, starts, occ, "Concat input")


def _locate(node: ir.Node, values, starts, occ: Occurrence, what: str) -> Coupling:
    span_end = occ.offset + _span(occ)
    for k in range(len(starts) - 1):
        if starts[k] <= occ.offset and span_end <= starts[k + 1]:
            v = values[k]
            return Coupling(links=[(v, Occurrence(v.name, occ.axis, occ.offset - int(starts[k]), occ.block))])
    cuts = tuple(
        int((b - occ.offset) // occ.block)
        for b in starts[1:-1]
        if occ.offset < b < span_end and (b - occ.offset) % occ.block == 0
    )
    raise Unprunable(f"{node.op_type} '{node.name}': channel range straddles a {what}", cuts)


def _span(occ: Occurrence) -> int:
    return occ.size * occ.block


def h_split(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    rank = len(facts.shape(node.inputs[0]) or ())
    axis = attr_value(node, "axis", 0) % max(rank, 1)
    if axis != occ.axis:
        if port[0] == "in" and port[1] != 0:
            raise Unprunable(f"Split '{node.name}': channels reach the split sizes")
        links = [(v, Occurrence(v.name, occ.axis, occ.offset, occ.block)) for v in node.outputs]
        if port[0] == "out":
            links.append((node.inputs[0], Occurrence(node.inputs[0].name, occ.axis, occ.offset, occ.block)))
        return Coupling(links=links)
    sizes = [facts.dim(v, axis) for v in node.outputs]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    if port[0] == "out":
        x = node.inputs[0]
        coupling = Coupling(
            links=[(x, Occurrence(x.name, axis, occ.offset + int(starts[port[1]]), occ.block))]
        )
        coupling.split = (port[1], occ.block, tuple(sizes))
        return coupling
    if port[1] != 0:
        raise Unprunable(f"Split '{node.name}': channels reach the split sizes")
    coupling = _locate(node, node.outputs, starts, occ, "Split output")
    out = coupling.links[0][0]
    coupling.split = (out.index(), occ.block, tuple(sizes))
    return coupling


def h_conv(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    transpose = node.op_type == "ConvTranspose"
    w = const_array(node.inputs[1])
    if w is None:
        raise Unprunable(f"{node.op_type} '{node.name}': weight is not constant")
    if transpose and "output_shape" in node.attributes:
        raise Unprunable(f"ConvTranspose '{node.name}' has output_shape")
    group = attr_value(node, "group", 1)
    if occ.axis != 1 or occ.block != 1 or (port[0] == "in" and port[1] != 0):
        raise Unprunable(f"{node.op_type} '{node.name}': channels reach it on an unsupported operand")
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    c_in = w.shape[0] if transpose else w.shape[1] * group
    c_out = w.shape[1] * group if transpose else w.shape[0]
    if group != 1:
        if not (group == c_in == c_out):
            raise Unprunable(f"{node.op_type} '{node.name}': grouped conv (group={group}) is not depthwise")
        coupling = _same(node, port, occ)
        coupling.role = "depthwise"
        coupling.params.append(ParamSlice(node.name, 1, 0, occ.offset, 1, "depthwise"))
        if has_bias:
            coupling.params.append(ParamSlice(node.name, 2, 0, occ.offset, 1, "bias"))
        return coupling
    if port[0] == "in":
        return Coupling(
            params=[ParamSlice(node.name, 1, 0 if transpose else 1, occ.offset, 1, "weight_in")],
            role="consumer",
        )
    params = [ParamSlice(node.name, 1, 1 if transpose else 0, occ.offset, 1, "weight_out")]
    if has_bias:
        params.append(ParamSlice(node.name, 2, 0, occ.offset, 1, "bias"))
    return Coupling(params=params, role="producer")


def h_gemm(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    if attr_value(node, "transA", 0):
        raise Unprunable(f"Gemm '{node.name}' has transA")
    if const_array(node.inputs[1]) is None:
        raise Unprunable(f"Gemm '{node.name}': B is not constant")
    trans_b = attr_value(node, "transB", 0)
    if occ.axis != 1 or (port[0] == "in" and port[1] != 0):
        raise Unprunable(f"Gemm '{node.name}': channels reach it on an unsupported operand")
    if port[0] == "in":
        return Coupling(
            params=[ParamSlice(node.name, 1, 1 if trans_b else 0, occ.offset, occ.block, "weight_in")],
            role="consumer",
        )
    params = [ParamSlice(node.name, 1, 0 if trans_b else 1, occ.offset, occ.block, "weight_out")]
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        c_shape = facts.shape(node.inputs[2]) or ()
        if const_array(node.inputs[2]) is None:
            raise Unprunable(f"Gemm '{node.name}': C is not constant")
        if c_shape and c_shape[-1] != 1:
            params.append(ParamSlice(node.name, 2, len(c_shape) - 1, occ.offset, occ.block, "bias"))
    return Coupling(params=params, role="producer")


def _matmul_batch(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    """MatMul of two activations: channels on a batch axis (heads) pass through, coupling both operands."""
    out_rank = len(facts.shape(node.outputs[0]) or ())
    here = node.outputs[0] if port[0] == "out" else node.inputs[port[1]]
    out_axis = occ.axis + out_rank - len(facts.shape(here) or ())
    if out_axis >= out_rank - 2 or out_axis < 0:
        raise Unprunable(f"MatMul '{node.name}': channels reach a matrix axis of a MatMul of two activations")
    links = []
    if port[0] == "in":
        links.append((node.outputs[0], Occurrence(node.outputs[0].name, out_axis, occ.offset, occ.block)))
    for i, value in enumerate(node.inputs):
        if port == ("in", i):
            continue
        shape = facts.shape(value) or ()
        axis = out_axis - (out_rank - len(shape))
        if axis >= 0 and shape[axis] != 1:
            links.append((value, Occurrence(value.name, axis, occ.offset, occ.block)))
    return Coupling(links=links)


def h_matmul(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    w = const_array(node.inputs[1])
    if w is None and const_array(node.inputs[0]) is None:
        return _matmul_batch(facts, node, port, occ)
    if w is None or w.ndim != 2:
        raise Unprunable(f"MatMul '{node.name}': second operand is not a constant matrix")
    if port == ("in", 0):
        rank = len(facts.shape(node.inputs[0]) or ())
        if occ.axis != rank - 1:
            raise Unprunable(f"MatMul '{node.name}': channels are not on the reduction axis")
        return Coupling(
            params=[ParamSlice(node.name, 1, 0, occ.offset, occ.block, "weight_in")], role="consumer"
        )
    if port == ("out", 0):
        rank = len(facts.shape(node.outputs[0]) or ())
        if occ.axis != rank - 1:
            raise Unprunable(f"MatMul '{node.name}': channels are not the output features")
        return Coupling(
            params=[ParamSlice(node.name, 1, 1, occ.offset, occ.block, "weight_out")], role="producer"
        )
    raise Unprunable(f"MatMul '{node.name}': channels reach its weight")


def h_flatten(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    shape = facts.shape(node.inputs[0])
    if shape is None:
        raise Unprunable(f"Flatten '{node.name}': input shape unknown")
    axis = attr_value(node, "axis", 1) % max(len(shape), 1)
    return _merge(node, port, occ, shape, axis, len(shape), out_axis=1, reshape=None)


def _merge(node, port, occ, shape, start, stop, *, out_axis, reshape) -> Coupling:
    """The output merges input axes [start, stop) into ``out_axis``; the channel axis must lead them."""
    if port[0] == "out" or port[1] != 0:
        raise Unprunable(f"{node.op_type} '{node.name}': cannot map channels backwards through it")
    if not (start <= occ.axis < stop):
        if occ.axis < start:  # untouched leading axis
            return Coupling(
                links=[(node.outputs[0], Occurrence(node.outputs[0].name, occ.axis, occ.offset, occ.block))]
            )
        raise Unprunable(f"{node.op_type} '{node.name}' moves the channel axis")
    if any(shape[a] != 1 for a in range(start, occ.axis)):
        raise Unprunable(f"{node.op_type} '{node.name}': channels would be strided in the merged axis")
    inner_dims = shape[occ.axis + 1 : stop]
    if any(d is None for d in inner_dims):
        raise Unprunable(f"{node.op_type} '{node.name}': dynamic trailing dims")
    inner = int(np.prod(inner_dims, dtype=np.int64))
    out = node.outputs[0]
    coupling = Coupling(links=[(out, Occurrence(out.name, out_axis, occ.offset * inner, occ.block * inner))])
    if reshape is not None:
        coupling.reshape = (out_axis, occ.block * inner)
    return coupling


def h_reshape(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    din, dout = facts.shape(node.inputs[0]), facts.shape(node.outputs[0])
    target = const_array(node.inputs[1])
    if din is None or dout is None or target is None:
        raise Unprunable(f"Reshape '{node.name}': shapes or target not static")
    split = _reshape_split(node, port, occ, din, dout)
    if split is not None:
        return split
    if port != ("in", 0):
        raise Unprunable(f"Reshape '{node.name}': cannot map channels backwards through it")
    a = occ.axis
    if tuple(din[:a]) != tuple(dout[:a]):
        raise Unprunable(f"Reshape '{node.name}': leading dims change (unmappable Reshape)")
    if a < len(dout) and dout[a] == din[a] and tuple(din[a + 1 :]) == tuple(dout[a + 1 :]):
        coupling = Coupling(
            links=[(node.outputs[0], Occurrence(node.outputs[0].name, a, occ.offset, occ.block))]
        )
        coupling.reshape = (a, occ.block)
        return coupling
    merges_tail = a == len(dout) - 1 and dout[a] is not None and None not in din[a:]
    if merges_tail and int(np.prod(din[a:], dtype=np.int64)) == dout[a]:
        return _merge(node, port, occ, din, a, len(din), out_axis=a, reshape=True)
    raise Unprunable(f"Reshape '{node.name}': unmappable Reshape {list(din)} -> {list(dout)}")


def _reshape_split(node, port, occ, din, dout) -> Coupling | None:
    """[..., C*d] <-> [..., C, d] (multi-head split/merge): channel i of the split axis is a bundle of d."""
    if port == ("in", 0):
        a = occ.axis
        if a != len(din) - 1 or len(dout) != len(din) + 1 or tuple(din[:a]) != tuple(dout[:a]):
            return None
        if None in dout[a:] or din[a] != dout[a] * dout[a + 1]:
            return None
        inner = int(dout[a + 1])
        if occ.block == inner and occ.offset % inner == 0:
            out = node.outputs[0]
            return Coupling(links=[(out, Occurrence(out.name, a, occ.offset // inner, 1))], reshape=(a, 1))
        regroup = inner if occ.block == 1 and occ.offset % inner == 0 else 0
        raise Unprunable(
            f"Reshape '{node.name}' splits the channel axis {list(din)} -> {list(dout)} "
            "(attention heads: prunable as whole heads with --heads)",
            regroup=regroup,
        )
    b = occ.axis
    if b != len(dout) - 2 or len(din) != len(dout) - 1 or tuple(din[:b]) != tuple(dout[:b]):
        return None
    if None in dout[b:] or din[b] != dout[b] * dout[b + 1] or occ.block != 1:
        return None
    inner = int(dout[b + 1])
    x = node.inputs[0]
    return Coupling(links=[(x, Occurrence(x.name, b, occ.offset * inner, inner))], reshape=(b, 1))


def h_transpose(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    perm = list(attr_value(node, "perm", []))
    if not perm:
        raise Unprunable(f"Transpose '{node.name}' without perm")
    if port[0] == "in":
        out = node.outputs[0]
        return Coupling(links=[(out, Occurrence(out.name, perm.index(occ.axis), occ.offset, occ.block))])
    x = node.inputs[0]
    return Coupling(links=[(x, Occurrence(x.name, perm[occ.axis], occ.offset, occ.block))])


def _axes(node: ir.Node, rank: int) -> list[int] | None:
    axes = attr_value(node, "axes", None)
    if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
        arr = const_array(node.inputs[1])
        if arr is None:
            raise Unprunable(f"{node.op_type} '{node.name}': axes are not constant")
        axes = arr.reshape(-1).tolist()
    return None if axes is None else [int(x) % rank for x in axes]


def h_reduce(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    rank = len(facts.shape(node.inputs[0]) or ())
    axes = _axes(node, rank)
    if axes is None or not axes:
        raise Unprunable(f"{node.op_type} '{node.name}' reduces all axes")
    keep = attr_value(node, "keepdims", 1)
    if port != ("in", 0):
        raise Unprunable(f"{node.op_type} '{node.name}': cannot map channels backwards through it")
    if occ.axis in axes:
        raise Unprunable(f"{node.op_type} '{node.name}' reduces over the channel axis")
    axis = occ.axis if keep else occ.axis - sum(1 for x in axes if x < occ.axis)
    out = node.outputs[0]
    return Coupling(links=[(out, Occurrence(out.name, axis, occ.offset, occ.block))])


def h_squeeze(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    if port[1] != 0:
        raise Unprunable(f"{node.op_type} '{node.name}': channels reach its axes")
    squeeze = node.op_type == "Squeeze"
    rank_in = len(facts.shape(node.inputs[0]) or ())
    rank_out = len(facts.shape(node.outputs[0]) or ())
    axes = _axes(node, rank_in if squeeze else rank_out)
    if axes is None:
        raise Unprunable(f"{node.op_type} '{node.name}' without explicit axes")

    # map: axis in the larger-rank tensor <-> axis in the smaller one
    def small(a: int) -> int:
        return a - sum(1 for x in axes if x < a)

    def large(a: int) -> int:
        kept = [i for i in range(rank_in if squeeze else rank_out) if i not in axes]
        return kept[a]

    if (port[0] == "in") == squeeze:  # going from large to small
        if occ.axis in axes:
            raise Unprunable(f"{node.op_type} '{node.name}' squeezes the channel axis")
        axis = small(occ.axis)
    else:
        axis = large(occ.axis)
    target = node.outputs[0] if port[0] == "in" else node.inputs[0]
    return Coupling(links=[(target, Occurrence(target.name, axis, occ.offset, occ.block))])


def h_softmax(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    rank = len(facts.shape(node.inputs[0]) or ())
    if attr_value(node, "axis", -1) % max(rank, 1) == occ.axis:
        raise Unprunable(f"{node.op_type} '{node.name}' normalizes over the channel axis")
    return h_unary(facts, node, port, occ)


def h_layernorm(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    rank = len(facts.shape(node.inputs[0]) or ())
    if occ.axis >= attr_value(node, "axis", -1) % max(rank, 1):
        raise Unprunable(f"{node.op_type} '{node.name}' normalizes over the channel axis")
    return h_unary(facts, node, port, occ)


def h_instancenorm(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    return h_batchnorm(facts, node, port, occ)


def h_shape(facts: GraphFacts, node: ir.Node, port: Port, occ: Occurrence) -> Coupling:
    """Shape of a pruned tensor: fine when only other axes are read (``Gather`` of constant indices)."""
    rank = len(facts.shape(node.inputs[0]) or ())
    start = attr_value(node, "start", 0) % max(rank, 1) if rank else 0
    end_attr = attr_value(node, "end", None)
    end = rank if end_attr is None else (end_attr if end_attr >= 0 else end_attr + rank)
    if not start <= occ.axis < min(end, rank):
        return Coupling()
    for use in node.outputs[0].uses():
        indices = const_array(use.node.inputs[1]) if use.node.op_type == "Gather" and use.idx == 0 else None
        if indices is None or (np.asarray(indices) % max(end - start, 1) + start == occ.axis).any():
            raise Unprunable(
                f"Shape '{node.name}': the pruned axis size is read by {use.node.op_type} '{use.node.name}'"
            )
    return Coupling()


HANDLERS: dict[str, Handler] = {
    "Shape": h_shape,
    **{op: h_unary for op in UNARY},
    **{op: h_elementwise for op in ELEMENTWISE},
    **{op: h_spatial for op in SPATIAL},
    **{op: h_reduce for op in REDUCE},
    "BatchNormalization": h_batchnorm,
    "InstanceNormalization": h_instancenorm,
    "Concat": h_concat,
    "Split": h_split,
    "Conv": h_conv,
    "ConvTranspose": h_conv,
    "Gemm": h_gemm,
    "MatMul": h_matmul,
    "Flatten": h_flatten,
    "Reshape": h_reshape,
    "Transpose": h_transpose,
    "Squeeze": h_squeeze,
    "Unsqueeze": h_squeeze,
    "Softmax": h_softmax,
    "LogSoftmax": h_softmax,
    "LayerNormalization": h_layernorm,
}
