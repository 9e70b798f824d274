"""``inspect`` on the real models of ``make real-models`` (opt-in: pytest -m real_models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import real_model_paths

from modelcrunch.analysis.stats import inspect_model

pytestmark = pytest.mark.real_models

#: Static input shapes under which every heavy layer's MACs must be known.
SHAPES = {
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": {"x": [1, 3, 48, 192]},
    "ch_PP-OCRv4_rec_infer.onnx": {"x": [1, 3, 48, 320]},
    "ch_PP-OCRv4_det_infer.onnx": {"x": [1, 3, 640, 640]},
    "common.onnx": {"input1": [1, 1, 64, 256]},
    "320n.onnx": {"images": [1, 3, 320, 320]},
}


@pytest.mark.parametrize("path", real_model_paths(), ids=lambda p: p.name)
def test_real_model_has_parameters_and_known_macs(path: Path) -> None:
    report = inspect_model(path, SHAPES.get(path.name), batch=1)
    assert report.params > 0 and report.layers  # PaddleOCR's Constant-held weights are counted
    assert report.to_dict()["schema"] == "modelcrunch.inspect/1"
    if path.name in SHAPES:
        assert report.macs_complete and report.macs_total > 0
        assert report.memory.peak_bytes is not None
