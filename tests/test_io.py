"""Model I/O: lazy loading, Constant lifting, external-data safety, atomic verified saves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from models import assert_close_on_ort, if_proto, mlp_proto, run_ort, save_proto

from modelcrunch import io as mio
from modelcrunch.errors import ModelcrunchError, VerificationError

X = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)


def _external_model(tmp_path: Path, location: str = "weights.bin") -> Path:
    """The MLP with its weights in an external-data file at ``location`` (relative to the model)."""
    proto = mlp_proto()
    path = tmp_path / "ext.onnx"
    onnx.save(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    if location != "weights.bin":
        model = onnx.load(str(path), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, str(path))
    return path


def test_constant_weights_are_lifted(tmp_path):
    path = save_proto(mlp_proto(constants=True), tmp_path / "const.onnx")
    model = mio.load_model(path)
    assert [n.op_type for n in model.graph] == ["Gemm", "Relu", "MatMul", "Add"]
    assert set(model.graph.initializers) == {"w1", "b1", "w2", "b2"}
    out = mio.save_model(model, tmp_path / "out.onnx", source=path)
    assert_close_on_ort(path, out.path, {"input": X}, rtol=0, atol=0)


def test_subgraph_constants_are_lifted_and_model_still_runs(tmp_path):
    path = save_proto(if_proto(), tmp_path / "if.onnx")
    model = mio.load_model(path)
    else_graph = model.graph.node(0).attributes["else_branch"].as_graph()
    assert "we" in else_graph.initializers
    assert all(n.op_type != "Constant" for g in model.graphs() for n in g)
    out = mio.save_model(model, tmp_path / "out.onnx", source=path)
    for cond in (True, False):
        feeds = {"x": X[:, :4].copy(), "cond": np.array(cond)}
        assert_close_on_ort(path, out.path, feeds, rtol=0, atol=0)


def test_external_data_is_read_at_load_below_the_protobuf_limit_and_round_trips(tmp_path):
    path = _external_model(tmp_path)
    model = mio.load_model(path)
    # read at load: copies saved to temporary folders are complete without the source's data file
    assert not isinstance(model.graph.initializers["w1"].const_value, ir.ExternalTensor)
    assert mio.model_size_bytes(path) == path.stat().st_size + (tmp_path / "weights.bin").stat().st_size
    out = mio.save_model(model, tmp_path / "sub" / "copy.onnx", source=path)
    assert out.external_data is None  # small model: inlined
    assert_close_on_ort(path, out.path, {"input": X}, rtol=0, atol=0)
    ext = mio.save_model(model, tmp_path / "copy_ext.onnx", external_data=True)
    assert ext.external_data == tmp_path / "copy_ext.onnx.data" and ext.external_data.exists()
    assert_close_on_ort(path, ext.path, {"input": X}, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("location", "message"),
    [("../outside.bin", "escapes"), ("/etc/passwd", "absolute"), ("missing.bin", "missing")],
)
def test_bad_external_data_locations_are_refused(tmp_path, location, message):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    path = _external_model(model_dir, location)
    with pytest.raises(ModelcrunchError, match=message):
        mio.load_model(path)


def test_symlink_escaping_the_model_folder_is_refused(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    path = _external_model(model_dir)
    secret = tmp_path / "secret.bin"
    os.replace(model_dir / "weights.bin", secret)
    (model_dir / "weights.bin").symlink_to(secret)
    with pytest.raises(ModelcrunchError, match="symlink"):
        mio.load_model(path)


def test_truncated_external_data_is_refused(tmp_path):
    path = _external_model(tmp_path)
    data = tmp_path / "weights.bin"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelcrunchError, match="truncated"):
        mio.load_model(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is a text file, not a model\n" * 10, bytes(range(256)) * 8],
    ids=["empty", "text", "binary-noise"],
)
def test_non_onnx_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelcrunchError, match="not an ONNX model|not a valid ONNX model"):
        mio.load_model(path)


def test_truncated_model_is_refused(tmp_path):
    good = save_proto(mlp_proto(), tmp_path / "good.onnx")
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelcrunchError, match="not a valid ONNX model|not an ONNX model"):
        mio.load_model(bad)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelcrunchError, match="no such file"):
        mio.load_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelcrunchError, match="folder"):
        mio.load_model(tmp_path)


def test_refuses_to_overwrite_the_input_unless_asked(tmp_path):
    path = save_proto(mlp_proto(), tmp_path / "m.onnx")
    before = path.read_bytes()
    model = mio.load_model(path)
    with pytest.raises(ModelcrunchError, match="overwrite the input"):
        mio.save_model(model, tmp_path / "." / "m.onnx", source=path)
    assert path.read_bytes() == before
    expected = run_ort(path, {"input": X})[0]
    mio.save_model(model, path, source=path, overwrite_input=True)
    np.testing.assert_array_equal(run_ort(path, {"input": X})[0], expected)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_interrupted_save_leaves_destination_untouched(tmp_path, monkeypatch):
    src = save_proto(mlp_proto(), tmp_path / "m.onnx")
    dest = tmp_path / "out.onnx"
    dest.write_bytes(b"previous content")
    model = mio.load_model(src)

    def partial_then_interrupt(model, path, **kwargs):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(mio.ir, "save", partial_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        mio.save_model(model, dest, source=src)
    assert dest.read_bytes() == b"previous content"
    assert _leftovers(tmp_path) == []


def test_model_failing_verification_is_not_written(tmp_path):
    src = save_proto(mlp_proto(), tmp_path / "m.onnx")
    model = mio.load_model(src)
    model.graph.node(1).op_type = "NoSuchOp"  # invalid in the default domain
    dest = tmp_path / "out.onnx"
    with pytest.raises(VerificationError):
        mio.save_model(model, dest, source=src)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_save_creates_missing_output_folder(tmp_path):
    src = save_proto(mlp_proto(), tmp_path / "m.onnx")
    out = mio.save_model(mio.load_model(src), tmp_path / "a" / "b" / "out.onnx", source=src)
    assert out.path.exists() and out.size_bytes == out.path.stat().st_size


def test_model_that_does_not_run_is_not_written(tmp_path):
    """``run_feed``: the verified session must run it; a model that fails at run time is refused."""
    src = save_proto(mlp_proto(), tmp_path / "m.onnx")
    name = onnx.load(str(src)).graph.input[0].name
    good = {name: np.zeros((2, 16), np.float32)}
    out = mio.save_model(mio.load_model(src), tmp_path / "ok.onnx", source=src, run_feed=good)
    assert out.path.exists()
    dest = tmp_path / "out.onnx"
    with pytest.raises(VerificationError, match="does not run"):
        mio.save_model(mio.load_model(src), dest, source=src, run_feed={name: np.zeros((2, 5), np.float32)})
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_output_naming_an_external_data_file_of_the_input_is_refused(tmp_path):
    path = _external_model(tmp_path)
    before = (tmp_path / "weights.bin").read_bytes()
    with pytest.raises(ModelcrunchError, match="external data"):
        mio.save_model(mio.load_model(path), tmp_path / "weights.bin", source=path)
    assert (tmp_path / "weights.bin").read_bytes() == before


def test_staged_model_takes_its_name_only_on_commit(tmp_path):
    path = save_proto(mlp_proto(), tmp_path / "in.onnx")
    dest = tmp_path / "out.onnx"
    dest.write_bytes(b"old")
    staged = mio.stage_model(mio.load_model(path), dest, source=path)
    assert staged.path.is_file() and dest.read_bytes() == b"old"
    staged.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx"]
    staged = mio.stage_model(mio.load_model(path), dest, source=path)
    staged.commit()
    assert onnx.load(str(dest)) and sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx"]


def test_unwritable_output_is_one_line(tmp_path):
    path = save_proto(mlp_proto(), tmp_path / "in.onnx")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ModelcrunchError, match="cannot write"):
        mio.save_model(mio.load_model(path), tmp_path / "file" / "out.onnx", source=path)
    with pytest.raises(ModelcrunchError, match="cannot write"):
        mio.save_model(mio.load_model(path), tmp_path / ("n" * 300 + ".onnx"), source=path)


def test_writes_keep_the_inputs_value_info_and_add_none(tmp_path):
    """Shapes the passes attach on the way are not written: value_info made a 0.2 MB model's
    factorized copy 14 % larger than the original. What the file annotated stays annotated."""
    proto = mlp_proto()
    proto.graph.value_info.append(onnx.helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, [3, 32]))
    path = save_proto(proto, tmp_path / "in.onnx")
    model = mio.load_model(path)
    for node in model.graph:  # what shape inference inside a pass leaves behind
        for value in node.outputs:
            if value.name in ("h", "r"):
                value.dtype = ir.DataType.FLOAT
                value.shape = ir.Shape(["N", 32])
    written = onnx.load(str(mio.save_model(model, tmp_path / "out.onnx", source=path).path))
    assert [v.name for v in written.graph.value_info] == ["h"]
    assert written.graph.value_info[0].type.tensor_type.shape.dim[0].dim_param == "N"  # the pass's shape
    assert model.graph.node(1).outputs[0].shape == ir.Shape(["N", 32])  # restored in memory
    assert_close_on_ort(path, tmp_path / "out.onnx", {"input": X}, rtol=0, atol=0)
