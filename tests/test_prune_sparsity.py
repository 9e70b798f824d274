"""Unstructured magnitude pruning, N:M patterns and sparse storage."""

from __future__ import annotations

import models_prune as mp
import numpy as np
import onnx
import onnxruntime as ort
from models import assert_same_signature, save_proto
from onnx import numpy_helper

from modelcrunch.io import load_model, save_model
from modelcrunch.passes.prune.magnitude import magnitude_prune
from modelcrunch.passes.prune.nm import check_nm, nm_prune
from modelcrunch.passes.prune.sparse_storage import store_sparse


def weights(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_requested_sparsity_is_reached_per_layer_and_global(tmp_path):
    src = save_proto(mp.residual_add(), tmp_path / "in.onnx")
    for scope in ("local", "global"):
        model = load_model(src)
        layers = magnitude_prune(model, sparsity=0.5, scope=scope)
        out = save_model(model, tmp_path / f"{scope}.onnx", source=src).path
        assert_same_signature(src, out)
        w = weights(out)
        total = sum(w[x.name].size for x in layers)
        zeros = sum(int((w[x.name] == 0).sum()) for x in layers)
        assert zeros / total >= 0.5
        if scope == "local":
            assert all(x.sparsity_after >= 0.5 for x in layers)
        original = weights(src)
        assert all(np.array_equal(w[n], original[n]) for n in w if w[n].ndim == 1)  # biases/BN untouched


def test_two_four_pattern_holds_along_reduction_axis(tmp_path):
    src = save_proto(mp.mlp_chain(), tmp_path / "in.onnx")
    model = load_model(src)
    layers, left = nm_prune(model, 2, 4)
    out = save_model(model, tmp_path / "nm.onnx", source=src).path
    w = weights(out)
    assert check_nm(w["w1"], 1, 2, 4)  # Gemm transB=1: B is [N, K]
    assert check_nm(w["w2"], 0, 2, 4) and check_nm(w["w3"], 0, 2, 4)
    assert all(abs(x.sparsity_after - 0.5) < 1e-9 or x.sparsity_before > 0 for x in layers)
    assert not left


def test_sparse_storage_loads_in_onnxruntime_and_is_smaller(tmp_path):
    src = save_proto(mp.residual_add(), tmp_path / "in.onnx")
    model = load_model(src)
    magnitude_prune(model, sparsity=0.9)
    out = save_model(model, tmp_path / "sparse.onnx", source=src).path
    x = {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    dense = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, x)[0]
    storage = store_sparse(out, min_sparsity=0.5)
    assert storage.tensors and storage.size_after < storage.size_before
    assert len(onnx.load(str(out)).graph.sparse_initializer) == len(storage.tensors)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, x)[0]
    np.testing.assert_array_equal(got, dense)
