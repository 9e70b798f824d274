"""The ``modelcrunch`` console script: imports the CLI inside the Ctrl-C guard, so an interrupt
during start-up (importing onnxruntime takes a while) is one line, not a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from modelcrunch.cli.app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(130) from None
    run()
