"""ONNX operators as PyTorch functions: one small function per op, behind a registry.

Each handler takes ``(node, inputs)`` where ``inputs`` are torch tensors (or None for an omitted
optional input) and returns a list of outputs. Integer shape arithmetic (Shape, Gather on shapes,
Range, ...) runs on small int64 tensors, so a graph runs eagerly with whatever input sizes it is
fed. Quantized values travel as float tensors holding integers, so gradients pass through
QuantizeLinear by the straight-through estimator (round's gradient taken as 1 inside the range).

Limits: the ops of the registry only (``SUPPORTED``); no subgraph ops (If, Loop, Scan); Conv and
pooling in 1-D/2-D/3-D with explicit pads (auto_pad SAME_* is computed for stride-1 cases only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import onnx_ir as ir
import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Handler = Callable[[ir.Node, list], list]
HANDLERS: dict[str, Handler] = {}

_DTYPES = {
    ir.DataType.FLOAT: torch.float32,
    ir.DataType.DOUBLE: torch.float64,
    ir.DataType.FLOAT16: torch.float16,
    ir.DataType.INT64: torch.int64,
    ir.DataType.INT32: torch.int32,
    ir.DataType.INT8: torch.int8,
    ir.DataType.UINT8: torch.uint8,
    ir.DataType.BOOL: torch.bool,
}
#: Integer ranges of the quantized types (QuantizeLinear's saturation bounds).
QRANGE = {
    ir.DataType.INT8: (-128, 127),
    ir.DataType.UINT8: (0, 255),
    ir.DataType.INT16: (-32768, 32767),
    ir.DataType.UINT16: (0, 65535),
    ir.DataType.INT4: (-8, 7),
    ir.DataType.UINT4: (0, 15),
}


def op(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


def attr(node: ir.Node, name: str, default=None):
    a = node.attributes.get(name)
    if a is None:
        return default
    value = a.value
    if isinstance(value, ir.TensorProtocol):
        return value.numpy()
    return list(value) if isinstance(value, tuple) else value


def ints(t: Tensor | None) -> list[int]:
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


def torch_dtype(onnx_type: int) -> torch.dtype:
    dtype = ir.DataType(onnx_type)
    if dtype not in _DTYPES:
        raise NotImplementedError(f"data type {dtype.name}")
    return _DTYPES[dtype]


# ---- elementwise --------------------------------------------------------------------------------
def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Handler:
    return lambda node, x: [fn(x[0], x[1])]


op("Add")(_binary(torch.add))
op("Sub")(_binary(torch.sub))
op("Mul")(_binary(torch.mul))
op("Pow")(_binary(lambda a, b: torch.pow(a, b.to(a.dtype) if a.is_floating_point() else b)))
op("Equal")(_binary(torch.eq))
op("Less")(_binary(torch.lt))
op("Greater")(_binary(torch.gt))
op("And")(_binary(torch.logical_and))


@op("Div")
def _div(node, x):
    a, b = x
    if a.is_floating_point():
        return [a / b]
    return [torch.div(a, b, rounding_mode="trunc")]


_UNARY = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Erf": torch.erf,
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Reciprocal": torch.reciprocal,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Not": torch.logical_not,
    "Softplus": F.softplus,
    "Identity": lambda t: t,
}
for _name, _fn in _UNARY.items():
    op(_name)(lambda node, x, _fn=_fn: [_fn(x[0])])


@op("Dropout")
def _dropout(node, x):
    return [x[0]]


@op("LeakyRelu")
def _leaky(node, x):
    return [F.leaky_relu(x[0], attr(node, "alpha", 0.01))]


@op("HardSigmoid")
def _hsig(node, x):
    return [torch.clamp(attr(node, "alpha", 0.2) * x[0] + attr(node, "beta", 0.5), 0, 1)]


@op("HardSwish")
def _hswish(node, x):
    return [F.hardswish(x[0])]


@op("Gelu")
def _gelu(node, x):
    return [F.gelu(x[0], approximate=attr(node, "approximate", "none"))]


@op("Clip")
def _clip(node, x):
    lo = x[1] if len(x) > 1 and x[1] is not None else attr(node, "min")
    hi = x[2] if len(x) > 2 and x[2] is not None else attr(node, "max")
    lo = float(lo) if lo is not None else None
    hi = float(hi) if hi is not None else None
    return [torch.clamp(x[0], lo, hi)]


@op("Max", "Min", "Sum")
def _variadic(node, x):
    fn = {"Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add}[node.op_type]
    out = x[0]
    for t in x[1:]:
        out = fn(out, t)
    return [out]


@op("Where")
def _where(node, x):
    return [torch.where(x[0], x[1], x[2])]


@op("Cast")
def _cast(node, x):
    return [x[0].to(torch_dtype(attr(node, "to")))]


# ---- linear layers --------------------------------------------------------------------------
@op("MatMul")
def _matmul(node, x):
    return [torch.matmul(x[0], x[1])]


@op("Gemm")
def _gemm(node, x):
    a, b = x[0], x[1]
    if attr(node, "transA", 0):
        a = a.transpose(0, 1)
    if attr(node, "transB", 0):
        b = b.transpose(0, 1)
    out = attr(node, "alpha", 1.0) * (a @ b)
    if len(x) > 2 and x[2] is not None:
        out = out + attr(node, "beta", 1.0) * x[2]
    return [out]


def _conv_pads(node: ir.Node, spatial: int, kernel: Sequence[int], dilations: Sequence[int]) -> list[int]:
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = [d * (k - 1) for k, d in zip(kernel, dilations, strict=True)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        return begin + [t - b for t, b in zip(total, begin, strict=True)]
    return attr(node, "pads", [0] * (2 * spatial))


def _pad_input(t: Tensor, pads: Sequence[int], value: float = 0.0) -> tuple[Tensor, list[int]]:
    """Symmetric pads go to the op; asymmetric ones are applied here (returns the op's padding)."""
    n = len(pads) // 2
    begin, end = list(pads[:n]), list(pads[n:])
    if begin == end:
        return t, begin
    torch_pads: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        torch_pads += [b, e]
    return F.pad(t, torch_pads, value=value), [0] * n


@op("Conv")
def _conv(node, x):
    w = x[1]
    spatial = w.dim() - 2
    kernel = list(w.shape[2:])
    dilations = attr(node, "dilations", [1] * spatial)
    strides = attr(node, "strides", [1] * spatial)
    data, padding = _pad_input(x[0], _conv_pads(node, spatial, kernel, dilations))
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    bias = x[2] if len(x) > 2 else None
    return [fn(data, w, bias, strides, padding, dilations, attr(node, "group", 1))]


@op("BatchNormalization")
def _bn(node, x):
    data, scale, bias, mean, var = x[:5]
    return [F.batch_norm(data, mean, var, scale, bias, False, 0.0, attr(node, "epsilon", 1e-5))]


@op("LayerNormalization")
def _ln(node, x):
    data, scale = x[0], x[1]
    bias = x[2] if len(x) > 2 else None
    axis = attr(node, "axis", -1) % data.dim()
    return [F.layer_norm(data, data.shape[axis:], scale, bias, attr(node, "epsilon", 1e-5))]


# ---- pooling --------------------------------------------------------------------------------
@op("MaxPool", "AveragePool")
def _pool(node, x):
    kernel = attr(node, "kernel_shape")
    spatial = len(kernel)
    strides = attr(node, "strides", [1] * spatial)
    dilations = attr(node, "dilations", [1] * spatial)
    ceil = bool(attr(node, "ceil_mode", 0))
    pads = _conv_pads(node, spatial, kernel, dilations)
    if node.op_type == "MaxPool":
        data, padding = _pad_input(x[0], pads, value=-math.inf)
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[spatial]
        return [fn(data, kernel, strides, padding, dilations, ceil_mode=ceil)]
    include = bool(attr(node, "count_include_pad", 0))
    data, padding = _pad_input(x[0], pads)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
    return [fn(data, kernel, strides, padding, ceil, include)]


@op("GlobalAveragePool")
def _gap(node, x):
    return [x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)]


