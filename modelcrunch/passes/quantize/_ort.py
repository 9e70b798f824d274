"""Import ``onnxruntime.quantization`` without its side effect on logging.

Some of its modules call ``logging.basicConfig(level=INFO)`` at import time, which would turn every
library's INFO records into output. Import it here first (the package ``__init__`` does) and undo that.
"""

import logging

_root = logging.getLogger()
_handlers, _level = list(_root.handlers), _root.level

import onnxruntime.quantization  # noqa: E402, F401
import onnxruntime.quantization.matmul_nbits_quantizer  # noqa: E402, F401

for _handler in list(_root.handlers):
    if _handler not in _handlers:
        _root.removeHandler(_handler)
_root.setLevel(_level)
