"""Opt-in (`make test-real`): load → canonicalise → save round-trips every real model exactly."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import real_model_feeds, real_model_paths

from modelcrunch.io import load_model, save_model

pytestmark = pytest.mark.real_models

MODELS = real_model_paths()


@pytest.mark.skipif(not MODELS, reason="run `make real-models` first")
@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_round_trip_is_exact(path, tmp_path):
    model = load_model(path)
    assert all(n.op_type != "Constant" or "value" not in n.attributes for g in model.graphs() for n in g)
    out = save_model(model, tmp_path / path.name, source=path)
    a = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(out.path), providers=["CPUExecutionProvider"])
    feeds = real_model_feeds(a)
    for x, y in zip(a.run(None, feeds), b.run(None, feeds), strict=True):
        np.testing.assert_array_equal(x, y)
