"""modelcrunch: make ONNX models smaller and faster by rewriting the graph, proven by measurement."""

from modelcrunch.errors import GateFailed, ModelcrunchError, VerificationError
from modelcrunch.io import load_model, model_size_bytes, save_model

__version__ = "0.1.0"

__all__ = [
    "GateFailed",
    "ModelcrunchError",
    "VerificationError",
    "__version__",
    "load_model",
    "model_size_bytes",
    "save_model",
]
