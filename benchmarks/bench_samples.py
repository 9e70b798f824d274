"""Bench every sample model against an identical copy of itself (interleaved A, B, A, B, ...).

The copy's latency ratio should be ~1.00 and its fidelity exact: this checks the measuring
method itself (drift cancelling, spinning off) and gives reference figures for the samples.
Run with `make bench` (or `python benchmarks/bench_samples.py`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from modelcrunch.runtime.report import BenchConfig, run_bench

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
BATCHES = [1, 32]


def main() -> None:
    console = Console(width=130, highlight=False)
    table = Table(title="sample models vs an identical copy (CPU, interleaved, 200 runs each)")
    for header in [
        "model",
        "batch",
        "p50 ms",
        "p90 ms",
        "items/s",
        "copy p50 ms",
        "latency ratio",
        "size KiB",
        "mem MiB",
        "create ms",
        "exact",
    ]:
        table.add_column(header, justify="left" if header == "model" else "right", no_wrap=header == "model")
    models = sorted(SAMPLES.glob("*.onnx"))
    if not models:
        print(f"no sample models in {SAMPLES}", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            copy = Path(tmp) / f"copy_{model.name}"
            shutil.copy(model, copy)
            report = run_bench(BenchConfig(models=[model, copy], warmup=20, runs=200, batches=BATCHES))
            exact = report.evaluation.fidelity[0].exact if report.evaluation else None
            for result in report.results:
                base, other = result.models
                table.add_row(
                    model.name,
                    str(result.batch),
                    f"{base.latency.p50_ms:.4f}",
                    f"{base.latency.p90_ms:.4f}",
                    f"{base.throughput:.0f}",
                    f"{other.latency.p50_ms:.4f}",
                    f"{result.ratios[1].latency:.3f}",
                    f"{base.size_bytes / 1024:.1f}",
                    f"{(base.memory_bytes or 0) / 2**20:.2f}",
                    f"{base.session_create_ms:.1f}",
                    str(exact),
                )
    console.print(table)


if __name__ == "__main__":
    main()
