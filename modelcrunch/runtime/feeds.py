"""Input feeds for a session: synthesised from its signature, or checked when they are real data.

Synthesis is dtype-aware and seeded:

* floating point (float16/32/64): standard normal;
* integers: uniform in ``[0, high)`` where ``high`` is the vocabulary size an embedding
  ``Gather`` reveals (see :func:`index_limits`) or 100 (256 for uint8 — image bytes); integer
  inputs whose name contains ``mask`` are all ones (attention masks);
* bool: fair coin flips.

Dims: ``shapes`` overrides an input's dims (``"?"`` keeps the model's dim); ``batch`` sets a
symbolic leading dim, and a fixed one must equal it unless ``shapes`` gives that input's leading
dim (a recurrent state's fixed ``[2, n, 128]`` is no batch axis); a symbolic dim named like one
already fixed takes the same value (e.g. ``seq`` shared by ``input_ids`` and ``attention_mask``);
a symbolic leading dim with no batch given is 1. Any other symbolic dim left open is an error that
says which ``--shape`` fixes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from modelcrunch.budget import nbytes, reserve
from modelcrunch.errors import ModelcrunchError

logger = logging.getLogger(__name__)

ORT_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
}
DEFAULT_INT_HIGH = 100


def input_dtype(node_arg: ort.NodeArg) -> np.dtype:
    """The numpy dtype of a session input, or a one-line error for types we cannot feed."""
    dtype = ORT_DTYPES.get(node_arg.type)
    if dtype is None:
        raise ModelcrunchError(
            f"input '{node_arg.name}' has type {node_arg.type}, which modelcrunch cannot feed"
        )
    return dtype


def resolve_shape(
    node_arg: ort.NodeArg,
    *,
    override: Sequence[int | str] | None = None,
    batch: int | None = None,
    symbols: dict[str, int] | None = None,
) -> list[int]:
    """Concrete dims for one input (see the module docstring for the rules)."""
    symbols = {} if symbols is None else symbols
    dims: list[int | str | None] = list(node_arg.shape)
    if override is not None:
        if len(override) != len(dims):
            raise ModelcrunchError(
                f"--shape {node_arg.name}: {len(override)} dims given, the input has rank {len(dims)} "
                f"({_fmt(dims)})"
            )
        for i, (new, old) in enumerate(zip(override, dims, strict=True)):
            if new == "?":
                continue
            if isinstance(old, int) and old != new:
                raise ModelcrunchError(
                    f"--shape {node_arg.name}: dim {i} is fixed to {old} in the model, got {new}"
                )
            if isinstance(old, str):
                symbols.setdefault(old, int(new))
            dims[i] = int(new)
    original = list(node_arg.shape)
    if batch is not None and dims:
        if isinstance(original[0], int) and original[0] > 0:
            # a fixed leading dim the user's --shape for this input restates is no batch axis
            if original[0] != batch and (override is None or override[0] == "?"):
                raise ModelcrunchError(
                    f"input '{node_arg.name}' has a fixed batch dim of {original[0]}; "
                    f"cannot run it with batch {batch}"
                )
        else:
            if isinstance(original[0], str):
                symbols[original[0]] = batch
            dims[0] = batch
    concrete: list[int] = []
    for i, dim in enumerate(dims):
        if isinstance(dim, int) and dim > 0:
            concrete.append(dim)
        elif isinstance(dim, str) and dim in symbols:
            concrete.append(symbols[dim])
        elif i == 0:
            value = batch if batch is not None else 1
            if isinstance(dim, str):
                symbols[dim] = value
            concrete.append(value)
        else:
            example = "x".join(str(d) if isinstance(d, int) and d > 0 else "N" for d in dims)
            raise ModelcrunchError(
                f"input '{node_arg.name}' has a symbolic dim '{dim or '?'}' (axis {i}); "
                f"fix it with --shape {node_arg.name}={example}"
            )
    return concrete


def _fmt(dims: Sequence[object]) -> str:
    """``(batch, 64)``: parentheses, because rich would read ``[batch, 64]`` as markup in CLI errors."""
    return "(" + ", ".join(str(d) for d in dims) + ")"


def synthesize_feeds(
    session: ort.InferenceSession,
    *,
    shapes: Mapping[str, Sequence[int | str]] | None = None,
    batch: int | None = None,
    seed: int = 0,
    int_high: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """One feed dict for every session input (dtype-aware, seeded; see the module docstring)."""
    shapes = dict(shapes or {})
    inputs = session.get_inputs()
    unknown = sorted(set(shapes) - {i.name for i in inputs})
    if unknown:
        names = ", ".join(i.name for i in inputs)
        raise ModelcrunchError(f"--shape: unknown input name '{unknown[0]}'; the model's inputs are: {names}")
    rng = np.random.default_rng(seed)
    symbols: dict[str, int] = {}
    # Fix shapes first (overrides before defaults) so symbols shared across inputs agree.
    ordered = sorted(inputs, key=lambda i: i.name not in shapes)
    dims = {
        i.name: resolve_shape(i, override=shapes.get(i.name), batch=batch, symbols=symbols) for i in ordered
    }
    feeds: dict[str, np.ndarray] = {}
    for node_arg in inputs:
        shape, dtype = dims[node_arg.name], input_dtype(node_arg)
        reserve(nbytes(shape, dtype.itemsize), f"input '{node_arg.name}' of shape {_fmt(shape)}")
        high = (int_high or {}).get(node_arg.name)
        feeds[node_arg.name] = _random(rng, node_arg.name, shape, dtype, high)
    return feeds


def _random(
    rng: np.random.Generator, name: str, shape: list[int], dtype: np.dtype, high: int | None
) -> np.ndarray:
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(rng.random(shape) < 0.5)
    if "mask" in name.lower() and high is None:
        return np.ones(shape, dtype)
    if high is None:
        high = 256 if dtype == np.uint8 else DEFAULT_INT_HIGH
    high = int(min(high, np.iinfo(dtype).max))
    return rng.integers(0, max(high, 1), size=shape).astype(dtype)


def index_limits(model: ir.Model) -> dict[str, int]:
    """Graph inputs used (directly or through Cast) as Gather indices into an initializer table.

    ``{"input_ids": 30522}`` for a BERT-like embedding: token ids must stay below the table's
    row count (the size of the gathered axis).
    """
    limits: dict[str, int] = {}
    for graph_input in model.graph.inputs:
        frontier, seen = [graph_input], set()
        while frontier:
            value = frontier.pop()
            if id(value) in seen:
                continue
            seen.add(id(value))
            for node, index in value.uses():
                if node.op_type == "Cast" and node.domain == "":
                    frontier.extend(node.outputs)
                elif node.op_type == "Gather" and node.domain == "" and index == 1:
                    table = node.inputs[0]
                    if table is None or table.const_value is None:
                        continue
                    axis_attr = node.attributes.get("axis")
                    axis = axis_attr.as_int() if axis_attr is not None else 0
                    rows = table.const_value.shape[axis]
                    name = graph_input.name or ""
                    limits[name] = min(limits.get(name, rows), int(rows))
    return limits


def check_feed(
    session: ort.InferenceSession, feed: Mapping[str, np.ndarray], *, where: str = "inputs"
) -> None:
    """One-line error unless ``feed`` has every input with the model's dtype, rank and fixed dims."""
    for node_arg in session.get_inputs():
        if node_arg.name not in feed:
            raise ModelcrunchError(f"{where}: no array for model input '{node_arg.name}'")
        arr, dtype = feed[node_arg.name], input_dtype(node_arg)
        if arr.dtype != dtype:
            raise ModelcrunchError(
                f"{where}: input '{node_arg.name}' is {arr.dtype}, the model expects {dtype} "
                f"(convert with arr.astype(np.{dtype.name}))"
            )
        if arr.ndim != len(node_arg.shape):
            raise ModelcrunchError(
                f"{where}: input '{node_arg.name}' has rank {arr.ndim} {_fmt(arr.shape)}, "
                f"the model expects rank {len(node_arg.shape)} {_fmt(node_arg.shape)}"
            )
        for axis, (got, want) in enumerate(zip(arr.shape, node_arg.shape, strict=True)):
            if isinstance(want, int) and want > 0 and got != want:
                raise ModelcrunchError(
                    f"{where}: input '{node_arg.name}' has shape {_fmt(arr.shape)}, the model expects "
                    f"{_fmt(node_arg.shape)} (axis {axis})"
                )


def check_dataset(
    session: ort.InferenceSession, samples: Iterable[Mapping[str, np.ndarray]], where: str
) -> None:
    """:func:`check_feed` on every sample: the one check of user data, whichever command reads it."""
    for i, sample in enumerate(samples):
        check_feed(session, sample, where=f"{where} sample {i}")
