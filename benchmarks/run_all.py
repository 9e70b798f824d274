"""Run every benchmarks/bench_*.py's `main()` in turn (`make bench`)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failures = 0
    for script in sorted(HERE.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        try:
            spec.loader.exec_module(module)
            module.main()
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures += 1
            print(f"!! {script.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"== {script.name} done in {time.perf_counter() - start:.1f} s\n", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