@op("GlobalMaxPool")
def _gmp(node, x):
    return [x[0].amax(dim=tuple(range(2, x[0].dim())), keepdim=True)]


# ---- normalisation-type reductions and softmax ----------------------------------------------------
def _reduce_axes(node: ir.Node, x: list) -> list[int] | None:
    axes = ints(x[1]) if len(x) > 1 and x[1] is not None else attr(node, "axes")
    if not axes:
        return None if not attr(node, "noop_with_empty_axes", 0) else []
    return [a % x[0].dim() for a in axes]


_REDUCERS = {
    "ReduceMean": lambda t, d, k: t.mean(dim=d, keepdim=k),
    "ReduceSum": lambda t, d, k: t.sum(dim=d, keepdim=k),
    "ReduceMax": lambda t, d, k: t.amax(dim=d, keepdim=k),
    "ReduceMin": lambda t, d, k: t.amin(dim=d, keepdim=k),
    "ReduceL2": lambda t, d, k: torch.sqrt((t * t).sum(dim=d, keepdim=k)),
    "ReduceSumSquare": lambda t, d, k: (t * t).sum(dim=d, keepdim=k),
}


@op(*_REDUCERS)
def _reduce(node, x):
    axes = _reduce_axes(node, x)
    if axes == []:
        return [x[0]]
    dims = tuple(range(x[0].dim())) if axes is None else tuple(axes)
    return [_REDUCERS[node.op_type](x[0], dims, bool(attr(node, "keepdims", 1)))]


