"""Teacher-student distillation of an ONNX student's weights (``modelcrunch distill``).

Needs PyTorch, an optional extra (``pip install 'modelcrunch[distill]'``): this package's
``__init__`` and :mod:`.pipeline` import torch only when distillation runs, so
``import modelcrunch`` never does.
"""

from __future__ import annotations

import importlib.util

from modelcrunch.errors import ModelcrunchError

INSTALL_HINT = "distill needs PyTorch: pip install 'modelcrunch[distill]'"


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def require_torch() -> None:
    """Raise a one-line ModelcrunchError (exit 2) naming the extra when torch is not installed."""
    if not torch_available():
        raise ModelcrunchError(INSTALL_HINT)
