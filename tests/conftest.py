import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
REAL_MODELS = ROOT / ".real_models"
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


def real_model_paths() -> list[Path]:
    """The .onnx files fetched by `make real-models` (empty when not fetched)."""
    return sorted(REAL_MODELS.rglob("*.onnx")) if REAL_MODELS.is_dir() else []


def real_model_feeds(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Inputs a real model runs on: dynamic dims 1 (batch) or 64; silero-vad's state and rate."""
    rng = np.random.default_rng(0)
    feeds = {}
    for i, arg in enumerate(session.get_inputs()):
        shape = [d if isinstance(d, int) else (1 if k == 0 else 64) for k, d in enumerate(arg.shape)]
        if arg.name == "sr":  # silero-vad's sample rate
            feeds[arg.name] = np.array(16000, dtype=np.int64)
        elif arg.name == "state":
            feeds[arg.name] = np.zeros([2, 1, 128], dtype=np.float32)
        elif arg.name == "input" and len(shape) == 2 and i == 0 and session.get_inputs()[-1].name == "sr":
            feeds[arg.name] = rng.standard_normal([1, 512]).astype(np.float32)
        elif "int64" in arg.type:
            feeds[arg.name] = np.zeros(shape, dtype=np.int64)
        elif "int32" in arg.type:
            feeds[arg.name] = rng.integers(0, 256, shape, dtype=np.int32)
        else:
            feeds[arg.name] = rng.random(shape, dtype=np.float32)
    return feeds
