"""Factorization on real pretrained models (opt-in: ``pytest -m real_models``).

At ``--energy 0.9`` every real model yields a checker-valid model that loads and runs in ONNX Runtime
with its signature unchanged, and every layer left alone says why.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_model_paths
from models import assert_same_signature

from modelcrunch.data import load_dataset
from modelcrunch.io import load_model, save_model
from modelcrunch.passes.factorize import FactorizeConfig, RankPolicy, factorize
from modelcrunch.runtime.feeds import synthesize_feeds
from modelcrunch.runtime.session import make_session

pytestmark = pytest.mark.real_models

MODELS = [p for p in real_model_paths() if "silero" not in p.name]  # needs a real sample rate input
SHAPES = {  # small fixed inputs keep the run short
    "ch_PP-OCRv4_det_infer.onnx": {"x": [1, 3, 320, 320]},
    "ch_PP-OCRv4_rec_infer.onnx": {"x": [1, 3, 48, 320]},
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": {"x": [1, 3, 48, 192]},
    "320n.onnx": {"images": [1, 3, 320, 320]},
    "common.onnx": {"input1": [1, 1, 64, 256]},
    "minilm/model.onnx": {"input_ids": [1, 32], "attention_mask": [1, 32], "token_type_ids": [1, 32]},
}


@pytest.mark.skipif(not MODELS, reason="run `make real-models` first")
@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_energy_factorization_is_valid_and_explains_skips(path, tmp_path):
    model = load_model(path)
    shapes = SHAPES.get(f"{path.parent.name}/{path.name}", SHAPES.get(path.name))
    report = factorize(model, FactorizeConfig(policy=RankPolicy("energy", 0.9)), shapes=shapes)
    out = save_model(model, tmp_path / path.name, source=path)  # checker + ORT load, or it raises
    assert_same_signature(path, out.path)
    layers = report.to_dict()["layers"]
    assert any(layer["status"] == "factorized" for layer in layers)
    assert all(layer["reason"] for layer in layers if layer["status"] == "skipped")
    session = make_session(out.path)
    # real inputs where the model comes with them: <stem>_test.npz, else the folder's only *test.npz
    own, found = path.with_name(f"{path.stem}_test.npz"), sorted(path.parent.glob("*test.npz"))
    data = own if own.is_file() else (found[0] if len(found) == 1 else None)
    feeds = load_dataset(data).samples[0] if data else synthesize_feeds(session, shapes=shapes, batch=1)
    assert all(np.isfinite(o).all() for o in session.run(None, feeds) if o.dtype.kind == "f")
