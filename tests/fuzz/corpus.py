"""The fuzz corpus: malformed models, data files, output paths and option values.

A :class:`Case` builds its files into an empty folder and says which model, data and output paths
every command gets, plus extra options per command. The classes: broken files (empty, random,
truncated, FIFO, folder), broken graphs (cycles, undefined inputs, unknown ops, odd opsets and IR
versions), broken weights (NaN/Inf, wrong byte counts, negative dims), broken external data
(NUL bytes, huge names, bad offsets, escapes, FIFOs), output paths that name the input or any of
its files, unwritable outputs, broken data files (wrong keys/dtypes/ranks, NaN, pickles, zip
bombs, headers that lie), and option values out of range (NaN, inf, huge, negative).
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_models"
COMMANDS = ("inspect", "bench", "quantize", "prune", "factorize")


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]
    model: str = "m.onnx"
    data: str | None = None
    output: str = "out.onnx"
    extra: dict[str, list[str]] = field(default_factory=dict)  # command (or "*") -> options
    commands: tuple[str, ...] = COMMANDS
    measure: bool = False  # run the measurements too (slower)
    expect_ok: bool = False  # a valid case: every command must finish (exit 0, or 3 for a missed target)
    fast: bool = False  # part of the slice run by the default test suite
    time_limit: float | None = None  # seconds, where the runner's default is too short for real work
    interrupt_after: float | None = None  # send SIGINT (Ctrl-C) this many seconds into the run


# ---- models -------------------------------------------------------------------------------------


def _mlp() -> onnx.ModelProto:
    return onnx.load(str(SAMPLES / "mlp.onnx"))


def _save(proto: onnx.ModelProto, path: Path) -> None:
    path.write_bytes(proto.SerializeToString())


def _tiny(
    nodes: list[onnx.NodeProto],
    *,
    inputs: list[onnx.ValueInfoProto] | None = None,
    outputs: list[onnx.ValueInfoProto] | None = None,
    inits: list[onnx.TensorProto] | None = None,
    opset: int = 17,
    ir_version: int = 8,
    domains: tuple[tuple[str, int], ...] = (),
) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(nodes, "g", inputs or [x], outputs or [y], initializer=inits or [])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir_version
    return model


def _w(value: float | np.ndarray = 0.5, shape=(4, 4), name: str = "w") -> onnx.TensorProto:
    arr = np.full(shape, value, np.float32) if np.isscalar(value) else np.asarray(value, np.float32)
    return numpy_helper.from_array(arr, name)


def model_case(proto_fn: Callable[[], onnx.ModelProto]) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        _save(proto_fn(), d / "m.onnx")
        _mlp_data(d / "d.npz")

    return build


def raw_case(content: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        (d / "m.onnx").write_bytes(content() if callable(content) else content)

    return build


def _mlp_data(path: Path, n: int = 8, **changes: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    arrays = {"input": rng.standard_normal((n, 64)).astype(np.float32), "label": np.arange(n) % 10}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def _copy_mlp(d: Path) -> None:
    _save(_mlp(), d / "m.onnx")
    _mlp_data(d / "d.npz")


def _external(d: Path, location: str = "m.onnx.data") -> None:
    onnx.save(
        _mlp(),
        str(d / "m.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    _mlp_data(d / "d.npz")


def _edit_external(edit: Callable[[dict[str, str]], None]) -> Callable[[Path], None]:
    """An external-data model whose first tensor's metadata ``edit`` rewrites."""

    def build(d: Path) -> None:
        _external(d)
        proto = onnx.load(str(d / "m.onnx"), load_external_data=False)
        tensor = proto.graph.initializer[0]
        info = {e.key: e.value for e in tensor.external_data}
        edit(info)
        del tensor.external_data[:]
        for key, value in info.items():
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        _save(proto, d / "m.onnx")

    return build


