"""The one data format every command reads (bench inputs, calibration, evaluation).

Two layouts:

* **One ``.npz`` file** whose arrays are keyed by input name and stacked along a leading sample
  axis: sample ``i`` is ``arr[i:i+1]`` for every input array. Keys that are not model inputs are
  labels (e.g. ``label`` with shape ``[N]``). Every array must have the same leading length.
* **A folder of ``.npz`` files**, one sample each (sorted by file name), for inputs whose shapes
  vary from sample to sample. Each file's input arrays are fed as stored (keep the batch axis of
  1, e.g. ``[1, 3, 480, 640]``; a scalar feeds a rank-0 input, such as silero-vad's sample rate,
  which the stacked layout cannot hold); its label arrays are concatenated across files.

Arrays are read with ``np.load(allow_pickle=False)``: object/pickled arrays are refused.
Which keys are inputs: the model's input names when given (``input_names``); otherwise every key
except the conventional label names in :data:`DEFAULT_LABEL_KEYS`.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelcrunch.budget import nbytes, reserve
from modelcrunch.errors import ModelcrunchError

logger = logging.getLogger(__name__)

#: Keys treated as labels when the model's input names are not known.
DEFAULT_LABEL_KEYS = ("label", "labels", "target", "targets", "y")
#: Share of the samples held out of calibration and repair for the verdict when no --eval is given.
HOLDOUT = 0.2


@dataclass(frozen=True)
class Dataset:
    """Samples (one feed dict each, leading axis 1) and label arrays (leading axis = sample)."""

    samples: list[dict[str, np.ndarray]]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def input_names(self) -> list[str]:
        return list(self.samples[0]) if self.samples else []

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Consecutive samples concatenated into feeds of up to ``batch_size`` samples.

        A batch ends early where the next sample's shapes differ (folder datasets), so every
        sample is used exactly once and in order.
        """
        if batch_size < 1:
            raise ModelcrunchError(f"batch size must be >= 1, got {batch_size}")
        group: list[dict[str, np.ndarray]] = []
        for sample in self.samples:
            if group and (len(group) == batch_size or _shape_key(sample) != _shape_key(group[0])):
                yield _concat(group)
                group = []
            group.append(sample)
        if group:
            yield _concat(group)

    def subset(self, indices: Iterable[int]) -> Dataset:
        """The samples at ``indices`` (in that order) with their labels."""
        picked = list(indices)
        labels = {k: np.asarray(v)[picked] for k, v in self.labels.items() if len(v) == len(self.samples)}
        return Dataset([self.samples[i] for i in picked], labels, self.source)

    def split(self, holdout: float = HOLDOUT, seed: int = 0) -> tuple[Dataset, Dataset]:
        """(kept, held out): a fixed, seeded share of the samples held out for the verdict.

        At least one sample is held out and one kept; a single sample cannot be split (both are
        the same dataset then: check ``len`` before calling this when that matters). Both keep the
        original order of their samples.
        """
        n = len(self.samples)
        if n < 2 or holdout <= 0:
            return self, self
        count = min(n - 1, max(1, round(n * holdout)))
        held = np.sort(np.random.default_rng(seed).permutation(n)[:count])
        kept = np.setdiff1d(np.arange(n), held)
        return self.subset(kept.tolist()), self.subset(held.tolist())

    def label(self, key: str) -> np.ndarray:
        """The label array ``key`` (one entry per sample), or a one-line error naming the keys."""
        if key not in self.labels:
            known = ", ".join(sorted(self.labels)) or "none"
            raise ModelcrunchError(f"{self.source}: no label array '{key}' (label keys: {known})")
        return self.labels[key]


def _shape_key(sample: Mapping[str, np.ndarray]) -> tuple:
    return tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in sample.items())


