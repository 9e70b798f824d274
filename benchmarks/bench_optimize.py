"""Benchmark of ``modelcrunch optimize`` against the single commands at their defaults.

For one model and its calibration data: the same seeded held-out share ``optimize`` keeps for its
verdicts is split off; ``quantize`` (auto), ``prune --structured`` and ``factorize`` run at their
defaults on the rest (the calibration part, also their --eval-less fidelity data). Then every
single-command result and every model of the front (read from OUT_DIR/pareto.json, run
``optimize`` first) are judged with the same judge on the held-out share, and timed in ONE
interleaved benchmark with the original (2 threads, batch 1).

Prints, per model: the fastest front point that passes the default quality target against
``quantize`` alone (target ≥ 1.25× faster), and which single-command results some front point
dominates (quality ≥, latency ≤, size ≤).

    python benchmarks/bench_optimize.py MODEL CALIB OUT_DIR [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from modelcrunch.data import HOLDOUT, load_dataset
from modelcrunch.io import load_model, model_size_bytes
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.judge import Judge

THREADS = 2
SINGLE = {
    "quantize (auto)": ["quantize"],  # auto picks by measured latency: keep its bench
    "prune --structured": ["prune", "--structured", "--no-measure"],
    "factorize": ["factorize", "--no-measure"],
}


def _write_npz(data, path: Path) -> None:  # noqa: ANN001
    names = data.input_names
    arrays = {n: np.concatenate([s[n] for s in data.samples]) for n in names}
    np.savez(path, **arrays, **data.labels)


def _singles(model: Path, calib: Path, work: Path) -> dict[str, Path]:
    out = {}
    for name, args in SINGLE.items():
        dest = work / (args[0] + ".onnx")
        cmd = [
            sys.executable,
            "-m",
            "modelcrunch",
            args[0],
            str(model),
            "-o",
            str(dest),
            "--calibration",
            str(calib),
        ]
        done = subprocess.run([*cmd, *args[1:]], capture_output=True, text=True)
        if done.returncode == 0 and dest.is_file():
            out[name] = dest
        else:
            print(f"{name}: failed ({done.stderr.strip()[-200:]})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("calibration", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    original = load_model(args.model)
    data = load_dataset(args.calibration, [v.name for v in original.graph.inputs])
    calib, held_out = data.split(HOLDOUT, args.seed)
    doc = json.loads((args.out_dir / "pareto.json").read_text())
    front = {f"front #{p['trial']} {p['summary']}": Path(p["model"]) for p in doc["front"] if p["settings"]}
    judge = Judge(original, held_out, threads=THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _write_npz(calib, work / "calib.npz")
        models = {**_singles(args.model, work / "calib.npz", work), **front}
        verdicts = {name: judge(path) for name, path in models.items()}
        bench = benchmark(
            [args.model, *models.values()],
            held_out.samples[0],
            threads=THREADS,
            time_budget_s=args.seconds * (len(models) + 1),
        )
        rows = {}
        for (name, path), m, r in zip(models.items(), bench.models[1:], bench.ratios[1:], strict=True):
            v = verdicts[name]
            rows[name] = (v.quality, v.passed, r.latency, m.latency.p50_ms, model_size_bytes(path))
    size = model_size_bytes(args.model) / 1e6
    print(f"\n{args.model.name}: original p50 {bench.models[0].latency.p50_ms:.3f} ms, {size:.3f} MB")
    print(f"{'model':58s} {'quality':>8s} {'pass':>5s} {'latency':>8s} {'p50 ms':>8s} {'MB':>7s}")
    for name, (q, ok, ratio, ms, size) in rows.items():
        print(
            f"{name[:58]:58s} {q:8.4f} {'yes' if ok else 'NO':>5s} {ratio:7.2f}x {ms:8.3f} {size / 1e6:7.3f}"
        )
    passing = {n: r for n, r in rows.items() if n.startswith("front") and r[1]}
    quant = rows.get("quantize (auto)")
    if passing and quant:
        name, best = min(passing.items(), key=lambda kv: kv[1][2])
        speedup = quant[2] / best[2]
        print(f"fastest passing front point: {name}: {speedup:.2f}x faster than quantize auto (target 1.25x)")
    for single in (n for n in rows if not n.startswith("front")):
        q, _, lat, _, size = rows[single]
        dom = [
            n for n, r in rows.items()
            if n.startswith("front") and r[0] >= q and r[2] <= lat and r[4] <= size
            and (r[0] > q or r[2] < lat or r[4] < size)
        ]  # fmt: skip
        print(f"{single}: dominated by {dom[0] if dom else 'NO front point'}")


if __name__ == "__main__":
    main()
