import sys
from pathlib import Path

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
