"""Benchmark of ``modelcrunch factorize`` (run by ``make bench``).

(a) A square 1024×1024 MatMul at rank 128, batch 64: interleaved median latency ratio
    (issue 6 target: ≥ 3× faster; MACs 0.25×).
(b) The sample transformer at ``--target-params 0.5`` over its MatMuls: model output error
    (rel L2 of the logits) and digits test accuracy for plain SVD vs data-aware (whitened) SVD at
    the same ranks, data-aware with its own rank choice, and the latency ratio (target: data-aware
    error < plain, model faster).
(c) The sample CNN at ``--energy 0.9``: valid model, every skip explained, accuracy, latency.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table

from modelcrunch.data import load_dataset
from modelcrunch.io import load_model, save_model
from modelcrunch.passes.factorize import FactorizeConfig, RankPolicy, factorize
from modelcrunch.runtime.bench import benchmark
from modelcrunch.runtime.fidelity import measure_fidelity

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
THREADS = 2
SECONDS = 6.0


def _latency_ratio(original: Path, candidate: Path, feed: dict) -> tuple[float, float, float]:
    result = benchmark([original, candidate], feed, threads=THREADS, time_budget_s=SECONDS, warmup=5)
    base, cand = result.models[0].latency.p50_ms, result.models[1].latency.p50_ms
    return base, cand, base / cand


def square_matmul(out: Path) -> dict:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((1024, 1024)) / 32).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "square",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1024])],
        [numpy_helper.from_array(w, "w")],
    )
    src = out / "square.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    model = load_model(src)
    report = factorize(model, FactorizeConfig(policy=RankPolicy("ratio", 128 / 1024)))
    dst = save_model(model, out / "square_lr.onnx").path
    (layer,) = report.factorized
    base, cand, speedup = _latency_ratio(src, dst, {"x": rng.standard_normal((64, 1024)).astype(np.float32)})
    return {
        "case": "1024² MatMul r=128 b=64",
        "rank": layer.rank[0],
        "macs": layer.macs_after / layer.macs_before,
        "err": f"w {layer.weight_error:.3f}",
        "acc": "",
        "p50": f"{base:.3f} → {cand:.3f}",
        "speedup": speedup,
        "target": "≥ 3×",
        "ok": speedup >= 3.0,
    }


def transformer(out: Path) -> list[dict]:
    src = SAMPLES / "transformer.onnx"
    calib = load_dataset(SAMPLES / "transformer_digits_calib.npz")
    test = load_dataset(SAMPLES / "transformer_digits_test.npz")
    labels = test.labels["label"]
    policy = RankPolicy("params", 0.5)
    variants = {
        "plain SVD": (FactorizeConfig(policy=policy, exclude=("Gemm", "Conv")), None),
        "data-aware, same ranks": (
            FactorizeConfig(policy=policy, exclude=("Gemm", "Conv"), data_aware_ranks=False),
            calib,
        ),
        "data-aware, own ranks": (FactorizeConfig(policy=policy, exclude=("Gemm", "Conv")), calib),
    }
    rows, feed = [], next(test.batches(32))
    for label, (config, data) in variants.items():
        model = load_model(src)
        report = factorize(model, config, data)
        dst = save_model(
            model, out / f"transformer_{label.split(',')[0].replace(' ', '_')}_{len(rows)}.onnx"
        ).path
        fid = measure_fidelity(src, dst, test.batches(64), labels=labels)
        row = _measured_row(f"transformer p=0.5: {label}", report, fid, _latency_ratio(src, dst, feed))
        rows.append(row | {"rel": fid.outputs[0].rel_l2})
    rows[1]["target"] = "err < plain"
    rows[1]["ok"] = rows[1]["rel"] < rows[0]["rel"]
    return rows


def cnn(out: Path) -> dict:
    src = SAMPLES / "cnn.onnx"
    test = load_dataset(SAMPLES / "cnn_digits_test.npz")
    model = load_model(src)
    report = factorize(model, FactorizeConfig(policy=RankPolicy("energy", 0.9)))
    dst = save_model(model, out / "cnn_lr.onnx").path
    fid = measure_fidelity(src, dst, test.batches(64), labels=test.labels["label"])
    t = report.totals()
    case = f"cnn energy 0.9 ({t['layers_factorized']} done, {t['layers_skipped']} skipped)"
    row = _measured_row(case, report, fid, _latency_ratio(src, dst, next(test.batches(32))))
    return row | {"target": "valid, skips explained", "ok": all(x.reason for x in report.skipped)}


def _measured_row(case: str, report, fid, latency: tuple[float, float, float]) -> dict:  # noqa: ANN001
    """A table row for a factorized model measured on real data (no target of its own)."""
    base, cand, speedup = latency
    t = report.totals()
    return {
        "case": case,
        "rank": ",".join(str(x.rank[0]) for x in report.factorized),
        "macs": t["macs_after"] / t["macs_before"],
        "err": f"out {fid.outputs[0].rel_l2:.4f}",
        "acc": f"{fid.accuracy_reference:.4f} → {fid.accuracy_candidate:.4f}",
        "p50": f"{base:.3f} → {cand:.3f}",
        "speedup": speedup,
        "target": "",
        "ok": None,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-factorize-") as tmp:
        out = Path(tmp)
        rows = [square_matmul(out), *transformer(out), cnn(out)]
    table = Table(title=f"factorize (interleaved medians, {THREADS} threads, batch 64 / 32)")
    for col in ("case", "ranks", "MACs ratio", "error", "accuracy", "p50 ms", "speed-up", "target", "met"):
        table.add_column(col, overflow="fold")
    for r in rows:
        met = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        table.add_row(
            r["case"],
            r["rank"] if isinstance(r["rank"], str) else str(r["rank"]),
            f"{r['macs']:.3f}",
            r["err"],
            r["acc"],
            r["p50"],
            f"{r['speedup']:.2f}×",
            r["target"],
            met,
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