@op("Softmax", "LogSoftmax")
def _softmax(node, x):
    fn = torch.softmax if node.op_type == "Softmax" else torch.log_softmax
    return [fn(x[0], dim=attr(node, "axis", -1))]


@op("ArgMax")
def _argmax(node, x):
    return [torch.argmax(x[0], dim=attr(node, "axis", 0), keepdim=bool(attr(node, "keepdims", 1)))]


# ---- shapes and indexing ------------------------------------------------------------------------
@op("Shape")
def _shape(node, x):
    dims = list(x[0].shape)
    start, end = attr(node, "start", 0), attr(node, "end")
    return [torch.tensor(dims[start:end], dtype=torch.int64)]


@op("Reshape")
def _reshape(node, x):
    shape = ints(x[1])
    if not attr(node, "allowzero", 0):
        shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x[0].reshape(shape)]


@op("Flatten")
def _flatten(node, x):
    axis = attr(node, "axis", 1) % max(x[0].dim(), 1)
    lead = int(np.prod(x[0].shape[:axis])) if axis else 1
    return [x[0].reshape(lead, -1)]


@op("Transpose")
def _transpose(node, x):
    perm = attr(node, "perm") or list(reversed(range(x[0].dim())))
    return [x[0].permute(perm)]


@op("Unsqueeze")
def _unsqueeze(node, x):
    axes = ints(x[1]) if len(x) > 1 else attr(node, "axes")
    out = x[0]
    rank = out.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        out = out.unsqueeze(a)
    return [out]


@op("Squeeze")
def _squeeze(node, x):
    axes = ints(x[1]) if len(x) > 1 and x[1] is not None else attr(node, "axes")
    if not axes:
        return [x[0].squeeze()]
    out = x[0]
    for a in sorted((a % out.dim() for a in axes), reverse=True):
        out = out.squeeze(a)
    return [out]


@op("Concat")
def _concat(node, x):
    parts = [t for t in x if t is not None]
    dtype = parts[0].dtype
    return [torch.cat([t.to(dtype) for t in parts], dim=attr(node, "axis"))]


