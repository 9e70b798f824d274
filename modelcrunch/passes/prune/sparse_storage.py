"""Store sufficiently sparse initializers as ONNX sparse initializers (``graph.sparse_initializer``).

A dense float32 tensor of ``n`` elements takes ``4n`` bytes; its sparse form takes ``4·nnz`` bytes of
values plus ``8·nnz`` bytes of int64 linear indices, so it only pays when ``nnz < n/3`` (sparsity
above ~67% for float32). A tensor is converted only when its sparsity is at least ``min_sparsity``
*and* the sparse form is smaller. ONNX Runtime densifies sparse initializers when it loads the
model: this saves disk / download size, not memory or time. Works on a saved file, rewritten
atomically and verified (checker + ONNX Runtime) like every saved model.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from modelcrunch.io import verify_model_file


@dataclass(frozen=True)
class SparseStorage:
    tensors: tuple[str, ...]
    size_before: int
    size_after: int

    def to_dict(self) -> dict:
        return {"tensors": list(self.tensors), "size_before": self.size_before, "size_after": self.size_after}


def to_sparse(tensor: onnx.TensorProto) -> onnx.SparseTensorProto:
    array = numpy_helper.to_array(tensor)
    flat = array.reshape(-1)
    idx = np.flatnonzero(flat).astype(np.int64)
    values = numpy_helper.from_array(flat[idx], tensor.name)
    indices = numpy_helper.from_array(idx, f"{tensor.name}_indices")
    return onnx.helper.make_sparse_tensor(values, indices, list(array.shape))


def store_sparse(path: str | os.PathLike, *, min_sparsity: float = 0.5) -> SparseStorage:
    """Rewrite the model at ``path`` with sparse initializers where that is smaller."""
    path = Path(path)
    size_before = path.stat().st_size
    proto = onnx.load(str(path))
    keep, converted = [], []
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.size < 16 or array.dtype.kind != "f":
            keep.append(init)
            continue
        nnz = int(np.count_nonzero(array))
        dense_bytes = array.nbytes
        sparse_bytes = nnz * (array.itemsize + 8)
        if 1 - nnz / array.size >= min_sparsity and sparse_bytes < dense_bytes:
            proto.graph.sparse_initializer.append(to_sparse(init))
            converted.append(init.name)
        else:
            keep.append(init)
    if not converted:
        return SparseStorage((), size_before, size_before)
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        verify_model_file(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return SparseStorage(tuple(converted), size_before, path.stat().st_size)