def _weights(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[], onnx.ModelProto]:
    def make() -> onnx.ModelProto:
        proto = _mlp()
        for init in proto.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.ndim == 2:
                init.CopyFrom(numpy_helper.from_array(fn(arr.copy()), init.name))
                break
        return proto

    return make


def _nan(arr: np.ndarray) -> np.ndarray:
    arr[0, 0] = np.nan
    return arr


def _inf(arr: np.ndarray) -> np.ndarray:
    arr[:, 1] = np.inf
    return arr


def _set(attr: str, value) -> Callable[[], onnx.ModelProto]:
    def make() -> onnx.ModelProto:
        proto = _mlp()
        if attr == "opset":
            proto.opset_import[0].version = value
        else:
            setattr(proto, attr, value)
        return proto

    return make


def _mutate(fn: Callable[[onnx.ModelProto], None]) -> Callable[[], onnx.ModelProto]:
    def make() -> onnx.ModelProto:
        proto = _mlp()
        fn(proto)
        return proto

    return make


def _bad_raw(proto: onnx.ModelProto) -> None:
    init = next(i for i in proto.graph.initializer if len(i.dims) == 2)
    init.raw_data = init.raw_data[:-7]


def _neg_dims(proto: onnx.ModelProto) -> None:
    init = next(i for i in proto.graph.initializer if len(i.dims) == 2)
    init.dims[0] = -init.dims[0]


def _dup_outputs(proto: onnx.ModelProto) -> None:
    proto.graph.node[1].output[0] = proto.graph.node[0].output[0]


def _cycle(proto: onnx.ModelProto) -> None:
    first, last = proto.graph.node[0], proto.graph.node[-2]
    first.input[0] = last.output[0]


def _undefined(proto: onnx.ModelProto) -> None:
    proto.graph.node[1].input[0] = "nowhere"


def _unknown_op(proto: onnx.ModelProto) -> None:
    proto.graph.node[1].op_type = "Frobnicate"


def _custom_domain(proto: onnx.ModelProto) -> None:
    proto.graph.node[1].domain = "com.example"
    proto.opset_import.append(helper.make_opsetid("com.example", 1))


def _no_outputs(proto: onnx.ModelProto) -> None:
    del proto.graph.output[:]


def _string_input(proto: onnx.ModelProto) -> None:
    proto.graph.input[0].type.tensor_type.elem_type = TensorProto.STRING


def _all_symbolic(proto: onnx.ModelProto) -> None:
    proto.graph.input[0].type.tensor_type.shape.dim[1].ClearField("dim_value")
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"


def _huge_input(proto: onnx.ModelProto) -> None:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[0].ClearField("dim_param")
    dims[0].dim_value = 10**9


def _zero_dim(proto: onnx.ModelProto) -> None:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[0].ClearField("dim_param")
    dims[0].dim_value = 0


def _rank0(proto: onnx.ModelProto) -> None:
    del proto.graph.input[0].type.tensor_type.shape.dim[:]


def _float_as_double(proto: onnx.ModelProto) -> None:
    proto.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE


def _long_name(proto: onnx.ModelProto) -> None:
    proto.graph.node[0].name = "n" * 100_000


def _chain() -> onnx.ModelProto:
    nodes = [helper.make_node("Identity", ["x" if i == 0 else f"t{i}"], [f"t{i + 1}"]) for i in range(3000)]
    nodes.append(helper.make_node("Identity", ["t3000"], ["y"]))
    return _tiny(nodes)


def _identity_only() -> onnx.ModelProto:
    return _tiny([helper.make_node("Identity", ["x"], ["y"])])


def _matmul_mismatch() -> onnx.ModelProto:
    return _tiny([helper.make_node("MatMul", ["x", "w"], ["y"])], inits=[_w(shape=(5, 4))])


def _if_model() -> onnx.ModelProto:
    then = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["a"])],
        "then",
        [],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4])],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["b"])],
        "else",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4])],
    )
    cond = numpy_helper.from_array(np.array(True), "c")
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    return _tiny([node], inits=[_w(), cond])


