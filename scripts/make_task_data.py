"""Task data for the real models: rendered text for RapidOCR's three models, real files for magika,
scikit-image's photographs for NudeNet.

    python scripts/make_task_data.py .real_models [--force]

Writes beside each model, in modelcrunch's dataset format (one ``.npz`` of arrays keyed by the
model's input names, stacked along a leading sample axis; see ``modelcrunch/data.py``):

* ``<stem>_calib.npz`` / ``<stem>_test.npz``: the model's inputs, preprocessed as
  ``rapidocr_onnxruntime==1.4.4`` / ``magika==1.0.3`` preprocess them; the classifiers' test
  (and calibration) files also hold ``label`` (their class index), so accuracy comes for free.
* ``<stem>_test.json``: the task (``ctc_text``, ``db_boxes`` or ``top1``, read by
  ``benchmarks/tasks.py``) and ground truth that is not a class label (strings, boxes, file
  paths). It is a sidecar rather than an array in the ``.npz`` because every non-input array of
  a dataset is read as classification labels.

Text is rendered with Pillow: a seeded mix of English words, numbers, prices, dates, codes and
punctuation in Pillow's built-in scalable font plus the DejaVu fonts where the system has them
(the json lists the fonts used), with varied size, ink and paper colour, contrast, blur and
noise. Preprocessing follows rapidocr (images in BGR order, as ``cv2`` reads them):

* det (``ch_PP-OCRv4_det_infer``): 320x320 pages with 3-7 lines, ``(x / 255 - 0.5) / 0.5``.
  rapidocr resizes a page so that its short side is 736 then rounds to multiples of 32; these
  pages are rendered directly at the network's input size, at the text scale such a resize gives.
  Ground truth: each line's ink box ``[x0, y0, x1, y1]``.
* rec (``ch_PP-OCRv4_rec_infer``): line crops resized to height 48 (width ``ceil(48 * w / h)``,
  at most 320), ``(x / 255 - 0.5) / 0.5``, zero-padded to width 320. Ground truth: the string.
* cls (``ch_ppocr_mobile_v2.0_cls_infer``): line crops resized and padded the same way to 48x192,
  half of them rotated 180 degrees (``label`` 1, else 0).

Resizing is Pillow's bilinear filter (which antialiases when shrinking) where rapidocr uses
``cv2.resize``.

magika (``magika/model.onnx``): files of this machine (Python's standard library, /usr/share,
/usr/lib, /etc) whose extension names one of magika's content types, a balanced seeded pick per
type, featurised as ``magika.Magika._extract_features_from_seekable`` does: the first and last
``block_size`` (4096) bytes, ``lstrip``/``rstrip``ped, the first ``beg_size`` and last
``end_size`` (1024) bytes as ints, padded with ``padding_token`` (256) -> ``bytes`` int32
``[N, 2048]``. Files magika would not send to the model (fewer than ``min_file_size_for_dl``
bytes after stripping) are skipped. ``label``: the index of the extension's content type in the
model's label space (a proxy: a ``.txt`` file may hold anything). The config is
``config.min.json``, extracted from the magika wheel by ``fetch_real_models.py``.

NudeNet (``nudenet/320n.onnx``, YOLOv8n, 18 classes): ``320n_calib.npz`` (128) and
``320n_test.npz`` (64), input ``images`` ``[N, 3, 320, 320]``, from the photographs
``scikit-image`` ships (no download), the two sets from *different* source images (the json lists
them): single photos, sheets of LFW face crops, 2x2 mosaics, each randomly cropped, flipped,
colour-jittered and rescaled, then preprocessed as ``nudenet==3.4.2`` does (black pad to a square
at the bottom/right, bilinear resize to 320, RGB, ``/ 255``, NCHW). The original model finds
109 detections (conf 0.25, NMS 0.45) in 75 of the 128 calibration images and 74 in 45 of the 64
test images.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import corpus_data  # noqa: E402 - scripts/ is on sys.path when run as a script
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DET_SIZE = 320
REC_SHAPE = (48, 320)
CLS_SHAPE = (48, 192)
#: (calibration, test) samples per model.
COUNTS = {"det": (32, 100), "rec": (64, 200), "cls": (64, 200), "magika": (64, 300), "nudenet": (128, 64)}
RAPIDOCR = "rapidocr-onnxruntime"
DET, REC, CLS = "ch_PP-OCRv4_det_infer", "ch_PP-OCRv4_rec_infer", "ch_ppocr_mobile_v2.0_cls_infer"
SEED = 20261123

# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------

_WORD_LIST = """
account address after again answer april august balance bank battery before between bicycle blue
book bottle bridge budget build cable camera card center change chapter check city class client
coffee color company contact copy corner cotton country credit customer daily data delivery design
desk detail device dinner document door double east edition energy engine entry event evening
example express family field figure file final first floor flower forest format forward friday
garden glass green group guide hand harbor health hello history holiday hotel house index input
invoice island issue item january july june kitchen label lamp language large layer letter level
light limit line list local lunch machine march market matter member menu method middle minute
model monday money month morning motor mountain name network north notice number object office
order orange output owner page paper parcel party patient payment pencil people period phone
picture plant plate point police price print product profile public quality quarter question radio
rate receipt record region report result river road room route sales sample school screen season
second section service settings shop signal silver simple size small south space speed square
staff station status stock store street studio summer sunday system table target taxi team test
thanks ticket time title today total tower town track train travel tuesday united update user
valley value version video view village visit voice water weather week west white window winter
world yellow
"""
WORDS = _WORD_LIST.split()
UNITS = ["kg", "km", "ml", "cm", "USD", "EUR", "GB", "MB", "pcs"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _word(rng: np.random.Generator) -> str:
    word = str(rng.choice(WORDS))
    case = rng.random()
    return word.capitalize() if case < 0.35 else word.upper() if case < 0.45 else word


def _number(rng: np.random.Generator, digits: tuple[int, int] = (1, 4)) -> str:
    return str(rng.integers(10 ** (digits[0] - 1), 10 ** digits[1]))


def text_line(rng: np.random.Generator, max_chars: int) -> str:
    """One line of text in one of a dozen seeded patterns, at most ``max_chars`` long."""
    patterns: list[Callable[[], str]] = [
        lambda: " ".join(_word(rng) for _ in range(rng.integers(1, 4))),
        lambda: f"{_word(rng)} {_number(rng)}",
        lambda: f"{_word(rng)}: ${rng.integers(1, 999)}.{rng.integers(0, 100):02d}",
        lambda: f"{rng.integers(1, 999)}.{rng.integers(0, 100):02d} {rng.choice(UNITS)}",
        lambda: f"{rng.integers(2000, 2030)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}",
        lambda: f"{rng.integers(1, 29)} {rng.choice(MONTHS)} {rng.integers(1990, 2030)}",
        lambda: f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d} {_word(rng)}",
        lambda: f"No. {_number(rng, (3, 5))}-{rng.integers(1, 99)}",
        lambda: f"ID {chr(65 + rng.integers(26))}{rng.integers(1, 9)}X-{_number(rng, (4, 4))}",
        lambda: f"{_word(rng)}, {_word(rng)}!",
        lambda: f"({_word(rng)} {rng.integers(1, 99)})",
        lambda: f"{_word(rng)}?",
        lambda: f"{_word(rng).lower()}@{_word(rng).lower()}.com",
        lambda: f"+{rng.integers(1, 99)} {_number(rng, (3, 3))}-{_number(rng, (4, 4))}",
        lambda: f"{rng.integers(1, 100)}% {_word(rng)}",
    ]
    while True:
        text = patterns[rng.integers(len(patterns))]()
        if len(text) <= max_chars:
            return text


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------

SYSTEM_FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
]


def font_names() -> list[str]:
    """Pillow's built-in font, then the system fonts found (the data depends on which)."""
    return ["<pillow default>", *(f for f in SYSTEM_FONTS if Path(f).is_file())]


