"""The inspect library: exact MACs, parameter rules, shape overrides, unknowns, memory estimate."""

from __future__ import annotations

from pathlib import Path

import models_inspect as mi
import numpy as np
import onnx
import pytest
from models import if_proto, mlp_proto, save_proto

from modelcrunch.analysis.stats import inspect_model
from modelcrunch.errors import ModelcrunchError
from modelcrunch.io import iter_proto_tensors


def _inspect(tmp_path: Path, proto: onnx.ModelProto, shapes=None, **kw):
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    return inspect_model(path, shapes, **kw)


def _layers(report):
    return {x.name: x for x in report.layers}


@pytest.mark.parametrize(("group", "stride"), [(1, 1), (2, 1), (1, 2)])
def test_conv_macs_exact(tmp_path: Path, group: int, stride: int) -> None:
    report = _inspect(tmp_path, mi.conv_proto(group=group, stride=stride))
    out = 10 // stride
    assert _layers(report)["conv"].macs == 1 * 8 * out * out * (4 // group) * 3 * 3
    assert report.macs_complete and report.flops_total == 2 * report.macs_total
    assert _layers(report)["conv"].params == 8 * (4 // group) * 9 + 8


def test_gemm_and_batched_matmul_macs(tmp_path: Path) -> None:
    layers = _layers(_inspect(tmp_path, mi.gemm_matmul_proto()))
    assert layers["gemm"].macs == 4 * 32 * 16
    assert layers["matmul"].macs == 2 * 5 * 8 * 32
    assert layers["gemm"].weight_shape == [32, 16] and layers["gemm"].params == 32 * 16 + 32


def test_constant_weights_count_like_initializers(tmp_path: Path) -> None:
    expected = 32 * 16 + 32 + 32 * 8 + 8
    assert _inspect(tmp_path, mlp_proto(constants=False)).params == expected
    assert _inspect(tmp_path, mlp_proto(constants=True)).params == expected


def test_if_subgraph_weights_counted(tmp_path: Path) -> None:
    report = _inspect(tmp_path, if_proto())
    assert report.params == 2 * 16
    assert sorted(x.weight_shape for x in report.layers) == [[4, 4], [4, 4]]
    assert report.op_histogram["If"] == 1 and report.op_histogram["MatMul"] == 2


def test_shared_weight_once_and_int64_not_a_parameter(tmp_path: Path) -> None:
    report = _inspect(tmp_path, mi.shared_weight_proto())
    assert report.params == 64
    assert report.weight_bytes == {"float": 256, "int64": 24}


def test_symbolic_batch_is_unknown_not_guessed(tmp_path: Path) -> None:
    report = _inspect(tmp_path, mlp_proto())
    assert report.symbolic_dims == ["batch"]
    assert all(x.macs is None for x in report.layers)
    assert report.macs_total == 0 and not report.macs_complete
    assert report.memory.peak_bytes is None
    assert report.to_dict()["layers"][0]["macs"] is None


def test_shape_override_fixes_dims(tmp_path: Path) -> None:
    report = _inspect(tmp_path, mlp_proto(), {"input": [2, 16]})
    assert report.inputs[0].shape == [2, 16] and report.outputs[0].shape == [2, 8]
    assert report.macs_total == 2 * 32 * 16 + 2 * 8 * 32 and report.macs_complete
    assert report.symbolic_dims == []
    # --batch N sets the first symbolic dim of every input
    assert _inspect(tmp_path, mlp_proto(), batch=2).macs_total == report.macs_total


def test_shape_override_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelcrunchError, match="unknown input name 'nope'"):
        _inspect(tmp_path, mlp_proto(), {"nope": [1, 16]})
    with pytest.raises(ModelcrunchError, match="rank 2"):
        _inspect(tmp_path, mlp_proto(), {"input": [1, 16, 1]})
    with pytest.raises(ModelcrunchError, match="fixed by the model"):
        _inspect(tmp_path, mlp_proto(), {"input": [1, 17]})


def test_activation_memory_walk(tmp_path: Path) -> None:
    mem = _inspect(tmp_path, mlp_proto(), {"input": [2, 16]}).memory
    # input 128 B stays live; fc1's h (256 B) and relu's r (256 B) are live together at the peak.
    assert (mem.inputs_bytes, mem.outputs_bytes, mem.peak_bytes, mem.peak_node) == (128, 64, 640, "relu")


def test_sparsity_counts_exact_zeros(tmp_path: Path) -> None:
    report = _inspect(tmp_path, mi.sparse_weight_proto())
    assert report.sparsity == pytest.approx(4 / 16)
    assert _layers(report)["mm"].sparsity == pytest.approx(4 / 16)


def test_quantized_weight_patterns(tmp_path: Path) -> None:
    report = _inspect(tmp_path, mi.quantized_proto())
    layers = _layers(report)
    assert layers["mm_dq"].weight == "wq" and layers["mm_dq"].weight_dtype == "int8"
    assert layers["mm_dq"].macs == 3 * 8 * 16
    assert layers["mm_int"].weight_dtype == "uint8" and layers["mm_int"].macs == 3 * 4 * 8
    assert report.params == 16 * 8 + 1 + 1 + 8 * 4 + 1  # weights, scale and zero points


def test_embedding_and_lstm(tmp_path: Path) -> None:
    report = _inspect(tmp_path, mi.embedding_lstm_proto())
    layers = _layers(report)
    assert set(layers) == {"embed", "lstm"}  # a Gather on a 1-D tensor is not an embedding
    assert layers["embed"].macs == 0 and layers["embed"].params == 400
    assert layers["lstm"].macs == 5 * 2 * (16 * 8 + 16 * 4)


def test_ms_attention_cost_without_shape_inference_support(tmp_path: Path) -> None:
    layer = _layers(_inspect(tmp_path, mi.attention_proto()))["attn"]
    assert layer.op == "com.microsoft.Attention"
    assert layer.macs == 2 * 4 * 8 * 24 + 2 * 4 * 4 * (8 + 8)


def test_header(tmp_path: Path) -> None:
    path = save_proto(mlp_proto(), tmp_path / "mlp.onnx")
    report = inspect_model(path)
    assert report.file_size_bytes == path.stat().st_size
    assert report.opsets == {"ai.onnx": 17} and report.producer == "tests"
    assert [(t.name, t.dtype, t.shape) for t in report.inputs] == [("input", "float", ["batch", 16])]
    assert report.node_count == 4


def test_sample_models(samples_dir: Path) -> None:
    for name in ("mlp", "cnn", "transformer"):
        path = samples_dir / f"{name}.onnx"
        if not path.exists():
            pytest.skip("sample models not built")
        report = inspect_model(path, batch=1)
        proto = onnx.load(str(path))
        floats = sum(  # initializers and Constant-node tensors (lifted by load_model)
            int(np.prod(t.dims)) for t in iter_proto_tensors(proto) if t.data_type == onnx.TensorProto.FLOAT
        )
        assert report.params == floats
        assert report.macs_complete and report.macs_total > 0 and report.memory.peak_bytes


def test_shape_chains_through_casts_are_folded(tmp_path: Path) -> None:
    report = _inspect(tmp_path, mi.paddle_reshape_proto(), {"x": [3, 8, 2, 2]})
    assert _layers(report)["fc"].macs == 3 * 4 * 32 and report.macs_complete
    assert report.memory.peak_bytes is not None


def test_computed_pads_inside_if_are_folded(tmp_path: Path) -> None:
    report = _inspect(tmp_path, mi.if_computed_pads_proto(), {"x": [2, 6]})
    assert {x.name: x.macs for x in report.layers} == {"mm_then": 2 * 4 * 8, "mm_else": 2 * 4 * 8}


def test_external_data_counts_in_file_size(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save(mlp_proto(), str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    report = inspect_model(path, {"input": [1, 16]})
    assert report.file_size_bytes == path.stat().st_size + (tmp_path / "ext.data").stat().st_size
    assert report.params == 32 * 16 + 32 + 32 * 8 + 8 and report.sparsity == 0.0