def _gemm_tiny(value=0.5) -> Callable[[], onnx.ModelProto]:
    return lambda: _tiny([helper.make_node("Gemm", ["x", "w"], ["y"])], inits=[_w(value)])


def _int_input() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", 4])
    cast = helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT)
    mm = helper.make_node("MatMul", ["xf", "w"], ["y"])
    return _tiny([cast, mm], inputs=[x], inits=[_w()])


def _conv_group_mismatch() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    conv = helper.make_node("Conv", ["x", "w"], ["y"], group=3, pads=[1, 1, 1, 1])
    return _tiny([conv], inputs=[x], outputs=[y], inits=[_w(shape=(4, 4, 3, 3))])


def _segmentation(d: Path) -> None:
    """A small page-segmentation-like net: 300x300 inputs and maps, 32 calibration samples."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 300, 300])
    y = helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", 1, 300, 300])
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "input"
    for i, (cin, cout) in enumerate([(3, 16), (16, 32), (32, 16), (16, 1)]):
        inits += [
            numpy_helper.from_array(
                (rng.standard_normal((cout, cin, 3, 3)) * 0.2).astype(np.float32), f"w{i}"
            ),
            numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}"),
        ]
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        last = i == 3
        nodes.append(helper.make_node("Sigmoid" if last else "Relu", [f"c{i}"], ["map" if last else f"r{i}"]))
        prev = f"r{i}"
    graph = helper.make_graph(nodes, "seg", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    _save(model, d / "m.onnx")
    np.savez(d / "d.npz", input=rng.random((32, 3, 300, 300), dtype=np.float32))


# ---- data files ---------------------------------------------------------------------------------


def data_case(write: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        _save(_mlp(), d / "m.onnx")
        write(d / "d.npz")

    return build


def _npz(**arrays) -> Callable[[Path], None]:
    return lambda p: np.savez(p, **arrays)


def _raw_pickle_member(p: Path) -> None:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("input", pickle.dumps({"a": 1}))


def _pickled_npy(p: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("input.npy", buf.getvalue())


def _lying_header(p: Path) -> None:
    """A tiny .npz whose .npy header claims 10**10 float32 samples (40 GB)."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (10000000000, 64), }"
    header = header + " " * (63 - (len(header) + 10) % 64) + "\n"
    blob = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 1024
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("input.npy", blob)


