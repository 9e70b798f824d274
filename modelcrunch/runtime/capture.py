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
    Names that are graph inputs come from the feed."""
    proto = ir.to_proto(model)
    inputs = {v.name for v in proto.graph.input}
    present = {o.name for o in proto.graph.output}
    wanted = sorted(set(names) - inputs)
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in wanted if n not in present)
    with tempfile.TemporaryDirectory(prefix="modelcrunch-capture-") as tmp:
        path = Path(tmp) / "capture.onnx"
        onnx.save(proto, str(path), save_as_external_data=proto.ByteSize() > EXTERNAL_DATA_BYTES)
        session = make_session(path, threads=threads, optimization=optimization)
    for feed in feeds:
        outputs = session.run(wanted, dict(feed)) if wanted else []  # run([]) would return every output
        yield {**feed, **dict(zip(wanted, outputs, strict=True))}
