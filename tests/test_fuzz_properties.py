"""Property-based fuzzing of the two readers every command shares: whatever the bytes, loading a
model or a data file either works or raises ModelcrunchError (one line), never anything else."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import onnx
import pytest
from models import mlp_proto

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from modelcrunch.data import load_dataset  # noqa: E402
from modelcrunch.errors import ModelcrunchError  # noqa: E402
from modelcrunch.io import load_model  # noqa: E402

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MODEL = mlp_proto().SerializeToString()


def _flip(blob: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(blob)
    for pos, value in edits:
        data[pos % len(data)] = value
    return bytes(data)


@SETTINGS
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, len(MODEL)),
)
def test_a_corrupted_model_loads_or_fails_in_one_line(tmp_path, edits, cut):
    path = tmp_path / "m.onnx"
    path.write_bytes(_flip(MODEL, edits)[: cut or None])
    try:
        model = load_model(path)
    except ModelcrunchError as exc:
        assert "\n" not in str(exc).strip()
    else:
        assert model.graph is not None


arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.float16]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
)


@SETTINGS
@given(members=st.dictionaries(st.sampled_from(["input", "label", "x", "y"]), arrays, max_size=3))
def test_any_npz_loads_or_fails_in_one_line(tmp_path, members):
    path = tmp_path / "d.npz"
    np.savez(path, **members)
    try:
        dataset = load_dataset(path, ["input"])
    except ModelcrunchError as exc:
        assert "\n" not in str(exc).strip()
    else:
        assert len(dataset) >= 1 and all(np.isfinite(s["input"]).all() for s in dataset.samples)


@SETTINGS
@given(
    name=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
    payload=st.binary(max_size=200),
    header=st.booleans(),
)
def test_any_zip_member_loads_or_fails_in_one_line(tmp_path, name, payload, header):
    path = tmp_path / "d.npz"
    buf = io.BytesIO()
    if header:
        np.save(buf, np.zeros((2, 3), np.float32))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, buf.getvalue()[:40] + payload)
    try:
        load_dataset(path)
    except ModelcrunchError as exc:
        assert "\n" not in str(exc).strip()


def test_model_strategy_base_is_valid():
    onnx.checker.check_model(mlp_proto())