def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    if name == "<pillow default>":
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(name, size)


class Style:
    """Seeded look of one image: font, ink and paper colours, blur and noise."""

    def __init__(
        self, rng: np.random.Generator, fonts: list[str], size: tuple[int, int], noisy: float = 0.5
    ) -> None:
        self.font_name = fonts[rng.integers(len(fonts))]
        self.size = int(rng.integers(*size))
        paper = rng.integers(175, 256)
        ink = rng.integers(0, 90)
        tint = rng.integers(-20, 21, size=3)
        self.paper = tuple(int(np.clip(paper + t, 0, 255)) for t in tint)
        self.ink = tuple(int(np.clip(ink + t, 0, 255)) for t in rng.integers(-25, 26, size=3))
        if rng.random() < 0.1:  # light text on a dark background
            self.paper, self.ink = self.ink, self.paper
        self.blur = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.4 else 0.0
        self.noise = float(rng.uniform(2.0, 8.0)) if rng.random() < noisy else 0.0
        self.gradient = float(rng.uniform(-30, 30)) if rng.random() < 0.3 else 0.0
        self.jpeg = int(rng.integers(30, 90)) if rng.random() < 0.3 else 0  # JPEG quality

    @property
    def font(self) -> ImageFont.FreeTypeFont:
        return load_font(self.font_name, self.size)

    def finish(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        """Blur, a lighting gradient, sensor noise and JPEG artefacts -> uint8 RGB array."""
        if self.blur:
            image = image.filter(ImageFilter.GaussianBlur(self.blur))
        pixels = np.asarray(image, dtype=np.float32)
        if self.gradient:
            pixels = pixels + np.linspace(0, self.gradient, pixels.shape[1], dtype=np.float32)[None, :, None]
        if self.noise:
            pixels = pixels + rng.normal(0, self.noise, pixels.shape).astype(np.float32)
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        if self.jpeg:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=self.jpeg)
            pixels = np.asarray(Image.open(buffer).convert("RGB"))
        return pixels


