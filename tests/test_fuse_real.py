"""Opt-in (`make test-real`): the exact fusions on every real model keep its outputs and signature."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from conftest import real_model_feeds, real_model_paths

from modelcrunch.io import load_model
from modelcrunch.passes.fuse import fuse_for_int8

pytestmark = pytest.mark.real_models

MODELS = real_model_paths()
#: Folded weights reorder fp32 products; errors stay at float-rounding level relative to each output.
RTOL = 1e-4


@pytest.mark.skipif(not MODELS, reason="run `make real-models` first")
@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_fusions_keep_outputs(path):
    model = load_model(path)
    result = fuse_for_int8(model)
    proto = ir.to_proto(model)
    onnx.checker.check_model(proto)
    original = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fused = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in fused.get_inputs()] == [(i.name, i.type) for i in original.get_inputs()]
    assert [o.name for o in fused.get_outputs()] == [o.name for o in original.get_outputs()]
    feeds = real_model_feeds(original)
    for ref, got in zip(original.run(None, feeds), fused.run(None, feeds), strict=True):
        if np.issubdtype(ref.dtype, np.floating):
            scale = float(np.abs(ref).max()) or 1.0
            np.testing.assert_allclose(got, ref, rtol=RTOL, atol=RTOL * scale)
        else:
            np.testing.assert_array_equal(got, ref)
    if "PP-OCR" in path.name:
        assert result.hard_swish and (result.output_affine or "cls" in path.name)
    assert not fuse_for_int8(model).changed  # idempotent
