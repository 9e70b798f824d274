"""Issue 18's curve: NudeNet 320n (YOLOv8n) pruned at three ratios, with and without ``--distill``.

    python benchmarks/bench_distill_curve.py [--ratios 0.1 0.2 0.3] [--budget 300] [--out .bench_out]

For each ratio, one ``modelcrunch prune --structured --ratio R --calibration CALIB --eval TEST
--keep-best --distill --distill-budget B --json`` run (the default repair first, then distillation on
the calibration share; the held-out ``--eval`` images are never trained on). Its report gives both
points of the curve: the judge's detection F1 against the original before distillation
(``distill.verdict_before``) and after (``distill.verdict_after``), and the latency ratio (the tool's
interleaved medians against the original, measured on the written model: the distilled one when
distillation was kept; distillation changes weights, not the graph, so the latency is the same).

Needs ``make real-models`` (``.real_models/nudenet``) and the ``distill`` extra; skipped otherwise
(``make bench`` runs it). The issue's target: F1 >= 0.90 at <= 0.75x latency, distillation within 20
minutes on 2 cores. Writes ``distill_curve.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / ".real_models" / "nudenet" / "320n.onnx"
BIN = Path(sys.executable).parent / "modelcrunch"


def _worst(verdict: dict | None) -> float | None:
    worst = (verdict or {}).get("worst") or {}
    return worst.get("value")


def run_ratio(ratio: float, budget: int, out_dir: Path) -> dict:
    out = out_dir / f"nudenet_prune_{ratio}.onnx"
    calib, test = MODEL.with_name("320n_calib.npz"), MODEL.with_name("320n_test.npz")
    args = [str(BIN), "prune", str(MODEL), "-o", str(out), "--structured", "--ratio", str(ratio),
            "--calibration", str(calib), "--eval", str(test), "--keep-best", "--distill",
            "--distill-budget", str(budget), "--json"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    row = {"ratio": ratio, "exit": proc.returncode, "seconds": round(seconds, 1)}
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        row["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return row
    distill = doc.get("distill") or {}
    models = (doc.get("latency") or {}).get("models") or []
    row.update(
        latency_ratio=(models[1].get("ratios") or {}).get("latency") if len(models) > 1 else None,
        f1_repair=_worst(distill.get("verdict_before")),
        f1_distill=_worst(distill.get("verdict_after")),
        size_ratio=out.stat().st_size / MODEL.stat().st_size if out.exists() else None,
        distill_kept=distill.get("kept"),
        epochs=max(len(distill.get("epochs") or []) - 1, 0),  # the first is the student as given
        stopped=distill.get("stopped"),
        notes=[n for n in doc.get("notes", []) if "distill" in n or "repair" in n],
    )
    return row


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratios", nargs="*", type=float, default=[0.1, 0.2, 0.3])
    parser.add_argument("--budget", type=int, default=300, help="distillation seconds per ratio")
    parser.add_argument("--out", default=str(ROOT / ".bench_out"))
    args = parser.parse_args(argv if argv is not None else [])
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: the distill extra (PyTorch) is not installed")
        return 0
    if not MODEL.exists():
        print("skipped: no .real_models/nudenet (make real-models)")
        return 0
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for ratio in args.ratios:
        rows.append(run_ratio(ratio, args.budget, out_dir))
        print(json.dumps(rows[-1]), flush=True)
    (out_dir / "distill_curve.json").write_text(json.dumps(rows, indent=2))
    print("\n| ratio | latency x | size x | detection F1, repair only | F1 after distill | distill | run |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            str(r["ratio"]),
            _fmt(r.get("latency_ratio"), ".2f"),
            _fmt(r.get("size_ratio"), ".2f"),
            _fmt(r.get("f1_repair")),
            _fmt(r.get("f1_distill")),
            f"{r.get('epochs', '-')} epochs, {r.get('stopped', '-')}, kept: {r.get('distill_kept', '-')}",
            f"exit {r['exit']}, {r['seconds']:.0f} s",
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
