"""Opt-in (`make test-real`): load → canonicalise → save round-trips every real model exactly."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import real_model_paths

from modelcrunch.io import load_model, save_model

pytestmark = pytest.mark.real_models

MODELS = real_model_paths()


def _feeds(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for i, arg in enumerate(session.get_inputs()):
        shape = [d if isinstance(d, int) else (1 if k == 0 else 64) for k, d in enumerate(arg.shape)]
        if arg.name == "sr":  # silero-vad's sample rate
            feeds[arg.name] = np.array(16000, dtype=np.int64)
        elif arg.name == "state":
            feeds[arg.name] = np.zeros([2, 1, 128], dtype=np.float32)
        elif arg.name == "input" and len(shape) == 2 and i == 0 and session.get_inputs()[-1].name == "sr":
            feeds[arg.name] = rng.standard_normal([1, 512]).astype(np.float32)
        elif "int64" in arg.type:
            feeds[arg.name] = np.zeros(shape, dtype=np.int64)
        elif "int32" in arg.type:
            feeds[arg.name] = rng.integers(0, 256, shape, dtype=np.int32)
        else:
            feeds[arg.name] = rng.random(shape, dtype=np.float32)
    return feeds


@pytest.mark.skipif(not MODELS, reason="run `make real-models` first")
@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_round_trip_is_exact(path, tmp_path):
    model = load_model(path)
    assert all(n.op_type != "Constant" or "value" not in n.attributes for g in model.graphs() for n in g)
    out = save_model(model, tmp_path / path.name, source=path)
    a = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(out.path), providers=["CPUExecutionProvider"])
    feeds = _feeds(a)
    for x, y in zip(a.run(None, feeds), b.run(None, feeds), strict=True):
        np.testing.assert_array_equal(x, y)