def _concat(group: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(group) == 1:
        return dict(group[0])
    return {name: np.concatenate([s[name] for s in group], axis=0) for name in group[0]}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of one ``.npz`` file, refusing pickles, object arrays and non-npz files."""
    if not path.exists():
        raise ModelcrunchError(f"{path}: no such file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise ModelcrunchError(f"{path}: not a regular file")
    if not zipfile.is_zipfile(path):
        hint = " (a single .npy array; save with np.savez(path, input=arr) instead)" if _is_npy(path) else ""
        raise ModelcrunchError(f"{path}: not an .npz archive{hint}")
    _check_members(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as exc:  # numpy raises ValueError for object arrays without allow_pickle
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise ModelcrunchError(
                f"{path}: holds pickled/object arrays, which are not loaded (store numeric arrays)"
            ) from exc
        raise ModelcrunchError(f"{path}: unreadable .npz ({exc})") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelcrunchError(f"{path}: unreadable .npz ({exc})") from exc
    if not arrays:
        raise ModelcrunchError(f"{path}: the .npz archive holds no arrays")
    for key, arr in arrays.items():
        if not isinstance(arr, np.ndarray):
            raise ModelcrunchError(f"{path}: member '{key}' is not a .npy array")
        if arr.dtype.hasobject or arr.dtype.kind in "OV":
            raise ModelcrunchError(f"{path}: array '{key}' has dtype {arr.dtype}; only numeric/bool arrays")
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise ModelcrunchError(f"{path}: array '{key}' holds NaN or infinite values")
    return arrays


def _check_members(path: Path) -> None:
    """Every member is a ``.npy`` array whose header fits the memory budget (read before the data:
    a small compressed archive can claim gigabytes)."""
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ModelcrunchError(f"{path}: member '{info.filename}' is not a .npy array")
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                total += max(nbytes(shape, dtype.itemsize), info.file_size)
    except ModelcrunchError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raise ModelcrunchError(f"{path}: unreadable .npz ({' '.join(str(exc).split())[:200]})") from exc
    reserve(total, f"{path} (decompressed)")


def _is_npy(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(6) == b"\x93NUMPY"


def _split(
    arrays: Mapping[str, np.ndarray], input_names: Iterable[str] | None, where: Path
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    if input_names is None:
        inputs = {k: v for k, v in arrays.items() if k not in DEFAULT_LABEL_KEYS}
    else:
        names = list(input_names)
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ModelcrunchError(
                f"{where}: no array for model input '{missing[0]}' (arrays: {', '.join(sorted(arrays))})"
            )
        inputs = {n: arrays[n] for n in names}
    labels = {k: v for k, v in arrays.items() if k not in inputs}
    if not inputs:
        raise ModelcrunchError(f"{where}: no input arrays (only labels: {', '.join(sorted(labels))})")
    return inputs, labels


def _load_stacked(path: Path, input_names: Iterable[str] | None) -> Dataset:
    inputs, labels = _split(_read_npz(path), input_names, path)
    counts = {}
    for key, arr in {**inputs, **labels}.items():
        if arr.ndim == 0:
            raise ModelcrunchError(f"{path}: array '{key}' is a scalar; arrays need a leading sample axis")
        counts[key] = arr.shape[0]
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{k}: {n}" for k, n in counts.items())
        raise ModelcrunchError(f"{path}: arrays have different sample counts ({detail})")
    n = next(iter(counts.values()))
    if n == 0:
        raise ModelcrunchError(f"{path}: the arrays hold zero samples")
    samples = [{k: arr[i : i + 1] for k, arr in inputs.items()} for i in range(n)]
    return Dataset(samples, labels, path)


def _load_folder(path: Path, input_names: Iterable[str] | None) -> Dataset:
    files = sorted(p for p in path.iterdir() if p.suffix == ".npz" and p.is_file())
    if not files:
        raise ModelcrunchError(f"{path}: folder holds no .npz files (expected one sample per file)")
    names = list(input_names) if input_names is not None else None
    samples: list[dict[str, np.ndarray]] = []
    label_parts: dict[str, list[np.ndarray]] = {}
    for file in files:
        inputs, labels = _split(_read_npz(file), names, file)
        if names is None:
            names = list(inputs)
        elif set(inputs) != set(names):
            raise ModelcrunchError(
                f"{file}: arrays {sorted(inputs)} differ from the first file's {sorted(names)}"
            )
        samples.append({n: inputs[n] for n in names})
        for key, arr in labels.items():
            label_parts.setdefault(key, []).append(np.atleast_1d(arr))
    labels = {}
    for key, parts in label_parts.items():
        if len(parts) != len(files):
            raise ModelcrunchError(f"{path}: label '{key}' is present in {len(parts)} of {len(files)} files")
        labels[key] = np.concatenate(parts, axis=0)
    return Dataset(samples, labels, path)


def load_dataset(path: str | os.PathLike, input_names: Iterable[str] | None = None) -> Dataset:
    """Load an ``.npz`` of stacked samples or a folder of one-sample ``.npz`` files.

    ``input_names``: the model's inputs; every one must be present, other keys become labels.
    Raises ModelcrunchError with one line for a missing file, a non-npz, pickled/object arrays,
    a missing input key or mismatched sample counts. Check against a model with
    :func:`modelcrunch.runtime.feeds.check_feed`.
    """
    path = Path(path)
    dataset = _load_folder(path, input_names) if path.is_dir() else _load_stacked(path, input_names)
    logger.debug("loaded %d samples from %s (labels: %s)", len(dataset), path, sorted(dataset.labels))
    return dataset
