"""Every command with defaults on every model of the real corpus: exit, size, latency, task figure.

    python benchmarks/corpus_table.py [.real_models] [--timeout 240] [--only NAME ...] [--out .bench_out]

For each model of ``.real_models/manifest.json`` that has task data (``make real-models``), runs
``inspect``, ``bench``, ``quantize``, ``prune --structured`` and ``factorize`` with their defaults
and the model's own data (``--calibration`` = its calibration set, ``--eval``/``--inputs`` = its
test set), each under ``nice -n 10`` and a wall-clock timeout, and checks what issue 17 asks:
exit 0 with a model that loads, or a one-line refusal; never a traceback. Writes
``corpus.json`` and ``corpus.md`` (the README's table) to ``--out``.

``--report`` prints the tables of what ``corpus.json`` holds, running nothing; ``corpus_runtime.md``
is the run-time table (seconds per command, against issue 17's 3-minute target).

Columns: exit code (``T`` = timed out), output size / original's, latency ratio and the headline
task figure the command reported (the judge's worst figure where it judged, else worst cosine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

COMMANDS = ("inspect", "bench", "quantize", "prune", "factorize")
BIN = Path(sys.executable).parent / "modelcrunch"


@dataclass
class Run:
    model: str
    command: str
    exit: int | None  # None: timed out
    seconds: float
    size_ratio: float | None = None
    latency_ratio: float | None = None
    figure: str = ""
    message: str = ""  # the last stderr line (a refusal's reason)
    traceback: bool = False
    valid_model: bool | None = None


def data_of(model: Path) -> tuple[Path | None, Path | None]:
    """(calibration, test) beside ``model``: ``<stem>_calib.npz`` / folder, or the MiniLM names."""
    found = []
    for part in ("calib", "test"):
        candidates = [model.with_name(f"{model.stem}_{part}.npz"), model.with_name(f"{model.stem}_{part}")]
        candidates.append(model.with_name(f"sentences_{part}.npz"))
        found.append(next((c for c in candidates if c.exists()), None))
    return found[0], found[1]


def corpus(root: Path) -> list[tuple[str, Path, Path | None, Path | None]]:
    entries = json.loads((root / "manifest.json").read_text())
    rows = []
    for entry in entries:
        model = root / entry["path"]
        calib, test = data_of(model)
        rows.append((entry["path"], model, calib, test))
    return sorted(rows, key=lambda r: r[1].stat().st_size if r[1].exists() else 0)


def _find(doc: object, key: str) -> object:
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        values = doc.values()
    elif isinstance(doc, list):
        values = doc
    else:
        return None
    for value in values:
        found = _find(value, key)
        if found is not None:
            return found
    return None


def _latency(doc: dict) -> float | None:
    for key in ("latency", "benchmark"):
        block = doc.get(key)
        if isinstance(block, dict) and isinstance(block.get("ratio"), int | float):
            return float(block["ratio"])
        models = block.get("models") if isinstance(block, dict) else None
        if models and len(models) > 1:
            p50 = [_find(m, "p50_ms") for m in models[:2]]
            if all(isinstance(p, int | float) and p > 0 for p in p50):
                return p50[1] / p50[0]
    return None


def _figure(doc: dict) -> str:
    verdict = _find(doc, "verdict")
    if isinstance(verdict, dict):
        worst = verdict.get("worst") or {}
        if worst:
            kind, figure = worst.get("kind", ""), worst.get("figure", "")
            label = figure if figure.startswith(kind) else f"{kind} {figure}"  # not "detection detection F1"
            return f"{label} {worst.get('value', 0):.3f}".strip()
        if "quality" in verdict:
            return f"quality {verdict['quality']:.3f}"
    cosine = _find(doc, "worst_cosine")
    if isinstance(cosine, int | float):
        return f"cosine {cosine:.4f}"
    return ""


def command_line(command: str, model: Path, calib: Path | None, test: Path | None, out: Path) -> list[str]:
    if command == "inspect":
        return [str(BIN), "inspect", str(model), "--json"]
    if command == "bench":
        return [str(BIN), "bench", str(model), "--json"] + (["--inputs", str(test)] if test else [])
    data = (["--calibration", str(calib)] if calib else []) + (["--eval", str(test)] if test else [])
    extra = ["--structured"] if command == "prune" else []
    return [str(BIN), command, str(model), "-o", str(out), *extra, *data, "--json"]


def run_one(name: str, command: str, model: Path, calib, test, out_dir: Path, timeout: float) -> Run:
    out = out_dir / f"{name.replace('/', '__')}.{command}.onnx"
    out.unlink(missing_ok=True)
    args = ["nice", "-n", "10", *command_line(command, model, calib, test, out)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"}
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Run(name, command, None, time.perf_counter() - start, traceback="Traceback" in stderr)
    run = Run(name, command, proc.returncode, time.perf_counter() - start)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    run.message = lines[-1][:200] if lines else ""
    run.traceback = "Traceback (most recent call last)" in proc.stderr
    try:
        doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        doc = {}
    if out.exists():
        run.size_ratio = out.stat().st_size / model.stat().st_size
        run.valid_model = _loads(out)
    run.latency_ratio = _latency(doc) if isinstance(doc, dict) else None
    run.figure = _figure(doc) if isinstance(doc, dict) else ""
    return run


def _loads(path: Path) -> bool:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return True
    except Exception:  # noqa: BLE001 - any failure means the written model is not valid
        return False


def markdown(runs: list[Run]) -> str:
    models = list(dict.fromkeys(r.model for r in runs))
    lines = [
        "| model | " + " | ".join(COMMANDS[2:]) + " | inspect / bench |",
        "|---|" + "---|" * (len(COMMANDS) - 1),
    ]
    for model in models:
        cells = []
        by = {r.command: r for r in runs if r.model == model}
        for command in COMMANDS[2:]:
            r = by.get(command)
            cells.append("not run" if r is None else cell(r))
        quick = " / ".join("not run" if by.get(c) is None else _exit(by[c]) for c in COMMANDS[:2])
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {quick} |")
    return "\n".join(lines) + "\n"


def _exit(r: Run) -> str:
    return f"T>{r.seconds:.0f}s" if r.exit is None else str(r.exit) + (" TB" if r.traceback else "")


def cell(r: Run) -> str:
    parts = [_exit(r)]
    if r.size_ratio is not None:
        parts.append(f"{r.size_ratio:.2f}x size")
    if r.latency_ratio is not None:
        parts.append(f"{r.latency_ratio:.2f}x lat")
    if r.figure:
        parts.append(r.figure)
    if r.exit not in (0, None) and r.message:
        why = r.message
        for prefix in ("error: ", "quality target missed: ", "target MISSED: "):
            why = why.removeprefix(prefix)
        parts.append("**" + why.replace("|", "/")[:80] + "**")
    if r.exit == 0 and r.valid_model is False:
        parts.append("**written model does not load**")
    parts.append(f"{r.seconds:.0f}s")
    return ", ".join(parts)


#: Issue 17's run-time target: any command with defaults under 3 minutes on a corpus model up to 20 MB.
TARGET_SECONDS, TARGET_MAX_BYTES = 180.0, 20_500_000


def runtime_markdown(runs: list[Run], root: Path) -> str:
    """Seconds per (model, command), and whether each meets ``TARGET_SECONDS`` (models up to
    ``TARGET_MAX_BYTES``; larger ones are listed without a target)."""
    sizes = {name: model.stat().st_size for name, model, _, _ in corpus(root) if model.exists()}
    models = sorted({r.model for r in runs}, key=lambda m: sizes.get(m, 0))
    lines = [
        "| model | MB | " + " | ".join(COMMANDS) + " | over 3 min |",
        "|---|---|" + "---|" * len(COMMANDS) + "---|",
    ]
    missed = []
    for model in models:
        by = {r.command: r for r in runs if r.model == model}
        size = sizes.get(model, 0)
        targeted = size <= TARGET_MAX_BYTES
        cells, over = [], []
        for command in COMMANDS:
            r = by.get(command)
            if r is None:
                cells.append("not run")
                continue
            cells.append(_exit(r) if r.exit is None else f"{r.seconds:.0f} s")
            if targeted and (r.exit is None or r.seconds > TARGET_SECONDS):
                over.append(command)
        missed += [f"{model} {c}" for c in over]
        verdict = ", ".join(over) if over else ("none" if targeted else "no target (> 20 MB)")
        lines.append(f"| {model} | {size / 1e6:.1f} | " + " | ".join(cells) + f" | {verdict} |")
    lines.append("")
    lines.append(
        f"run-time target (< {TARGET_SECONDS:.0f} s with defaults, models <= 20 MB): "
        + (
            "no runs recorded"
            if not runs
            else "met by every run"
            if not missed
            else f"MISSED by {len(missed)}: " + "; ".join(missed)
        )
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", nargs="?", default=".real_models")
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--commands", nargs="*", default=list(COMMANDS))
    parser.add_argument("--out", default=".bench_out")
    parser.add_argument("--report", action="store_true", help="print the tables of corpus.json; run nothing")
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "corpus.json"
    runs = [Run(**r) for r in json.loads(results_path.read_text())] if results_path.exists() else []
    for name, model, calib, test in [] if args.report else corpus(Path(args.root)):
        if args.only and not any(o in name for o in args.only):
            continue
        for command in args.commands:
            runs = [r for r in runs if not (r.model == name and r.command == command)]
            run = run_one(name, command, model, calib, test, out_dir, args.timeout)
            runs.append(run)
            print(f"{name:55s} {command:9s} {cell(run)}", flush=True)
            results_path.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    (out_dir / "corpus.md").write_text(markdown(runs))
    (out_dir / "corpus_runtime.md").write_text(runtime_markdown(runs, Path(args.root)))
    print(markdown(runs))
    print(runtime_markdown(runs, Path(args.root)))


if __name__ == "__main__":
    main()
