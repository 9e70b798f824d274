"""modelcrunch: make ONNX models smaller and faster by rewriting the graph, proven by measurement."""

from modelcrunch.errors import GateFailed, ModelcrunchError, VerificationError

__version__ = "0.1.0"


def optimize(model, calibration, out_dir, **options):  # noqa: ANN001, ANN003, ANN201
    """Measured Pareto search over prune x factorize x precision (see ``modelcrunch.search.api.optimize``).

    Returns the ``Frontier`` the ``optimize`` command renders. Optuna is imported on first call only.
    """
    from modelcrunch.search.api import optimize as run

    return run(model, calibration, out_dir, **options)


#: One function per command (``modelcrunch/api.py``), imported when first used.
COMMANDS = ("inspect", "quantize", "prune", "factorize", "bench", "distill")

__all__ = [
    "GateFailed",
    "ModelcrunchError",
    "VerificationError",
    "__version__",
    "bench",
    "distill",
    "factorize",
    "inspect",
    "load_model",
    "model_size_bytes",
    "optimize",
    "prune",
    "quantize",
    "save_model",
]


def __getattr__(name: str):  # these import onnx: only when asked for (fast, interruptible start)
    if name in ("load_model", "model_size_bytes", "save_model"):
        from modelcrunch import io

        return getattr(io, name)
    if name in COMMANDS:
        from modelcrunch import api

        return getattr(api, name)
    raise AttributeError(f"module 'modelcrunch' has no attribute {name!r}")
