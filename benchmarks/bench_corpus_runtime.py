"""Run time of every command with defaults on every real corpus model (``make bench``).

Runs ``corpus_table.py`` (each command in a child process under a timeout, the model's own data)
when the corpus is present (``make real-models``), then prints the run-time table: seconds per
model and command, and which runs miss the 3-minute target for models up to 20 MB. Without the
corpus it says so and measures nothing. ``CORPUS_ONLY="nudenet det"`` limits the models (substrings),
``CORPUS_COMMANDS="quantize prune"`` the commands, ``CORPUS_TIMEOUT`` (s, default 420) each run.
Results accumulate in ``.bench_out/corpus.json`` (a later run replaces its own cells).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent / ".real_models"


def main() -> None:
    if not (ROOT / "manifest.json").exists():
        print("skipped: no real-model corpus here (make real-models fetches it)")
        return
    args = [sys.executable, str(HERE / "corpus_table.py"), str(ROOT)]
    args += ["--timeout", os.environ.get("CORPUS_TIMEOUT", "420")]
    args += ["--out", str(HERE.parent / ".bench_out")]
    if os.environ.get("CORPUS_ONLY"):
        args += ["--only", *os.environ["CORPUS_ONLY"].split()]
    if os.environ.get("CORPUS_COMMANDS"):
        args += ["--commands", *os.environ["CORPUS_COMMANDS"].split()]
    subprocess.run(args, check=True)


if __name__ == "__main__":
    main()
