"""Benchmark of ``modelcrunch quantize`` on the sample models and the real models (``make bench``).

For each model and each mode (dynamic, static, weight-only, storage, fp16, auto): size ratio,
interleaved median latency ratio vs the original (batch 1, 2 threads), worst output cosine and
accuracy on the held-out test data, and the task metric where the test data names a task
(``benchmarks/tasks.py``). Data beside a real model: ``<stem>_calib.npz`` / ``<stem>_test.npz``
(made by ``make real-models``: rendered text for RapidOCR's detector, recogniser and direction
classifier, real files for magika), else the folder's only ``*calib.npz`` / ``*test.npz``
(MiniLM's tokenised sentences); models without data run on synthesized inputs (``SHAPES``), where
only agreement with the original is meaningful. Targets (issue 4): sample CNN static int8 >= 1.5x
faster with accuracy within 1 point; real CNNs never slower in auto mode and <= 0.30x size;
BERT-style (MiniLM-L6, seq 128) <= 0.26x size, <= 0.58x latency at mean embedding cosine >= 0.995
(run with that target); real models keep task fidelity: top-1 agreement >= 99 %, OCR string
agreement >= 95 %, detection box sets matching at IoU >= 0.9 (read as box F1 >= 95 %).

Also the command's own run time for a fixed mode (``--mode static --no-sensitivity --no-bench``)
against calling ``onnxruntime.quantization.quantize_static`` directly with the same options and
calibration samples (interleaved ours, ORT, ours, ORT; medians of 3; target <= 1.5x).

    python benchmarks/bench_quantize.py [--real] [--seconds 4] [--modes static,auto] [--overhead-only]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnxruntime import quantization as ortq
from rich.console import Console
from rich.table import Table
from tasks import Task, first_outputs

from modelcrunch.data import load_dataset
from modelcrunch.errors import ModelcrunchError
from modelcrunch.passes.quantize import Mode, QuantizeOptions, quantize_model
from modelcrunch.passes.quantize.calibration import FeedReader
from modelcrunch.passes.quantize.config import STATIC_OP_TYPES
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.feeds import synthesize_feeds
from modelcrunch.runtime.fidelity import measure_fidelity
from modelcrunch.runtime.session import make_session

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
REAL = ROOT / ".real_models"
THREADS = 2
#: Fixed input shapes for the real models' dynamic dims (batch 1).
SHAPES = {
    "ddddocr/common": {"input1": [1, 1, 64, 256]},
    "nudenet/320n": {"images": [1, 3, 320, 320]},
    "rapidocr-onnxruntime/ch_PP-OCRv4_det_infer": {"x": [1, 3, 320, 320]},
    "rapidocr-onnxruntime/ch_PP-OCRv4_rec_infer": {"x": [1, 3, 48, 320]},
    "rapidocr-onnxruntime/ch_ppocr_mobile_v2.0_cls_infer": {"x": [1, 3, 48, 192]},
    "silero-vad/silero_vad": {"input": [1, 512], "state": [2, 1, 128]},
}
#: Inputs synthesized data must hold at a given value: silero-vad's sample rate picks its If branch
#: (16000 or 8000; anything else fails). Such models get their synthesized samples written to a
#: folder of one-sample ``.npz`` files, passed as calibration and evaluation data.
VALUES = {"silero-vad/silero_vad": {"sr": np.array(16000, dtype=np.int64)}}
#: Fidelity targets (worst output cosine) where the issue sets one.
MIN_COSINE = {"minilm/model": 0.995}
MODES = [Mode.DYNAMIC, Mode.STATIC, Mode.WEIGHT_ONLY, Mode.STORAGE, Mode.FP16, Mode.AUTO]


def beside(model: Path, split: str) -> Path | None:
    """``<stem>_<split>.npz`` beside ``model``, else the folder's only ``*<split>.npz``, else None."""
    own = model.with_name(f"{model.stem}_{split}.npz")
    if own.is_file():
        return own
    found = sorted(model.parent.glob(f"*{split}.npz"))
    return found[0] if len(found) == 1 else None


def cases(real: bool) -> list[tuple[str, Path, Path | None, Path | None]]:
    found = [
        (p.stem, p, SAMPLES / f"{p.stem}_digits_calib.npz", SAMPLES / f"{p.stem}_digits_test.npz")
        for p in sorted(SAMPLES.glob("*.onnx"))
    ]
    if real and REAL.is_dir():
        for p in sorted(REAL.rglob("*.onnx")):
            found.append((f"{p.parent.name}/{p.stem}", p, beside(p, "calib"), beside(p, "test")))
    return found