@functools.cache
def _zip_bomb_bytes() -> bytes:
    """About 2 MB on disk, 2 GB of float32 zeros when decompressed (built once per process)."""
    n = 2 * 2**30 // (64 * 4)
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, 64), }}"
    header = header + " " * (63 - (len(header) + 10) % 64) + "\n"
    chunk = b"\0" * (64 * 2**20)
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z,
        z.open("input.npy", "w", force_zip64=True) as fh,
    ):
        fh.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        for _ in range(n * 64 * 4 // len(chunk)):
            fh.write(chunk)
    return buf.getvalue()


def _zip_bomb(p: Path) -> None:
    p.write_bytes(_zip_bomb_bytes())


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _folder(write_files: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        _save(_mlp(), d / "m.onnx")
        (d / "data").mkdir()
        write_files(d / "data")

    return build


def _folder_mixed(p: Path) -> None:
    np.savez(p / "a.npz", input=np.zeros((1, 64), np.float32))
    np.savez(p / "b.npz", other=np.zeros((1, 64), np.float32))


def _folder_corrupt(p: Path) -> None:
    np.savez(p / "a.npz", input=np.zeros((1, 64), np.float32))
    (p / "b.npz").write_bytes(b"PK\x03\x04broken")


# ---- the corpus ---------------------------------------------------------------------------------


def _with_output(build: Callable[[Path], None], make_output: Callable[[Path], None]):
    def both(d: Path) -> None:
        build(d)
        make_output(d)

    return both


def _mkfifo_out(d: Path) -> None:
    os.mkfifo(d / "out.onnx")


def _symlink_out(d: Path) -> None:
    os.symlink(d / "m.onnx", d / "out.onnx")


def _hardlink_out(d: Path) -> None:
    os.link(d / "m.onnx", d / "out.onnx")


def _existing_out(d: Path) -> None:
    (d / "out.onnx").write_bytes(b"keep me")


def _parent_is_file(d: Path) -> None:
    (d / "file").write_bytes(b"x")


def _model_folder(d: Path) -> None:
    (d / "m.onnx").mkdir()


def _model_fifo(d: Path) -> None:
    os.mkfifo(d / "m.onnx")


def _npz_as_model(d: Path) -> None:
    np.savez(d / "m.onnx", input=np.zeros(3))


def _truncated(d: Path) -> None:
    blob = (SAMPLES / "mlp.onnx").read_bytes()
    (d / "m.onnx").write_bytes(blob[: len(blob) // 2])


def _escaping_symlink_data(d: Path) -> None:
    _external(d, "link.data")
    (d / "link.data").unlink()
    os.symlink("/etc/hostname", d / "link.data")


def _data_fifo_location(d: Path) -> None:
    _external(d)
    (d / "m.onnx.data").unlink()
    os.mkfifo(d / "m.onnx.data")


def _data_missing(d: Path) -> None:
    _external(d)
    (d / "m.onnx.data").unlink()


def _data_truncated(d: Path) -> None:
    _external(d)
    with open(d / "m.onnx.data", "r+b") as fh:
        fh.truncate(100)


def _data_is_folder(d: Path) -> None:
    _external(d, "sub")
    (d / "sub").unlink()
    (d / "sub").mkdir()


def _set_key(key: str, value: str) -> Callable[[dict[str, str]], None]:
    def edit(info: dict[str, str]) -> None:
        info[key] = value

    return edit


def _drop_key(key: str) -> Callable[[dict[str, str]], None]:
    return lambda info: info.pop(key, None)


def cases() -> list[Case]:
    """The whole corpus (≥ 100 cases)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    out: list[Case] = [
        # valid models: every command must succeed
        Case("valid-mlp", _copy_mlp, data="d.npz", expect_ok=True, fast=True),
        Case("valid-mlp-measured", _copy_mlp, data="d.npz", expect_ok=True, measure=True),
        Case("valid-mlp-no-data", _copy_mlp, expect_ok=True),
        Case("valid-external-data", _external, data="d.npz", expect_ok=True, fast=True),
        Case("valid-external-measured", _external, data="d.npz", expect_ok=True, measure=True),
        Case("valid-unicode-path", _copy_mlp, model="m.onnx", output="ö ut x.onnx", expect_ok=True),
        Case("valid-overwrites-existing-output", _with_output(_copy_mlp, _existing_out), expect_ok=True),
        Case("valid-output-in-new-folder", _copy_mlp, output="new/sub/out.onnx", expect_ok=True),
        # Ctrl-C part-way: exit 130 in one line, an existing -o untouched, nothing left behind
        *[
            Case(
                f"interrupt-after-{t}s",
                _with_output(_copy_mlp, _existing_out),
                data="d.npz",
                measure=True,
                interrupt_after=t,
                commands=("bench", "quantize", "prune", "factorize"),
            )
            for t in (0.5, 1.5, 3.0)
        ],
        # output paths that name the input or one of its files
        Case("out-is-input", _copy_mlp, output="m.onnx", fast=True),
        Case("out-is-external-data", _external, output="m.onnx.data", fast=True),
        Case("out-is-custom-external-data", lambda d: _external(d, "w.bin"), output="w.bin"),
        Case("out-symlink-to-input", _with_output(_copy_mlp, _symlink_out)),
        Case("out-hardlink-to-input", _with_output(_copy_mlp, _hardlink_out)),
        Case("out-is-folder", _copy_mlp, output="."),
        Case("out-parent-is-file", _with_output(_copy_mlp, _parent_is_file), output="file/out.onnx"),
        Case("out-name-too-long", _copy_mlp, output="o" * 300 + ".onnx", fast=True),
        Case("out-name-at-limit", _copy_mlp, output="o" * 250 + ".onnx"),
        Case("out-is-fifo", _with_output(_copy_mlp, _mkfifo_out)),
        Case("out-unwritable-proc", _copy_mlp, output="/proc/modelcrunch-fuzz/out.onnx"),
        Case(
            "out-existing-untouched-on-failure",
            _with_output(data_case(_npz(input=np.full((4, 64), np.nan, np.float32))), _existing_out),
            data="d.npz",
        ),
        # broken model files
        Case("model-missing", lambda d: None, fast=True),
        Case("model-empty", raw_case(b""), fast=True),
        Case("model-random-bytes", raw_case(lambda: np.random.default_rng(1).bytes(4096)), fast=True),
        Case("model-text", raw_case(b"hello, I am not a model\n")),
        Case("model-truncated", _truncated, fast=True),
        Case("model-is-npz", _npz_as_model),
        Case("model-is-folder", _model_folder),
        Case("model-is-fifo", _model_fifo, fast=True),
        Case("model-protobuf-garbage-fields", raw_case(b"\x08\x07\x12\x00\x1a\x00" * 50)),
        # broken graphs
        Case("graph-cycle", model_case(_mutate(_cycle)), fast=True),
        Case("graph-undefined-input", model_case(_mutate(_undefined)), fast=True),
        Case("graph-unknown-op", model_case(_mutate(_unknown_op)), fast=True),
        Case("graph-custom-domain-op", model_case(_mutate(_custom_domain))),
        Case("graph-opset-1", model_case(_set("opset", 1)), fast=True),
        Case("graph-opset-99", model_case(_set("opset", 99))),
        Case("graph-ir-99", model_case(_set("ir_version", 99))),
        Case("graph-ir-3", model_case(_set("ir_version", 3))),
        Case("graph-no-outputs", model_case(_mutate(_no_outputs))),
        Case("graph-duplicate-outputs", model_case(_mutate(_dup_outputs))),
        Case("graph-identity-only", model_case(_identity_only)),
        Case("graph-identity-chain-3000", model_case(_chain)),
        Case("graph-matmul-shape-mismatch", model_case(_matmul_mismatch)),
        Case("graph-if-subgraph", model_case(_if_model)),
        Case("graph-int-input", model_case(_int_input)),
        Case("graph-conv-group-mismatch", model_case(_conv_group_mismatch)),
        Case("graph-string-input", model_case(_mutate(_string_input))),
        Case("graph-double-input", model_case(_mutate(_float_as_double))),
        Case("graph-all-dims-symbolic", model_case(_mutate(_all_symbolic))),
        Case("graph-huge-fixed-batch", model_case(_mutate(_huge_input)), fast=True),
        Case("graph-zero-dim", model_case(_mutate(_zero_dim))),
        Case("graph-rank0-input", model_case(_mutate(_rank0))),
        Case("graph-100k-char-node-name", model_case(_mutate(_long_name))),
        # broken weights
        Case("weights-nan", model_case(_weights(_nan)), fast=True),
        Case("weights-inf", model_case(_weights(_inf)), fast=True),
        Case("weights-all-zero", model_case(_weights(lambda a: np.zeros_like(a)))),
        Case("weights-huge", model_case(_weights(lambda a: a * np.float32(3e38)))),
        Case("weights-raw-data-short", model_case(_mutate(_bad_raw)), fast=True),
        Case("weights-negative-dims", model_case(_mutate(_neg_dims))),
        Case("weights-gemm-nan-tiny", model_case(_gemm_tiny(np.nan))),
        # broken external data
        Case("ext-nul-in-location", _edit_external(_set_key("location", "m.onnx\0.data")), fast=True),
        Case("ext-huge-location", _edit_external(_set_key("location", "x" * 5000))),
        Case("ext-offset-not-int", _edit_external(_set_key("offset", "abc")), fast=True),
        Case("ext-length-not-int", _edit_external(_set_key("length", "1.5e3"))),
        Case("ext-negative-offset", _edit_external(_set_key("offset", "-64"))),
        Case("ext-negative-length", _edit_external(_set_key("length", "-1"))),
        Case("ext-huge-offset", _edit_external(_set_key("offset", "99999999999999999999"))),
        Case("ext-absolute", _edit_external(_set_key("location", "/etc/hostname"))),
        Case("ext-dotdot", _edit_external(_set_key("location", "../../etc/hostname"))),
        Case("ext-empty-location", _edit_external(_set_key("location", ""))),
        Case("ext-no-location", _edit_external(_drop_key("location"))),
        Case("ext-unknown-key", _edit_external(_set_key("checksum", "zzz"))),
        Case("ext-symlink-escape", _escaping_symlink_data),
        Case("ext-fifo", _data_fifo_location, fast=True),
        Case("ext-missing-file", _data_missing),
        Case("ext-truncated-file", _data_truncated),
        Case("ext-location-is-folder", _data_is_folder),
        # broken data files (the model is valid)
        Case("data-wrong-key", data_case(_npz(pixels=x)), data="d.npz", fast=True),
        Case("data-float64", data_case(_npz(input=x.astype(np.float64))), data="d.npz", fast=True),
        Case("data-int64", data_case(_npz(input=x.astype(np.int64))), data="d.npz"),
        Case("data-wrong-rank", data_case(_npz(input=x[:, None, :])), data="d.npz", fast=True),
        Case("data-wrong-width", data_case(_npz(input=x[:, :10])), data="d.npz"),
        Case("data-nan", data_case(_npz(input=np.full((4, 64), np.nan, np.float32))), data="d.npz"),
        Case("data-inf", data_case(_npz(input=np.full((4, 64), np.inf, np.float32))), data="d.npz"),
        Case("data-zero-samples", data_case(_npz(input=x[:0])), data="d.npz"),
        Case("data-scalar", data_case(_npz(input=np.float32(1))), data="d.npz"),
        Case("data-label-count-mismatch", data_case(_npz(input=x, label=np.arange(3))), data="d.npz"),
        Case("data-object-array", data_case(_pickled_npy), data="d.npz", fast=True),
        Case("data-raw-pickle-member", data_case(_raw_pickle_member), data="d.npz", fast=True),
        Case("data-lying-header", data_case(_lying_header), data="d.npz", fast=True),
        Case("data-zip-bomb", data_case(_zip_bomb), data="d.npz"),
        Case("data-not-zip", data_case(lambda p: p.write_bytes(b"nope" * 100)), data="d.npz"),
        Case("data-npy", data_case(lambda p: p.write_bytes(_npy_bytes(x))), data="d.npz"),
        Case("data-empty-file", data_case(lambda p: p.write_bytes(b"")), data="d.npz"),
        Case("data-fifo", data_case(_fifo), data="d.npz", fast=True),
        Case("data-missing", data_case(lambda p: None), data="d.npz"),
        Case("data-empty-archive", data_case(_npz()), data="d.npz"),
        Case("data-folder-mixed-keys", _folder(_folder_mixed), data="data"),
        Case("data-folder-empty", _folder(lambda p: None), data="data"),
        Case("data-folder-corrupt-member", _folder(_folder_corrupt), data="data"),
        Case("data-bool", data_case(_npz(input=x > 0)), data="d.npz"),
        Case(
            "valid-segmentation-300x300-32-samples",
            _segmentation,
            data="d.npz",
            expect_ok=True,
            time_limit=600,
        ),
        Case("data-huge-values", data_case(_npz(input=np.full((4, 64), 3e38, np.float32))), data="d.npz"),
    ]
    # option values
    opt = [
        ("bench-duration-nan", "bench", ["--duration", "nan"], True),
        ("bench-duration-inf", "bench", ["--duration", "inf"], True),
        ("bench-duration-negative", "bench", ["--duration", "-1"], False),
        ("bench-batch-huge", "bench", ["--batch", "20000000"], True),
        ("bench-batch-zero", "bench", ["--batch", "0"], False),
        ("bench-seed-negative", "bench", ["--seed", "-1"], True),
        ("bench-runs-zero", "bench", ["--runs", "0"], False),
        ("bench-warmup-negative", "bench", ["--warmup", "-5"], False),
        ("bench-runs-huge", "bench", ["--runs", "99999999999"], False),
        ("bench-min-cosine-nan", "bench", ["--min-cosine", "nan"], False),
        ("bench-shape-20-digits", "bench", ["--shape", "input=99999999999999999999x64"], True),
        ("bench-shape-garbage", "bench", ["--shape", "input=axb"], False),
        ("bench-shape-unknown-input", "bench", ["--shape", "nope=1x64"], False),
        ("bench-shape-huge", "bench", ["--shape", "input=100000x100000"], True),
        ("bench-opt-level-bogus", "bench", ["--opt-level", "turbo"], False),
        ("bench-provider-bogus", "bench", ["--provider", "warp-drive"], False),
        ("quantize-bench-seconds-inf", "quantize", ["--bench", "--bench-seconds", "inf"], True),
        ("quantize-min-cosine-negative", "quantize", ["--min-cosine", "-1"], True),
        ("quantize-min-cosine-two", "quantize", ["--min-cosine", "2"], False),
        ("quantize-max-drop-nan", "quantize", ["--max-drop", "nan"], False),
        ("quantize-threads-huge", "quantize", ["--threads", "100000"], True),
        ("quantize-mode-bogus", "quantize", ["--mode", "int3"], False),
        ("quantize-block-size-zero", "quantize", ["--mode", "weight-only", "--block-size", "0"], False),
        ("quantize-bits-odd", "quantize", ["--mode", "weight-only", "--bits", "3"], False),
        ("prune-min-keep-ratio-2", "prune", ["--min-keep-ratio", "2"], True),
        ("prune-ratio-1.5", "prune", ["--ratio", "1.5"], False),
        ("prune-ratio-nan", "prune", ["--ratio", "nan"], False),
        ("prune-ratio-one", "prune", ["--ratio", "1"], False),
        ("prune-threads-huge", "prune", ["--threads", "100000"], True),
        ("prune-round-to-huge", "prune", ["--round-to", "99999999999"], False),
        ("prune-importance-bogus", "prune", ["--importance", "vibes"], False),
        ("factorize-target-params-zero", "factorize", ["--target-params", "0"], False),
        ("factorize-energy-2", "factorize", ["--energy", "2"], False),
        ("factorize-rank-ratio-inf", "factorize", ["--rank-ratio", "inf"], False),
        ("factorize-threads-huge", "factorize", ["--threads", "100000"], True),
        ("factorize-method-bogus", "factorize", ["--method", "magic"], False),
        ("inspect-batch-huge", "inspect", ["--batch", "20000000"], False),
        ("factorize-shape-20-digits", "factorize", ["--shape", "input=99999999999999999999x64"], False),
        ("factorize-shape-garbage", "factorize", ["--shape", "input=1x1x1x1x1"], False),
        ("inspect-batch-20-digits", "inspect", ["--batch", "99999999999999999999"], False),
        ("inspect-top-negative", "inspect", ["--top", "-1"], False),
        ("any-unknown-option", "*", ["--frobnicate"], False),
    ]
    without_data = {"bench-batch-huge", "bench-seed-negative", "bench-shape-20-digits", "bench-shape-huge"}
    for name, command, args, fast in opt:
        commands = COMMANDS if command == "*" else (command,)
        if name in without_data:
            out.append(Case(f"opt-{name}", _copy_mlp, extra={command: args}, commands=commands, fast=fast))
            continue
        out.append(
            Case(f"opt-{name}", _copy_mlp, data="d.npz", extra={command: args}, commands=commands, fast=fast)
        )
    return out
