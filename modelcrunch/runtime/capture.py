"""A model's intermediate activations on calibration feeds, one feed at a time.

Shared by factorize's input statistics (``passes/factorize/calibration.py``) and quantize's GPTQ
rounding (``passes/quantize/gptq.py``): both fold each feed's activations into per-layer sums and
drop them, so memory holds one feed's activations, never all of them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from modelcrunch.runtime.session import make_session

#: Past this many bytes the augmented copy is saved with external data (protobuf's limit is 2 GB).
EXTERNAL_DATA_BYTES = 1_800_000_000


def with_activations(
    model: ir.Model,
    names: Iterable[str],
    feeds: Iterable[Mapping[str, np.ndarray]],
    *,
    threads: int | None = None,
    optimization: str = "all",
) -> Iterator[dict[str, np.ndarray]]:
    """Run ``model`` (not changed: a copy gets the extra outputs) with the values ``names`` made
    graph outputs; for each of ``feeds``, yield the feed's arrays together with those values.
    Names that are graph inputs come from the feed. Only the nodes they depend on are kept
    (``keep_ancestors``): ONNX Runtime runs every node of a graph, whatever outputs are asked for."""
    proto = ir.to_proto(model)
    inputs = {v.name for v in proto.graph.input}
    present = {o.name for o in proto.graph.output}
    wanted = sorted(set(names) - inputs)
    if not wanted:  # every value is an input: no session to run
        yield from (dict(feed) for feed in feeds)
        return
    kept = [o for o in proto.graph.output if o.name in wanted]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in wanted if n not in present)
    keep_ancestors(proto.graph, wanted)  # only the nodes the values need run
    with tempfile.TemporaryDirectory(prefix="modelcrunch-capture-") as tmp:
        path = Path(tmp) / "capture.onnx"
        onnx.save(proto, str(path), save_as_external_data=proto.ByteSize() > EXTERNAL_DATA_BYTES)
        session = make_session(path, threads=threads, optimization=optimization)
    needed = {i.name for i in session.get_inputs()}  # the inputs the kept nodes read
    for feed in feeds:
        outputs = session.run(wanted, {k: v for k, v in feed.items() if k in needed})
        yield {**feed, **dict(zip(wanted, outputs, strict=True))}


def keep_ancestors(graph: onnx.GraphProto, names: list[str]) -> None:
    """Drop the nodes ``names`` do not depend on, and the initializers left unused: ONNX Runtime runs
    every node of a graph whatever outputs are asked for, so reading an early layer would cost a
    whole forward pass."""
    nodes, initializers, sparse = closure(graph, names)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.sparse_initializer[:]
    graph.sparse_initializer.extend(sparse)


def closure(
    graph: onnx.GraphProto, names: list[str]
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[onnx.SparseTensorProto]]:
    """The nodes of ``graph`` that ``names`` depend on (in graph order), and the initializers and
    sparse initializers they read."""
    needed = _ancestors(graph, names)
    nodes = [node for i, node in enumerate(graph.node) if i in needed]
    used = {n for node in nodes for n in _reads(node)} | set(names)
    return (
        nodes,
        [t for t in graph.initializer if t.name in used],
        [t for t in graph.sparse_initializer if t.values.name in used],
    )


def _ancestors(graph: onnx.GraphProto, names: list[str]) -> set[int]:
    """Indexes of the nodes of ``graph`` that ``names`` depend on. A node with subgraphs depends on
    every name its subgraphs read."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    needed: set[int] = set()
    stack = [producer[n] for n in names if n in producer]
    while stack:
        index = stack.pop()
        if index in needed:
            continue
        needed.add(index)
        stack += [
            producer[n] for n in _reads(graph.node[index]) if n in producer and producer[n] not in needed
        ]
    return needed


def _reads(node: onnx.NodeProto) -> set[str]:
    """The names ``node`` reads: its inputs and, through subgraphs, every name they use."""
    names = {n for n in node.input if n}
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in sub.node:
                names |= _reads(inner)
    return names