def run_case(
    name: str,
    path: Path,
    calib: Path | None,
    test: Path | None,
    modes: list[Mode],
    seconds: float,
    out_dir: Path,
) -> list[dict]:
    rows, outputs = [], []
    if test is not None:
        data = load_dataset(test)
        feeds, labels = data.samples, data.labels.get("label")
    else:
        session = make_session(path)
        shapes = SHAPES.get(name)
        fixed = VALUES.get(name, {})
        feeds = [{**synthesize_feeds(session, shapes=shapes, batch=1, seed=s), **fixed} for s in range(8)]
        labels = None
        if name in VALUES:
            calib = out_dir / f"{name.replace('/', '_')}_samples"
            calib.mkdir(exist_ok=True)
            for i, feed in enumerate(feeds):
                np.savez(calib / f"{i:03d}.npz", **feed)
    task = Task.load(path, test)
    reference = first_outputs(path, task.samples, THREADS) if task else None
    for mode in modes:
        out = out_dir / f"{name.replace('/', '_')}_{mode.value}.onnx"
        started = time.perf_counter()
        try:
            report = quantize_model(
                path,
                out,
                QuantizeOptions(
                    mode=mode, bench=mode is Mode.AUTO, bench_seconds=2, min_cosine=MIN_COSINE.get(name)
                ),
                calibration=calib,
                evaluation=test,
                shapes=SHAPES.get(name),
            )
        except ModelcrunchError as exc:
            rows.append({"model": name, "mode": mode.value, "error": str(exc)[:90]})
            continue
        fid = measure_fidelity(path, out, feeds, labels=labels, threads=THREADS)
        elapsed = time.perf_counter() - started  # quantize + fidelity, not the task metric's runs
        rows.append(
            {
                "model": name,
                "mode": report.mode if mode is not Mode.AUTO else f"auto→{report.mode}",
                "size": report.size_ratio,
                "cosine": fid.worst_cosine,
                "acc_orig": fid.accuracy_reference,
                "acc": fid.accuracy_candidate,
                "excluded": len(report.nodes_excluded),
                "synthetic": test is None,
                "task": task.score(reference, first_outputs(out, task.samples, THREADS)) if task else None,
                "seconds": elapsed,
            }
        )
        outputs.append(out)
    if outputs:
        result = benchmark([path, *outputs], feeds[:4], threads=THREADS, time_budget_s=seconds, runs=100_000)
        ok = [r for r in rows if "error" not in r]
        for row, ratio in zip(ok, result.ratios[1:], strict=True):
            row["latency"] = ratio.latency
    return rows


def overhead(path: Path, calib: Path, out_dir: Path, *, eval_samples: int, repeats: int = 3) -> dict:
    """Seconds of ``quantize_model`` (fixed static mode) vs ORT's ``quantize_static``, interleaved."""
    options = QuantizeOptions(mode=Mode.STATIC, sensitivity=False, bench=False, max_eval_samples=eval_samples)
    samples = load_dataset(calib).samples[: options.max_calibration_samples]

    def ours() -> None:
        quantize_model(path, out_dir / "ours.onnx", options, calibration=calib)

    def ort_direct() -> None:
        ortq.quantize_static(
            str(path),
            str(out_dir / "ort.onnx"),
            FeedReader(load_dataset(calib).samples[: len(samples)]),
            quant_format=ortq.QuantFormat.QDQ,
            op_types_to_quantize=list(STATIC_OP_TYPES),
            per_channel=True,
            reduce_range=options.effective_reduce_range,
            activation_type=ortq.QuantType.QUInt8,
            weight_type=ortq.QuantType.QInt8,
            extra_options={"WeightSymmetric": True},
        )

    times: dict[str, list[float]] = {"ours": [], "ort": []}
    ours(), ort_direct()  # warm-up: lazy imports, first sessions
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("ort", ort_direct)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    ours_s, ort_s = (statistics.median(times[k]) for k in ("ours", "ort"))
    return {"ours": ours_s, "ort": ort_s, "ratio": ours_s / ort_s}


#: Real models in the run-time comparison (with --real): calibration data beside them, < 20 MB.
OVERHEAD_MAX_BYTES = 20_000_000


def overhead_table(real: bool = False, eval_samples: tuple[int, ...] = (256, 32)) -> Table:
    table = Table(title="quantize run time: --mode static --no-sensitivity --no-bench vs ORT quantize_static")
    for column in ("model", "eval samples", "modelcrunch (s)", "ORT quantize_static (s)", "ratio"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, calib, _ in cases(real):
            if calib is None or not calib.is_file() or path.stat().st_size > OVERHEAD_MAX_BYTES:
                continue
            for count in eval_samples:
                row = overhead(path, calib, Path(tmp), eval_samples=count)
                table.add_row(
                    name, str(count), f"{row['ours']:.3f}", f"{row['ort']:.3f}", f"{row['ratio']:.2f}x"
                )
    return table


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="also the real models in .real_models/")
    parser.add_argument("--seconds", type=float, default=4.0, help="interleaved bench budget per model")
    parser.add_argument("--modes", default=",".join(m.value for m in MODES))
    parser.add_argument("--only", default="", help="substring filter on model names")
    parser.add_argument("--overhead-only", action="store_true", help="only the run-time comparison with ORT")
    parser.add_argument("--no-overhead", action="store_true", help="skip the run-time comparison with ORT")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    console = Console(width=160)
    if not args.no_overhead:
        console.print(overhead_table(args.real))
    if args.overhead_only:
        return 0
    modes = [Mode(m) for m in args.modes.split(",")]
    table = Table(title=f"modelcrunch quantize: batch 1, {THREADS} threads, interleaved medians")
    for column in ("model", "mode", "size", "latency", "cosine", "accuracy", "task", "float", "time"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, calib, test in cases(args.real):
            if args.only and args.only not in name:
                continue
            try:
                rows = run_case(name, path, calib, test, modes, args.seconds, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - one model's failure must not lose the table
                rows = [{"model": name, "mode": ",".join(m.value for m in modes), "error": str(exc)[:90]}]
            for row in rows:
                # progress, in case a later model fails hard
                console.print(f"{row['model']} {row['mode']}: {row.get('error', 'done')}", style="dim")
                if "error" in row:
                    table.add_row(row["model"], row["mode"], "error: " + row["error"])
                    continue
                acc = (
                    f"{row['acc_orig']:.1%}→{row['acc']:.1%}"
                    if row["acc"] is not None
                    else ("n/a (synthetic)" if row["synthetic"] else "n/a (no labels)")
                )
                table.add_row(
                    row["model"],
                    row["mode"],
                    f"{row['size']:.2f}x",
                    fmt(row.get("latency"), ".2f") + "x",
                    fmt(row["cosine"], ".4f"),
                    acc,
                    row["task"].summary() if row["task"] else "—",
                    str(row["excluded"]),
                    f"{row['seconds']:.1f}s",
                )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
