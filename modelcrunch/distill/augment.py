"""Augmentations of unlabeled training feeds, so a few samples teach more than a few points.

Distillation needs no labels: the teacher labels whatever the student sees, so the inputs only
have to cover the input distribution. Per input, by its shape and dtype (``mode="auto"``):

* **image** (float, rank 4, ``[N, C, H, W]`` with ``H, W >= 8``): horizontal flip (p = 0.5), a shift
  by up to 1/8 of the size (edge padding, same size out), brightness and contrast jitter of
  +-10 % around the batch's own mean.
* **audio** (float, rank 2 ``[N, T]`` or rank 3 ``[N, 1, T]``): gain of +-3 dB, a circular time shift
  of up to 10 %, noise at 1 % of the signal's RMS.
* **text** (integer ids, rank 2, beside an attention mask): 10 % of the real tokens (not the
  first or the last, not padding) swapped for other tokens of the same batch.
* anything else: float inputs get Gaussian noise at 1 % of their standard deviation; integer
  inputs stay as they are.

Every function draws from the ``numpy.random.Generator`` it is given, so runs repeat with a seed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelcrunch.distill.config import MODES  # noqa: F401 - re-exported


def input_kind(name: str, array: np.ndarray) -> str:
    if array.dtype.kind == "f" and array.ndim == 4 and min(array.shape[2:]) >= 8:
        return "image"
    waveform = array.ndim == 2 or (array.ndim == 3 and array.shape[1] == 1)
    if array.dtype.kind == "f" and waveform and array.shape[-1] >= 256:
        return "audio"
    if (
        array.dtype.kind in "iu"
        and array.ndim == 2
        and "mask" not in name.lower()
        and "type" not in name.lower()
    ):
        return "text"
    return "other"


def _image(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, _, h, w = x.shape
    out = x.copy()
    flip = rng.random(n) < 0.5
    out[flip] = out[flip][..., ::-1]
    dy, dx = max(h // 8, 1), max(w // 8, 1)
    padded = np.pad(out, ((0, 0), (0, 0), (dy, dy), (dx, dx)), mode="edge")
    for i in range(n):
        oy, ox = rng.integers(0, 2 * dy + 1), rng.integers(0, 2 * dx + 1)
        out[i] = padded[i, :, oy : oy + h, ox : ox + w]
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    contrast = rng.uniform(0.9, 1.1, size=(n, 1, 1, 1)).astype(x.dtype)
    brightness = rng.uniform(-0.1, 0.1, size=(n, 1, 1, 1)).astype(x.dtype) * (np.abs(mean) + x.std() + 1e-6)
    out = (out - mean) * contrast + mean + brightness
    lo, hi = float(x.min()), float(x.max())
    return np.clip(out, lo, hi).astype(x.dtype)


def _audio(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, t = x.shape[0], x.shape[-1]
    out = x.copy()
    for i in range(n):
        out[i] = np.roll(out[i], int(rng.integers(-t // 10, t // 10 + 1)), axis=-1)
    gain = 10 ** (rng.uniform(-3, 3, size=(n,) + (1,) * (x.ndim - 1)) / 20)
    rms = np.sqrt((out**2).mean(axis=tuple(range(1, x.ndim)), keepdims=True)) + 1e-8
    out = out * gain + rng.normal(0, 1, size=out.shape) * 0.01 * rms
    return out.astype(x.dtype)


def _text(ids: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    out = ids.copy()
    real = (mask != 0) if mask is not None else (ids != 0)
    pool = ids[real]
    if pool.size < 4:
        return out
    for i in range(ids.shape[0]):
        positions = np.flatnonzero(real[i])[1:-1]
        if positions.size == 0:
            continue
        chosen = positions[rng.random(positions.size) < 0.1]
        out[i, chosen] = rng.choice(pool, size=chosen.size)
    return out


def augment(
    feed: Mapping[str, np.ndarray], rng: np.random.Generator, mode: str = "auto"
) -> dict[str, np.ndarray]:
    """A randomly augmented copy of one batch of feeds (see the module docstring)."""
    if mode == "none":
        return dict(feed)
    mask = next((a for n, a in feed.items() if "mask" in n.lower() and a.dtype.kind in "iub"), None)
    out = {}
    for name, array in feed.items():
        kind = input_kind(name, array) if mode == "auto" else mode
        if kind == "image" and array.ndim == 4 and array.dtype.kind == "f":
            out[name] = _image(array, rng)
        elif kind == "audio" and array.dtype.kind == "f":
            out[name] = _audio(array, rng)
        elif kind == "text" and array.dtype.kind in "iu" and array.ndim == 2 and "mask" not in name.lower():
            out[name] = _text(array, mask, rng) if "type" not in name.lower() else array
        elif array.dtype.kind == "f" and array.size > 1:
            noise = rng.normal(0, 1, size=array.shape) * 0.01 * (float(array.std()) + 1e-8)
            out[name] = (array + noise).astype(array.dtype)
        else:
            out[name] = array
    return out
