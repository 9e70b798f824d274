"""modelcrunch: make ONNX models smaller and faster by rewriting the graph, proven by measurement."""

from modelcrunch.errors import GateFailed, ModelcrunchError, VerificationError

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


def __getattr__(name: str):  # the I/O functions import onnx: only when asked for (fast, interruptible start)
    if name in ("load_model", "model_size_bytes", "save_model"):
        from modelcrunch import io

        return getattr(io, name)
    raise AttributeError(f"module 'modelcrunch' has no attribute {name!r}")
