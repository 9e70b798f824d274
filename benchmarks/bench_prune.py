"""Benchmark of ``modelcrunch prune --structured`` on the sample models (run by ``make bench``).

For the sample CNN (50% of channels) and the sample transformer (FFN width halved): MACs ratio,
digits test accuracy without and with repair (least-squares refit on the 200 calibration samples),
and the interleaved median latency ratio vs the original at batch 1 and batch 32 on 2 threads.
Targets (issue 5): CNN MACs <= 0.35x, speed-up >= 0.7x of the MAC reduction, accuracy with repair
within 2 points; transformer valid and faster.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from modelcrunch.data import load_dataset
from modelcrunch.io import load_model, save_model
from modelcrunch.passes.prune.repair import repair
from modelcrunch.passes.prune.report import layer_stats
from modelcrunch.passes.prune.structured import StructuredOptions, ensure_node_names, prune_structured
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.fidelity import measure_fidelity

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
THREADS = 2
SECONDS = 8.0


def macs(model) -> int:
    return sum(s.macs for s in layer_stats(model).values())


def run_case(name: str, ratio: float, out_dir: Path) -> dict:
    path = SAMPLES / f"{name}.onnx"
    calib = load_dataset(SAMPLES / f"{name}_digits_calib.npz")
    test = load_dataset(SAMPLES / f"{name}_digits_test.npz")
    labels = test.labels["label"]
    original, model = load_model(path), load_model(path)
    ensure_node_names(original)
    decisions = prune_structured(model, StructuredOptions(ratio=ratio))
    no_repair = measure_fidelity(original, model, test.batches(64), labels=labels)
    repair(original, model, decisions, list(calib.batches(50)))
    fid = measure_fidelity(original, model, test.batches(64), labels=labels)
    out = save_model(model, out_dir / f"{name}_pruned.onnx").path
    row = {
        "model": name,
        "groups": f"{sum(d.kept is not None for d in decisions)}/{len(decisions)}",
        "macs_ratio": macs(model) / macs(original),
        "acc_orig": fid.accuracy_reference,
        "acc_no_repair": no_repair.accuracy_candidate,
        "acc_repair": fid.accuracy_candidate,
        "cosine": fid.worst_cosine,
    }
    for batch in (1, 32):
        feed = next(iter(test.batches(batch)))
        result = benchmark([path, out], feed, threads=THREADS, time_budget_s=SECONDS, runs=100_000)
        base, new = result.models
        row[f"b{batch}_ms"] = (base.latency.p50_ms, new.latency.p50_ms)
        row[f"b{batch}_speedup"] = base.latency.p50_ms / new.latency.p50_ms
    single = benchmark(
        [path, out], next(iter(test.batches(1))), threads=1, time_budget_s=SECONDS / 2, runs=100_000
    ).models
    row["b1_1t_speedup"] = single[0].latency.p50_ms / single[1].latency.p50_ms
    return row


def main() -> int:
    console = Console(width=220)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case("cnn", 0.5, Path(tmp)), run_case("transformer", 0.5, Path(tmp))]
    table = Table(title=f"prune --structured --ratio 0.5 (interleaved medians, {THREADS} threads)")
    for col in (
        "model",
        "groups pruned",
        "MACs",
        "acc orig",
        "acc no repair",
        "acc repair",
        "cosine",
        "b1 ms orig→pruned",
        "b1 speed-up",
        "b32 ms orig→pruned",
        "b32 speed-up",
        "speed-up/MAC-red. (b1, b32)",
        "b1 speed-up (1 thread)",
    ):
        table.add_column(col, justify="right")
    ok = True
    for r in rows:
        reduction = 1 / r["macs_ratio"]
        eff = (r["b1_speedup"] / reduction, r["b32_speedup"] / reduction)
        table.add_row(
            r["model"],
            r["groups"],
            f"{r['macs_ratio']:.3f}×",
            f"{r['acc_orig']:.1%}",
            f"{r['acc_no_repair']:.1%}",
            f"{r['acc_repair']:.1%}",
            f"{r['cosine']:.4f}",
            "{:.3f}→{:.3f}".format(*r["b1_ms"]),
            f"{r['b1_speedup']:.2f}×",
            "{:.3f}→{:.3f}".format(*r["b32_ms"]),
            f"{r['b32_speedup']:.2f}×",
            f"{eff[0]:.2f}, {eff[1]:.2f}",
            f"{r['b1_1t_speedup']:.2f}×",
        )
        if r["model"] == "cnn":
            checks = {
                "MACs <= 0.35x": r["macs_ratio"] <= 0.35,
                "speed-up >= 0.7 x MAC reduction (batch 1)": eff[0] >= 0.7,
                "speed-up >= 0.7 x MAC reduction (batch 32)": eff[1] >= 0.7,
                "accuracy with repair within 2 points": r["acc_orig"] - r["acc_repair"] <= 0.02,
            }
        else:
            checks = {"transformer faster (batch 32)": r["b32_speedup"] > 1.0}
        for label, passed in checks.items():
            ok &= passed
            console.print(f"{'PASS' if passed else 'MISS'} {r['model']}: {label}")
    console.print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
