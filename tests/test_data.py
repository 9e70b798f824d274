"""modelcrunch.data: both layouts of the one data format, and every error."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from modelcrunch.data import load_dataset
from modelcrunch.errors import ModelcrunchError


def test_stacked_npz_splits_samples_and_labels(tmp_path):
    x = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    np.savez(tmp_path / "d.npz", input=x, label=np.arange(5))
    ds = load_dataset(tmp_path / "d.npz", ["input"])
    assert len(ds) == 5
    assert ds.input_names == ["input"]
    np.testing.assert_array_equal(ds.samples[2]["input"], x[2:3])
    np.testing.assert_array_equal(ds.label("label"), np.arange(5))
    batches = list(ds.batches(2))
    assert [b["input"].shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b["input"] for b in batches]), x)


def test_without_input_names_conventional_label_keys_are_labels(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 1)), b=np.ones((2, 4)), label=np.zeros(2))
    ds = load_dataset(tmp_path / "d.npz")
    assert sorted(ds.input_names) == ["a", "b"]
    assert list(ds.labels) == ["label"]


def test_folder_of_samples_with_varying_shapes(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, width in enumerate([4, 4, 6]):
        np.savez(folder / f"{i:03d}.npz", x=np.full((1, width), i, np.float32), label=np.array(i))
    ds = load_dataset(folder, ["x"])
    assert len(ds) == 3
    np.testing.assert_array_equal(ds.label("label"), [0, 1, 2])
    # Same-shape neighbours are batched together, the odd one alone.
    assert [b["x"].shape for b in ds.batches(8)] == [(2, 4), (1, 6)]


def _error(path, names=None) -> str:
    with pytest.raises(ModelcrunchError) as info:
        load_dataset(path, names)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.npz")


def test_not_an_npz(tmp_path):
    (tmp_path / "t.npz").write_text("hello")
    assert "not an .npz" in _error(tmp_path / "t.npz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    assert "single .npy" in _error(tmp_path / "a.npy")


def test_pickled_object_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "o.npz", input=np.array([{"a": 1}, None], dtype=object))
    assert "pickled/object" in _error(tmp_path / "o.npz", ["input"])
    # a raw pickle renamed to .npz is not a zip archive
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"input": 1}))
    assert "not an .npz" in _error(tmp_path / "p.npz")


def test_missing_input_key(tmp_path):
    np.savez(tmp_path / "d.npz", other=np.zeros((2, 3)))
    message = _error(tmp_path / "d.npz", ["input"])
    assert "'input'" in message and "other" in message


def test_mismatched_sample_counts(tmp_path):
    np.savez(tmp_path / "d.npz", input=np.zeros((4, 3)), label=np.zeros(3))
    assert "different sample counts" in _error(tmp_path / "d.npz", ["input"])


def test_scalar_and_empty(tmp_path):
    np.savez(tmp_path / "s.npz", input=np.float32(1))
    assert "scalar" in _error(tmp_path / "s.npz", ["input"])
    np.savez(tmp_path / "e.npz", input=np.zeros((0, 3)))
    assert "zero samples" in _error(tmp_path / "e.npz", ["input"])


def test_folder_feeds_scalar_inputs_as_scalars(tmp_path):
    """A rank-0 model input (silero-vad's sample rate): only the folder layout holds it."""
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(2):
        np.savez(folder / f"{i}.npz", audio=np.zeros((1, 512), np.float32), sr=np.array(16000, np.int64))
    ds = load_dataset(folder, ["audio", "sr"])
    assert [s["sr"].shape for s in ds.samples] == [(), ()] and ds.samples[0]["audio"].shape == (1, 512)


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .npz files" in _error(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.savez(mixed / "0.npz", x=np.zeros((1, 2)))
    np.savez(mixed / "1.npz", y=np.zeros((1, 2)))
    assert "no array for model input 'x'" in _error(mixed)
