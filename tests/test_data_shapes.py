"""Shapes from the data: commands with data use its concrete dims; ``--shape``/``--batch`` everywhere."""

from __future__ import annotations

import json

import models_prune as mp
import numpy as np
import pytest
from models import save_proto
from typer.testing import CliRunner

from modelcrunch.cli.app import app
from modelcrunch.shapes import data_batch, data_shapes, with_data_shapes


def dynamic_conv(tmp_path):
    """conv_bn_relu_conv with symbolic height and width, and 4 samples of 12x10 images."""
    model = mp.conv_bn_relu_conv()
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    path = save_proto(model, tmp_path / "dyn.onnx")
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((4, 3, 12, 10)).astype(np.float32))
    return path, data


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_data_shapes_fill_only_open_dims():
    declared = {"x": ["N", 3, "h", "w"], "mask": [1, 5]}
    samples = [{"x": np.zeros((1, 3, 12, 10)), "mask": np.zeros((1, 5))}]
    assert data_shapes(declared, samples) == {"x": [1, "?", 12, 10]}
    assert with_data_shapes({"x": [1, 3, 8, 8]}, declared, samples) == {"x": [1, 3, 8, 8]}
    assert with_data_shapes(None, declared, None) == {}


def test_prune_without_data_names_its_own_shape_option(tmp_path):
    path, _ = dynamic_conv(tmp_path)
    result = run("prune", path, "-o", tmp_path / "o.onnx", "--structured", "--no-repair")
    assert result.exit_code == 2
    assert "--shape x=" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("how", ["data", "shape"])
def test_prune_symbolic_spatial_dims(tmp_path, how):
    path, data = dynamic_conv(tmp_path)
    given = ["--calibration", data] if how == "data" else ["--shape", "x=1x3x12x10", "--batch", "1"]
    out = tmp_path / "o.onnx"
    result = run("prune", path, "-o", out, "--structured", "--ratio", "0.375", "--json", *given)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["totals"]["groups_pruned"] >= 1 and out.exists()
    # MACs counted at the data's 12x10, not per position: the first conv alone is 8*3*9*120
    assert doc["totals"]["macs_before"] >= 8 * 3 * 9 * 120


def test_factorize_and_quantize_take_batch_and_data(tmp_path):
    path, data = dynamic_conv(tmp_path)
    result = run("factorize", path, "-o", tmp_path / "f.onnx", "--calibration", data, "--json")
    assert result.exit_code in (0, 3), result.output
    result = run("quantize", path, "-o", tmp_path / "q.onnx", "--shape", "x=1x3x12x10", "--batch", "2",
                 "--mode", "dynamic", "--no-bench", "--json")  # fmt: skip
    assert result.exit_code in (0, 3), result.output


def test_data_batch_feeds_fixed_or_scalar_inputs_one_sample_at_a_time():
    assert data_batch({"x": ["N", 3, "h", "w"]}, 32) == 32
    assert data_batch({"x": [1, 3, 8, 8]}, 32) == 1
    assert data_batch({"input": ["N", "T"], "state": [2, "N", 128], "sr": []}, 32) == 1
