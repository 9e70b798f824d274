"""Channel bookkeeping shared by the group analysis and the per-op handlers: where a group's
channels live in a tensor (Occurrence), which constant slices they own (ParamSlice), the group
itself, how one op couples its ports (Coupling), and static facts about the graph (GraphFacts)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir

logger = logging.getLogger(__name__)

Dim = int | None


@dataclass(frozen=True)
class Occurrence:
    """Channel ``i`` of the group sits at ``offset + i*block + [0, block)`` on ``axis`` of ``value``."""

    value: str
    axis: int
    offset: int
    block: int
    size: int = 0


@dataclass(frozen=True)
class ParamSlice:
    """A constant input of ``node`` whose ``axis`` carries the group's channels."""

    node: str
    input: int
    axis: int
    offset: int
    block: int
    kind: str  # "weight_out" | "weight_in" | "depthwise" | "bias" | "bn_scale" | "bn_other" | "const"


@dataclass
class ChannelGroup:
    """All slices coupled to ``size`` channels; ``reason`` is set when the group cannot be pruned."""

    id: int
    size: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    members: list[Occurrence] = field(default_factory=list)
    params: list[ParamSlice] = field(default_factory=list)
    reshapes: list[tuple[str, int, int]] = field(default_factory=list)  # (node, shape index, block)
    splits: list[tuple[str, int, int, tuple[int, ...]]] = field(
        default_factory=list
    )  # (node, output, block, sizes)
    depthwise: list[str] = field(default_factory=list)
    reason: str | None = None
    block: int = 1  # >1: one channel of the group is a bundle of ``block`` features (an attention head)

    @property
    def prunable(self) -> bool:
        return self.reason is None


def expand_indices(channels: np.ndarray, offset: int, block: int) -> np.ndarray:
    """Indices on the axis for ``channels`` of a group member at (offset, block)."""
    channels = np.asarray(channels, dtype=np.int64)
    return (offset + channels[:, None] * block + np.arange(block)[None, :]).reshape(-1)


class Unprunable(Exception):
    def __init__(self, reason: str, cuts: tuple[int, ...] = (), regroup: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cuts = cuts
        self.regroup = regroup  # retry with channels bundled in blocks of this many (attention heads)


# ------------------------------------------------------------------------------------ graph facts


class GraphFacts:
    """Static shapes and constants of the main graph, looked up by value name."""

    def __init__(self, model: ir.Model, input_shapes: dict[str, list[int | str]] | None = None) -> None:
        """``input_shapes``: ``--shape``-style dims for the graph inputs (e.g. from the data)."""
        self.graph = model.graph
        self.shapes: dict[str, tuple[Dim, ...]] = {}
        proto = ir.to_proto(model)
        if input_shapes:
            from modelcrunch.analysis.shapes import set_input_dims

            set_input_dims(proto, input_shapes)
        try:
            proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
        except Exception as exc:  # noqa: BLE001 - inference is best effort
            logger.warning("shape inference failed: %s", exc)
        for info in [*proto.graph.input, *proto.graph.value_info, *proto.graph.output]:
            if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
                self.shapes[info.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim
                )
        for init in proto.graph.initializer:
            self.shapes[init.name] = tuple(init.dims)
        self.values: dict[str, ir.Value] = {}
        for node in self.graph:
            for v in [*node.inputs, *node.outputs]:
                if v is not None:
                    self.values[v.name] = v
        for v in [*self.graph.inputs, *self.graph.initializers.values()]:
            self.values[v.name] = v
        self.outputs = {v.name for v in self.graph.outputs}
        self.nodes = {node.name: node for node in self.graph}

    def shape(self, value: ir.Value | None) -> tuple[Dim, ...] | None:
        return None if value is None else self.shapes.get(value.name)

    def dim(self, value: ir.Value, axis: int) -> int:
        shape = self.shape(value)
        if shape is None or axis >= len(shape) or shape[axis] is None:
            raise Unprunable(f"unknown static size of '{value.name}' axis {axis}")
        return int(shape[axis])


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value of an initializer or a Constant node's output, else None."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
        attr = producer.attributes.get("value")
        if attr is not None:
            return attr.as_tensor().numpy()
        for key in ("value_ints", "value_floats"):
            if key in producer.attributes:
                return np.array(producer.attributes[key].value)
        for key in ("value_int", "value_float"):
            if key in producer.attributes:
                return np.array(producer.attributes[key].value)
    return None


def attr_value(node: ir.Node, name: str, default):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


Port = tuple[str, int]  # ("in" | "out", index)


@dataclass
class Coupling:
    links: list[tuple[ir.Value, Occurrence]] = field(default_factory=list)
    params: list[ParamSlice] = field(default_factory=list)
    role: str | None = None  # "producer" | "consumer" | "depthwise"
    reshape: tuple[int, int] | None = None  # (shape index, block) to shrink
    split: tuple[int, int, tuple[int, ...]] | None = None  # (output index, block, original sizes) to shrink


Handler = Callable[[GraphFacts, ir.Node, Port, Occurrence], Coupling]
