"""An ONNX graph as a ``torch.nn.Module``: interpreted node by node, float weights as parameters.

``GraphModule(model)`` keeps the graph as it is; it only holds the model's initializers as torch
tensors. Which of them train (:func:`trainable_names`):

* float initializers with more than one element that feed a weight slot (Conv, ConvTranspose,
  Gemm, MatMul, BatchNormalization scale/bias, LayerNormalization scale/bias) or the constant
  operand of an Add/Mul (biases and norm weights of decomposed layers). Running means and
  variances, shapes, anchors and scalars (eps, exponents) stay fixed. A Conv fed by a Softmax
  (YOLO's distribution-focal-loss integral, an arange kernel) stays fixed.
* quantized weights (an integer initializer read by DequantizeLinear with constant scale) train
  as float shadows ``w``; the forward pass uses ``(clamp(round(w / s) + z) - z) * s`` with a
  straight-through gradient, and :meth:`GraphModule.export` writes ``clamp(round(w / s) + z)``
  back in the initializer's own integer type.

:meth:`GraphModule.export` returns the trained values by initializer name; nothing else of the
graph changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir
import torch

from modelcrunch.distill import ops
from modelcrunch.errors import ModelcrunchError

_WEIGHT_SLOTS = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1),
    "BatchNormalization": (1, 2),
    "LayerNormalization": (1, 2),
    "Add": (0, 1),
    "Mul": (0, 1),
}
_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE)


class UnsupportedModel(ModelcrunchError):
    """The graph holds something the translation cannot run (exit 2)."""


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def check_supported(model: ir.Model) -> None:
    """Raise UnsupportedModel naming the first op the translation lacks."""
    for node in model.graph:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ops.SUPPORTED:
            name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            raise UnsupportedModel(f"op {name} is not supported by distill (node '{node.name}')")


def trainable_names(model: ir.Model) -> tuple[set[str], set[str]]:
    """(float initializers that train, integer initializers that train through fake-quant)."""
    floats: set[str] = set()
    quantized: set[str] = set()
    inits = model.graph.initializers
    for node in model.graph:
        if node.op_type == "DequantizeLinear":
            w = node.inputs[0]
            if (
                w is not None
                and w.name in inits
                and w.const_value.dtype in ops.QRANGE
                and w.const_value.size > 1
                and _const(node.inputs[1]) is not None
            ):
                quantized.add(w.name)
            continue
        slots = _WEIGHT_SLOTS.get(node.op_type, ())
        if node.op_type == "Conv" and node.inputs[0] is not None:
            producer = node.inputs[0].producer()
            if producer is not None and producer.op_type in ("Softmax", "Transpose", "Reshape"):
                before = producer.inputs[0].producer() if producer.inputs[0] is not None else None
                if producer.op_type == "Softmax" or (before is not None and before.op_type == "Softmax"):
                    continue
        for slot in slots:
            if slot >= len(node.inputs) or node.inputs[slot] is None:
                continue
            value = node.inputs[slot]
            if value.name not in inits or value.const_value is None:
                continue
            tensor = value.const_value
            if tensor.dtype not in _FLOATS or tensor.size <= 1:
                continue
            if node.op_type in ("Add", "Mul") and len(tensor.shape) > 1 and tensor.shape[0] > 1:
                continue  # an anchor grid or a stride table, not a per-channel bias/scale
            floats.add(value.name)
    return floats, quantized


class GraphModule(torch.nn.Module):
    """Runs an ``ir.Model`` with torch ops; its trainable weights are ``nn.Parameter``s."""

    def __init__(self, model: ir.Model, *, train_weights: bool = True) -> None:
        super().__init__()
        check_supported(model)
        self.model = model
        self.nodes = list(model.graph)
        self.input_names = [v.name for v in model.graph.inputs]
        self.output_names = [v.name for v in model.graph.outputs]
        floats, quantized = trainable_names(model) if train_weights else (set(), set())
        self.params = torch.nn.ParameterList()
        self.param_index: dict[str, int] = {}
        self.constants: dict[str, torch.Tensor] = {}
        self.qmeta: dict[str, tuple[ir.DataType, str, str | None, int]] = {}
        for node in self.nodes:
            if node.op_type == "DequantizeLinear" and node.inputs[0] is not None:
                name = node.inputs[0].name
                if name in quantized:
                    zero = (
                        node.inputs[2].name if len(node.inputs) > 2 and node.inputs[2] is not None else None
                    )
                    axis = ops.attr(node, "axis", 1)
                    self.qmeta[name] = (node.inputs[0].const_value.dtype, node.inputs[1].name, zero, axis)
        for name, value in model.graph.initializers.items():
            if value.const_value is None:
                continue
            array = value.const_value.numpy()
            if name in floats:
                self._add_param(name, torch.from_numpy(np.array(array, dtype=np.float32)))
            elif name in self.qmeta:
                qtype, scale, zero, axis = self.qmeta[name]
                s = _const(model.graph.initializers[scale]).astype(np.float32)
                z = _const(model.graph.initializers[zero]).astype(np.float32) if zero else np.float32(0)
                shape = [1] * array.ndim
                if s.size > 1:
                    shape[axis % array.ndim] = -1
                shadow = (array.astype(np.float32) - z.reshape(shape)) * s.reshape(shape)
                self._add_param(name, torch.from_numpy(np.ascontiguousarray(shadow)))
            else:
                self.constants[name] = _to_torch(array)

    def _add_param(self, name: str, tensor: torch.Tensor) -> None:
        self.param_index[name] = len(self.params)
        self.params.append(torch.nn.Parameter(tensor.contiguous()))

    def weight(self, name: str) -> torch.Tensor:
        return self.params[self.param_index[name]]

    def forward(
        self, feeds: Mapping[str, torch.Tensor], extra: Iterable[str] = ()
    ) -> dict[str, torch.Tensor]:
        """The graph's outputs (and the values named in ``extra``) by name."""
        env: dict[str, torch.Tensor | None] = dict(self.constants)
        for name, i in self.param_index.items():
            env[name] = self.params[i]
        env.update(feeds)
        for node in self.nodes:
            inputs = [env[v.name] if v is not None and v.name else None for v in node.inputs]
            if node.op_type == "DequantizeLinear" and node.inputs[0] is not None:
                name = node.inputs[0].name
                if name in self.qmeta:
                    qtype, _, zero, axis = self.qmeta[name]
                    inputs[0] = ops.fake_quantize(
                        inputs[0], inputs[1], env[zero] if zero else None, qtype, axis
                    )
            try:
                outputs = ops.HANDLERS[node.op_type](node, inputs)
            except (RuntimeError, NotImplementedError, ValueError, IndexError, TypeError) as exc:
                raise UnsupportedModel(
                    f"distill cannot run node '{node.name}' ({node.op_type}): {str(exc).splitlines()[0]}"
                ) from exc
            for value, out in zip(node.outputs, outputs, strict=False):
                if value.name:
                    env[value.name] = out
        wanted = list(self.output_names) + [n for n in extra if n not in self.output_names]
        return {n: env[n] for n in wanted}

    def export(self) -> dict[str, np.ndarray]:
        """The trained initializers by name, in each initializer's own dtype."""
        out: dict[str, np.ndarray] = {}
        with torch.no_grad():
            for name, i in self.param_index.items():
                value = self.params[i].detach()
                original = self.model.graph.initializers[name].const_value
                if name in self.qmeta:
                    qtype, scale, zero, axis = self.qmeta[name]
                    z = self.constants[zero] if zero else None
                    q = ops.fake_quantize(value, self.constants[scale], z, qtype, axis)
                    out[name] = q.numpy().astype(original.numpy().dtype)
                else:
                    out[name] = value.numpy().astype(original.numpy().dtype)
        return out


def _to_torch(array: np.ndarray) -> torch.Tensor:
    if array.dtype == np.uint16 or array.dtype.kind not in "fiub":
        array = array.astype(np.float32)
    if array.dtype == np.uint32 or array.dtype == np.uint64:
        array = array.astype(np.int64)
    return torch.from_numpy(np.array(array))


def feeds_to_torch(feed: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: _to_torch(np.asarray(arr)) for name, arr in feed.items()}


def apply_weights(model: ir.Model, weights: Mapping[str, np.ndarray]) -> None:
    """Replace the named initializers' values in place (names and dtypes unchanged)."""
    for name, array in weights.items():
        value = model.graph.initializers[name]
        value.const_value = ir.tensor(np.ascontiguousarray(array), name=name)