def render_line(text: str, style: Style, rng: np.random.Generator) -> np.ndarray:
    """A tight crop around one rendered line with a small random margin (uint8 RGB)."""
    font = style.font
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    pad_x = int(rng.integers(2, max(3, style.size // 2)))
    pad_y = int(rng.integers(2, max(3, style.size // 3)))
    image = Image.new("RGB", (x1 - x0 + 2 * pad_x, y1 - y0 + 2 * pad_y), style.paper)
    ImageDraw.Draw(image).text((pad_x - x0, pad_y - y0), text, font=font, fill=style.ink)
    return style.finish(image, rng)


def render_page(
    rng: np.random.Generator, fonts: list[str], size: int = DET_SIZE
) -> tuple[np.ndarray, list[str], list[list[int]]]:
    """A ``size`` x ``size`` page with 3-7 lines; their strings and ink boxes ``[x0, y0, x1, y1]``."""
    style = Style(rng, fonts, (18, 35), noisy=0.1)  # a noisy page compresses 10x less than a clean one
    image = Image.new("RGB", (size, size), style.paper)
    draw = ImageDraw.Draw(image)
    texts, boxes = [], []
    y = int(rng.integers(6, 30))
    for _ in range(rng.integers(3, 8)):
        font = load_font(style.font_name, int(np.clip(style.size + rng.integers(-4, 7), 16, 40)))
        for _attempt in range(10):
            text = text_line(rng, 28)
            x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
            if x1 - x0 <= size - 16:
                break
        else:
            continue
        if y + (y1 - y0) > size - 6:
            break
        x = int(rng.integers(6, size - (x1 - x0) - 6 + 1))
        draw.text((x - x0, y - y0), text, font=font, fill=style.ink)
        texts.append(text)
        boxes.append([x, y, x + x1 - x0, y + y1 - y0])
        y += (y1 - y0) + int(rng.integers(max(6, (y1 - y0) // 2), 3 * (y1 - y0) + 8))
    return style.finish(image, rng), texts, boxes


# --------------------------------------------------------------------------------------------------
# rapidocr preprocessing
# --------------------------------------------------------------------------------------------------


def normalize(rgb: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32 BGR in [-1, 1]: rapidocr's ``(x / 255 - 0.5) / 0.5``."""
    x = rgb[:, :, ::-1].astype(np.float32).transpose(2, 0, 1) / 255.0
    return (x - 0.5) / 0.5


def resize_norm_pad(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """rapidocr's rec/cls ``resize_norm_img``: height fixed, width by aspect (capped), zero-padded."""
    h, w = rgb.shape[:2]
    resized_w = width if math.ceil(height * w / h) > width else math.ceil(height * w / h)
    resized = np.asarray(Image.fromarray(rgb).resize((resized_w, height), Image.BILINEAR))
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :resized_w] = normalize(resized)
    return out


# --------------------------------------------------------------------------------------------------
# Builders: (arrays for the .npz, ground truth for the json), one entry per sample
# --------------------------------------------------------------------------------------------------


def make_rec(count: int, rng: np.random.Generator, fonts: list[str]) -> tuple[dict, dict]:
    height, width = REC_SHAPE
    xs, texts = [], []
    while len(xs) < count:
        style = Style(rng, fonts, (16, 41))
        text = text_line(rng, 16)
        crop = render_line(text, style, rng)
        if crop.shape[1] / crop.shape[0] > width / height:  # would be squeezed: draw another
            continue
        xs.append(resize_norm_pad(crop, height, width))
        texts.append(text)
    return {"x": np.stack(xs)}, {"texts": texts}


def make_cls(count: int, rng: np.random.Generator, fonts: list[str]) -> tuple[dict, dict]:
    height, width = CLS_SHAPE
    xs, labels = [], []
    for i in range(count):
        style = Style(rng, fonts, (16, 41))
        crop = render_line(text_line(rng, 20), style, rng)
        rotated = i % 2 == 1
        if rotated:
            crop = crop[::-1, ::-1]
        xs.append(resize_norm_pad(np.ascontiguousarray(crop), height, width))
        labels.append(int(rotated))
    order = rng.permutation(count)
    return {"x": np.stack(xs)[order], "label": np.array(labels, dtype=np.int64)[order]}, {}


def make_det(count: int, rng: np.random.Generator, fonts: list[str]) -> tuple[dict, dict]:
    xs, texts, boxes = [], [], []
    for _ in range(count):
        page, page_texts, page_boxes = render_page(rng, fonts)
        xs.append(normalize(page))
        texts.append(page_texts)
        boxes.append(page_boxes)
    return {"x": np.stack(xs)}, {"texts": texts, "boxes": boxes}


# --------------------------------------------------------------------------------------------------
# magika
# --------------------------------------------------------------------------------------------------

#: File extension -> the magika content type such files normally hold.
MAGIKA_TYPES = {
    ".py": "python",
    ".txt": "txt",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
    ".xml": "xml",
    ".css": "css",
    ".js": "javascript",
    ".sh": "shell",
    ".c": "c",
    ".h": "c",
    ".gz": "gzip",
    ".zip": "zip",
    ".png": "png",
    ".so": "elf",
    ".pdf": "pdf",
    ".svg": "svg",
    ".md": "markdown",
    ".rst": "rst",
    ".csv": "csv",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".gif": "gif",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".ico": "ico",
    ".ttf": "ttf",
    ".bz2": "bzip",
    ".xz": "xz",
    ".tar": "tar",
    ".pyc": "pythonbytecode",
    ".pem": "pem",
    ".pl": "perl",
    ".pm": "perl",
    ".rb": "ruby",
    ".tcl": "tcl",
    ".ini": "ini",
    ".whl": "zip",
}
MAGIKA_ROOTS = [sysconfig.get_paths()["stdlib"], "/usr/share", "/usr/lib", "/etc"]
#: Candidates kept per content type while walking (sorted walk: deterministic on one machine).
MAX_CANDIDATES = 400


def magika_features(path: Path, config: dict) -> list[int] | None:
    """magika 1.0.3's beg + end ints for ``path``, or None where magika would not run its model."""
    size = path.stat().st_size
    if size < config["min_file_size_for_dl"]:
        return None
    block = min(config["block_size"], size)
    with path.open("rb") as f:
        beg = f.read(block).lstrip()[: config["beg_size"]]
        f.seek(size - block)
        end = f.read(block).rstrip()
    end = end[max(0, len(end) - config["end_size"]) :]
    pad = config["padding_token"]
    beg_ints = list(beg) + [pad] * (config["beg_size"] - len(beg))
    end_ints = [pad] * (config["end_size"] - len(end)) + list(end)
    if beg_ints[config["min_file_size_for_dl"] - 1] == pad:  # too few bytes after stripping
        return None
    return beg_ints + end_ints


def magika_candidates(roots: list[str]) -> dict[str, list[Path]]:
    """Regular readable files under ``roots`` by content type (sorted walk, symlinks skipped)."""
    found: dict[str, list[Path]] = {}
    for root in roots:
        for folder, subfolders, files in os.walk(root):
            subfolders.sort()
            for name in sorted(files):
                kind = MAGIKA_TYPES.get(Path(name).suffix.lower())
                path = Path(folder) / name
                if kind is None or len(found.get(kind, [])) >= MAX_CANDIDATES or path.is_symlink():
                    continue
                if path.is_file() and os.access(path, os.R_OK):
                    found.setdefault(kind, []).append(path)
    return found


def make_magika(count: int, rng: np.random.Generator, config: dict) -> tuple[dict, list[Path]]:
    """``count`` files, round-robin over content types (seeded shuffle within each type)."""
    labels = config["target_labels_space"]
    pools = {
        kind: [paths[i] for i in rng.permutation(len(paths))]
        for kind, paths in sorted(magika_candidates(MAGIKA_ROOTS).items())
        if kind in labels
    }
    rows, kinds, chosen = [], [], []
    while len(rows) < count and any(pools.values()):
        for kind, pool in pools.items():
            while pool and len(rows) < count:
                path = pool.pop(0)
                try:
                    features = magika_features(path, config)
                except OSError:
                    continue
                if features is not None:
                    rows.append(features)
                    kinds.append(labels.index(kind))
                    chosen.append(path)
                    break
    order = rng.permutation(len(rows))
    inputs = {
        "bytes": np.array(rows, dtype=np.int32)[order],
        "label": np.array(kinds, dtype=np.int64)[order],
    }
    return inputs, [chosen[i] for i in order]


# --------------------------------------------------------------------------------------------------
# NudeNet 320n (YOLOv8n): scikit-image's bundled photographs, augmented
# --------------------------------------------------------------------------------------------------

NUDENET_SIZE = 320
#: scikit-image's bundled images (no download), split so that no source image is in both sets.
#: People carry the detections (``camera``: FACE_MALE, ``astronaut``: FACE_FEMALE, the LFW faces);
#: the rest are the objects, animals, textures and scenes a detector must stay quiet on.
NUDENET_SOURCES = {
    "calib": ["camera", "chelsea", "coffee", "coins", "hubble_deep_field", "immunohistochemistry",
              "page", "brick", "grass", "stereo_motorcycle", "moon"],
    "test": ["astronaut", "rocket", "colorwheel", "clock", "text", "gravel", "logo", "retina"],
}  # fmt: skip
#: ``skimage.data.lfw_subset()``: 100 faces then 100 non-faces, 25x25; each set gets its own half.
LFW_HALVES = {"calib": (0, 50), "test": (50, 100)}
PEOPLE = {"camera", "astronaut"}


def _rgb(image: np.ndarray) -> np.ndarray:
    """Any scikit-image array (grey, bool, RGBA, float) -> HWC uint8 RGB."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype.kind == "f":
        image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv2.resize(..., INTER_LINEAR)`` in numpy: half-pixel centres, no antialiasing, uint8 out.

    OpenCV computes this in fixed point; the result here differs from it by at most 1 grey level.
    """
    h, w = image.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    pixels = image.astype(np.float32)
    top = pixels[y0][:, x0] * (1 - fx) + pixels[y0][:, x1] * fx
    bottom = pixels[y1][:, x0] * (1 - fx) + pixels[y1][:, x1] * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)


def nudenet_preprocess(rgb: np.ndarray, size: int = NUDENET_SIZE) -> np.ndarray:
    """``nudenet.nudenet._read_image`` (nudenet 3.4.2) on an RGB image -> ``[3, size, size]`` float32.

    nudenet pads the (BGR) image with black at the bottom and right to a square, then
    ``cv2.dnn.blobFromImage(pad, 1 / 255, (size, size), swapRB=True)``: a bilinear resize, RGB,
    ``/ 255``, NCHW. Starting from RGB, the swap is already done.
    """
    side = max(rgb.shape[:2])
    padded = np.zeros((side, side, 3), dtype=np.uint8)
    padded[: rgb.shape[0], : rgb.shape[1]] = rgb
    return (resize_linear(padded, size, size).astype(np.float32) / 255.0).transpose(2, 0, 1)


def augment(image: np.ndarray, rng: np.random.Generator, min_area: float = 0.35) -> np.ndarray:
    """A random crop (``min_area``-1 of the area, aspect 3:4-4:3), flip and colour jitter (RGB uint8)."""
    h, w = image.shape[:2]
    for _attempt in range(10):
        area = h * w * rng.uniform(min_area, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        ch, cw = int(round(math.sqrt(area / aspect))), int(round(math.sqrt(area * aspect)))
        if 8 <= ch <= h and 8 <= cw <= w:
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            image = image[y : y + ch, x : x + cw]
            break
    if rng.random() < 0.5:
        image = image[:, ::-1]
    pixels = image.astype(np.float32)
    grey = pixels.mean(axis=2, keepdims=True)
    pixels = grey + (pixels - grey) * rng.uniform(0.6, 1.4)  # saturation
    pixels = pixels.mean() + (pixels - pixels.mean()) * rng.uniform(0.7, 1.3)  # contrast
    pixels = pixels * rng.uniform(0.7, 1.3) + rng.uniform(-15, 15, size=3)  # brightness, colour cast
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _rescale(image: np.ndarray, rng: np.random.Generator, long_side: tuple[int, int]) -> np.ndarray:
    """``image`` resized so that its long side is a random size in ``long_side`` (the photo's scale)."""
    h, w = image.shape[:2]
    scale = rng.uniform(*long_side) / max(h, w)
    return resize_linear(image, max(8, round(h * scale)), max(8, round(w * scale)))


def _face_sheet(faces: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grid of 2x2 to 5x5 LFW crops (faces and non-faces) pasted onto an augmented background."""
    k = int(rng.integers(2, 6))
    cell = int(rng.integers(300, 480)) // k
    side = k * cell
    sheet = resize_linear(augment(background, rng), side, side)
    for i in range(k * k):
        if rng.random() < 0.2:  # leave some cells to the background
            continue
        face = augment(_rgb(faces[int(rng.integers(len(faces)))]), rng, min_area=0.8)
        size = int(cell * rng.uniform(0.75, 1.0))
        y = (i // k) * cell + int(rng.integers(0, cell - size + 1))
        x = (i % k) * cell + int(rng.integers(0, cell - size + 1))
        sheet[y : y + size, x : x + size] = resize_linear(face, size, size)
    return sheet


def _mosaic(images: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """YOLO-style 2x2 mosaic of four augmented images around a random centre."""
    side = int(rng.integers(360, 640))
    cy, cx = (int(rng.integers(side // 4, 3 * side // 4)) for _ in range(2))
    canvas = np.full((side, side, 3), 114, dtype=np.uint8)
    for (y0, y1, x0, x1), image in zip(
        [(0, cy, 0, cx), (0, cy, cx, side), (cy, side, 0, cx), (cy, side, cx, side)], images, strict=True
    ):
        canvas[y0:y1, x0:x1] = resize_linear(augment(image, rng), y1 - y0, x1 - x0)
    return canvas


def make_nudenet(count: int, part: str, rng: np.random.Generator) -> tuple[dict, dict]:
    """``count`` augmented images of the ``part`` ("calib" or "test") sources, preprocessed.

    Each sample is, by a seeded draw, one augmented source photo (half of them a photo of a
    person), a sheet of LFW faces on an augmented background, or a 2x2 mosaic of four photos.
    Each is rescaled so that its long side is 200-800 px before nudenet's letterbox.
    """
    import skimage.data

    names = NUDENET_SOURCES[part]
    loaded = {name: getattr(skimage.data, name)() for name in names}
    photos = {n: _rgb(a[0] if isinstance(a, tuple) else a) for n, a in loaded.items()}  # stereo: left
    people = [n for n in names if n in PEOPLE]
    lfw = skimage.data.lfw_subset()
    lo, hi = LFW_HALVES[part]
    faces = np.concatenate([lfw[lo:hi], lfw[100 + lo : 100 + hi]])  # faces, then non-faces
    xs, kinds = [], []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.45:
            name = people[int(rng.integers(len(people)))] if rng.random() < 0.5 else str(rng.choice(names))
            image, kind = augment(photos[name], rng), name
        elif draw < 0.75:
            image, kind = _face_sheet(faces, photos[str(rng.choice(names))], rng), "lfw_sheet"
        else:
            picks = [str(n) for n in rng.choice(names, size=4)]
            image, kind = _mosaic([photos[n] for n in picks], rng), "mosaic:" + "+".join(picks)
        xs.append(nudenet_preprocess(_rescale(image, rng, (200, 800))))
        kinds.append(kind)
    return {"images": np.stack(xs)}, {"sources": kinds}


# --------------------------------------------------------------------------------------------------


def _split(arrays: dict, extra: dict, n_calib: int) -> tuple[dict, dict, dict]:
    """Calibration arrays (first ``n_calib``), test arrays and test ground truth (the rest)."""
    calib = {k: v[:n_calib] for k, v in arrays.items()}
    test = {k: v[n_calib:] for k, v in arrays.items()}
    return calib, test, {k: v[n_calib:] for k, v in extra.items()}


def _write(folder: Path, stem: str, calib: dict, test: dict, truth: dict) -> list[Path]:
    paths = [folder / f"{stem}_calib.npz", folder / f"{stem}_test.npz", folder / f"{stem}_test.json"]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(paths[0], **calib)
    np.savez_compressed(paths[1], **test)
    paths[2].write_text(json.dumps(truth, indent=1) + "\n")
    for path in paths:
        print(f"{path}  ({path.stat().st_size / 1e6:.2f} MB)")
    return paths


def _groups(dest: Path) -> dict[str, tuple[list[Path], Callable[[], list[Path]]]]:
    """Each model family's files under ``dest`` and the function that writes them."""

    def files(folder: Path, stems: list[str]) -> list[Path]:
        return [folder / f"{s}{x}" for s in stems for x in ("_calib.npz", "_test.npz", "_test.json")]

    return {
        "rapidocr": (files(dest / RAPIDOCR, [DET, REC, CLS]), lambda: _write_rapidocr(dest / RAPIDOCR)),
        "magika": (files(dest / "magika", ["model"]), lambda: _write_magika(dest / "magika")),
        "nudenet": (files(dest / "nudenet", ["320n"]), lambda: _write_nudenet(dest / "nudenet")),
        **{
            name: (paths, functools.partial(_write_corpus, dest, name))
            for name, paths in corpus_data.outputs(dest).items()
        },
    }


def outputs(dest: Path) -> list[Path]:
    """Every file this script writes under ``dest``."""
    return [path for paths, _ in _groups(dest).values() for path in paths]


def write_all(dest: Path, force: bool = False) -> list[Path]:
    """Task data beside the models in ``dest`` (a family is skipped where its files are all there,
    unless ``force``)."""
    written = []
    for name, (paths, write) in _groups(dest).items():
        if not force and all(p.exists() for p in paths):
            print(f"task data for {name} in {dest}: present")
            written += paths
        else:
            written += write()
    return written


def _write_rapidocr(folder: Path) -> list[Path]:
    fonts = font_names()
    builders = {
        "det": (DET, make_det, "db_boxes"),
        "rec": (REC, make_rec, "ctc_text"),
        "cls": (CLS, make_cls, "top1"),
    }
    written = []
    for offset, (key, (stem, build, task)) in enumerate(builders.items()):
        n_calib, n_test = COUNTS[key]
        arrays, extra = build(n_calib + n_test, np.random.default_rng(SEED + offset), fonts)
        calib, test, truth = _split(arrays, extra, n_calib)
        meta = {"task": task, "fonts": [Path(f).name for f in fonts], "seed": SEED + offset}
        written += _write(folder, stem, calib, test, {**meta, **truth})
    return written


def _write_magika(folder: Path) -> list[Path]:
    config_path = folder / "config.min.json"
    if not config_path.is_file():
        raise SystemExit(f"{config_path}: missing (python scripts/fetch_real_models.py extracts it)")
    config = json.loads(config_path.read_text())
    n_calib, n_test = COUNTS["magika"]
    arrays, files = make_magika(n_calib + n_test, np.random.default_rng(SEED + 10), config)
    calib, test, _ = _split(arrays, {}, n_calib)
    labels = config["target_labels_space"]
    truth = {
        "task": "top1",
        "label": "index into config.min.json's target_labels_space, from the file extension",
        "files": [str(p) for p in files[n_calib:]],
        "types": [labels[i] for i in test["label"].tolist()],
    }
    return _write(folder, "model", calib, test, truth)


def _write_corpus(dest: Path, name: str) -> list[Path]:
    """One model of the wider corpus (``corpus_data.py``); caustic's tables bound its categories."""
    limits = {}
    graph = dest / "caustic-nmr" / "best_v2_carbons.onnx"
    if name == "caustic" and graph.is_file():
        import onnx_ir as ir

        from modelcrunch.runtime.feeds import index_limits

        limits["caustic"] = index_limits(ir.load(graph))
    return corpus_data.write(dest, name, font_names(), limits)


def _write_nudenet(folder: Path) -> list[Path]:
    """``320n_calib.npz`` / ``320n_test.npz``: augmented scikit-image photos, disjoint sources."""
    n_calib, n_test = COUNTS["nudenet"]
    calib, calib_truth = make_nudenet(n_calib, "calib", np.random.default_rng(SEED + 20))
    test, test_truth = make_nudenet(n_test, "test", np.random.default_rng(SEED + 21))
    truth = {
        "task": "yolo_detect",
        "preprocess": "nudenet 3.4.2 _read_image: pad bottom/right to square, bilinear 320x320, RGB, /255",
        **{
            f"{part}_sources": [*NUDENET_SOURCES[part], "lfw_subset[{}:{}]".format(*LFW_HALVES[part])]
            for part in ("calib", "test")
        },
        "seed": SEED + 20,
        **test_truth,
    }
    return _write(folder, "320n", calib, test, truth)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--force"]
    write_all(Path(args[0] if args else ".real_models"), force="--force" in sys.argv)