@op("Split")
def _split(node, x):
    axis = attr(node, "axis", 0)
    sizes = ints(x[1]) if len(x) > 1 and x[1] is not None else attr(node, "split")
    if not sizes:
        n = len(node.outputs)
        total = x[0].shape[axis]
        chunk = -(-total // n)
        sizes = [min(chunk, total - i * chunk) for i in range(n)]
    return list(torch.split(x[0], sizes, dim=axis))


@op("Slice")
def _slice(node, x):
    data = x[0]
    starts, ends = ints(x[1]), ints(x[2])
    axes = ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
    steps = ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    index = [slice(None)] * data.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        size = data.shape[axis]
        if step < 0:
            idx = list(range(size))[
                slice(start if start < size else None, end if end >= -size else None, step)
            ]
            data = data.index_select(axis % data.dim(), torch.tensor(idx, dtype=torch.long))
            continue
        start = max(min(start + size if start < 0 else start, size), 0)
        end = max(min(end + size if end < 0 else end, size), 0)
        index[axis % data.dim()] = slice(start, end, step)
    return [data[tuple(index)]]


@op("Gather")
def _gather(node, x):
    data, idx = x
    axis = attr(node, "axis", 0) % data.dim()
    idx = idx.long()
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    flat = data.index_select(axis, idx.reshape(-1))
    shape = list(data.shape[:axis]) + list(idx.shape) + list(data.shape[axis + 1 :])
    return [flat.reshape(shape)]


@op("Expand")
def _expand(node, x):
    shape = ints(x[1])
    target = torch.broadcast_shapes(tuple(x[0].shape), tuple(shape))
    return [x[0].expand(target)]


@op("Tile")
def _tile(node, x):
    return [x[0].repeat(ints(x[1]))]


@op("Range")
def _range(node, x):
    start, limit, delta = (t.item() for t in x)
    return [torch.arange(start, limit, delta, dtype=x[0].dtype)]


@op("ConstantOfShape")
def _const_of_shape(node, x):
    value = attr(node, "value")
    fill = torch.from_numpy(np.asarray(value).reshape(-1)[:1].copy()) if value is not None else torch.zeros(1)
    return [fill.reshape([]).expand(ints(x[0])).clone()]


@op("Constant")
def _constant(node, x):
    for name in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        value = attr(node, name)
        if value is not None:
            return [torch.as_tensor(np.asarray(value))]
    raise NotImplementedError("Constant without a value attribute")


@op("Pad")
def _pad(node, x):
    pads = ints(x[1]) if len(x) > 1 else attr(node, "pads")
    value = float(x[2]) if len(x) > 2 and x[2] is not None and x[2].numel() else 0.0
    mode = attr(node, "mode", "constant")
    n = len(pads) // 2
    torch_pads: list[int] = []
    for b, e in zip(reversed(pads[:n]), reversed(pads[n:]), strict=True):
        torch_pads += [b, e]
    while torch_pads[-2:] == [0, 0] and len(torch_pads) > 2:
        torch_pads = torch_pads[:-2]
    return [F.pad(x[0], torch_pads, mode=mode, value=value if mode == "constant" else None)]


@op("Resize")
def _resize(node, x):
    data = x[0]
    scales = x[2] if len(x) > 2 and x[2] is not None and x[2].numel() else None
    sizes = ints(x[3]) if len(x) > 3 and x[3] is not None else None
    mode = attr(node, "mode", "nearest")
    if sizes:
        size = sizes[2:]
    elif scales is not None:
        factors = [float(s) for s in scales.reshape(-1).tolist()]
        size = [int(math.floor(d * f)) for d, f in zip(data.shape[2:], factors[2:], strict=True)]
    else:
        raise NotImplementedError("Resize without scales or sizes")
    if mode == "nearest":
        if attr(node, "coordinate_transformation_mode", "half_pixel") == "asymmetric":
            return [F.interpolate(data, size=size, mode="nearest")]
        return [F.interpolate(data, size=size, mode="nearest-exact")]
    torch_mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    align = attr(node, "coordinate_transformation_mode", "half_pixel") == "align_corners"
    return [F.interpolate(data, size=size, mode=torch_mode, align_corners=align)]


# ---- quantization (fake-quant, straight-through) --------------------------------------------------
class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):  # noqa: D102
        return torch.round(t)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad


def _per_axis(param: Tensor, data: Tensor, axis: int) -> Tensor:
    if param.dim() == 0 or param.numel() == 1:
        return param.reshape([])
    shape = [1] * data.dim()
    shape[axis % data.dim()] = -1
    return param.reshape(shape)


def fake_quantize(w: Tensor, scale: Tensor, zero: Tensor | None, qtype: ir.DataType, axis: int) -> Tensor:
    """round(w / scale) + zero, clamped to the type's range, with a straight-through gradient."""
    lo, hi = QRANGE[qtype]
    s = _per_axis(scale, w, axis)
    z = _per_axis(zero.to(w.dtype), w, axis) if zero is not None else 0.0
    return torch.clamp(_RoundSTE.apply(w / s) + z, lo, hi)


@op("QuantizeLinear")
def _quantize(node, x):
    qtype = ir.DataType(node.outputs[0].dtype) if node.outputs[0].dtype is not None else None
    if qtype is None and len(x) > 2 and x[2] is not None:
        qtype = {torch.int8: ir.DataType.INT8, torch.uint8: ir.DataType.UINT8}.get(x[2].dtype)
    zero = x[2] if len(x) > 2 else None
    return [fake_quantize(x[0], x[1], zero, qtype or ir.DataType.UINT8, attr(node, "axis", 1))]


@op("DequantizeLinear")
def _dequantize(node, x):
    data = x[0].float()
    axis = attr(node, "axis", 1)
    z = _per_axis(x[2].float(), data, axis) if len(x) > 2 and x[2] is not None else 0.0
    return [(data - z) * _per_axis(x[1], data, axis)]


SUPPORTED = frozenset(HANDLERS)
