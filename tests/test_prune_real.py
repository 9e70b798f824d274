"""Structured pruning on real pretrained models (opt-in: ``pytest -m real_models``).

Check of the coupling logic that needs no labels: the physically pruned model must compute exactly
what the *original* model computes when only the consumers' input slices of the pruned channels
are zeroed (every pruned channel ends in a consumer, so nothing else can differ).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from conftest import real_model_paths

from modelcrunch.analysis.groups import const_array, expand_indices
from modelcrunch.io import load_model, save_model
from modelcrunch.passes.prune.structured import StructuredOptions, ensure_node_names, prune_structured
from modelcrunch.runtime.feeds import synthesize_feeds

pytestmark = pytest.mark.real_models


def masked_copy(path, decisions) -> ir.Model:
    model = load_model(path)
    ensure_node_names(model)
    nodes = {n.name: n for n in model.graph}
    for d in decisions:
        if d.kept is None:
            continue
        pruned = np.setdiff1d(np.arange(d.group.size), d.kept)
        for p in d.group.params:
            if p.kind == "weight_in":
                value = nodes[p.node].inputs[p.input]
                array = const_array(value).copy()
                index = [slice(None)] * array.ndim
                index[p.axis] = expand_indices(pruned, p.offset, p.block)
                array[tuple(index)] = 0
                value.const_value = ir.tensor(array, name=value.name)
    return model


def session(model: ir.Model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        ir.to_proto(model).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@pytest.mark.parametrize("path", real_model_paths(), ids=lambda p: p.parent.name + "/" + p.name)
def test_global_30_percent_is_valid_and_equivalent_to_masking(tmp_path, path):
    model = load_model(path)
    decisions = prune_structured(model, StructuredOptions(ratio=0.3, scope="global"))
    assert all(d.reason for d in decisions if d.kept is None)  # every skipped group explained
    save_model(model, tmp_path / "pruned.onnx")  # checker + ORT load
    reference = session(masked_copy(path, decisions))
    expected = None
    for height, width in ((320, 320), (48, 320)):
        shapes = {}
        for i in reference.get_inputs():
            dims = [d if isinstance(d, int) else 1 for d in i.shape]
            if len(dims) == 4:
                dims[2:] = [
                    d if isinstance(d, int) else s for d, s in zip(i.shape[2:], (height, width), strict=True)
                ]
            shapes[i.name] = dims
        feeds = synthesize_feeds(reference, shapes=shapes)
        try:
            expected = reference.run(None, feeds)
            break
        except Exception:  # noqa: BLE001, S112 - synthetic inputs may not suit every model
            continue
    if expected is None:
        pytest.skip("model does not run on synthetic inputs")
    for want, got in zip(expected, session(model).run(None, feeds), strict=True):
        scale = max(float(np.abs(want).max()), 1.0)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)
