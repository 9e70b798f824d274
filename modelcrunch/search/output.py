"""OUT_DIR's files: pareto.json, candidates.csv, best.onnx, report.html; the front's models kept.

Models of points that are not on the front are removed (they can never rejoin it: the front of
a study only improves). ``best.onnx`` is copied atomically; every model was verified when written.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

from modelcrunch.search import html
from modelcrunch.search.frontier import Frontier

FIELDS = ("trial", "key", "status", "on_front", "phase", "summary", "quality", "passed", "margin",
          "latency_ratio", "latency_ms", "size_bytes", "ram_bytes", "model", "settings")  # fmt: skip


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _prune_models(frontier: Frontier, out_dir: Path) -> Frontier:
    models = str((out_dir / "models").resolve()) + os.sep  # the original's own path is never touched
    keep = {p.model for p in frontier.points if p.on_front and p.model}
    points = []
    for p in frontier.points:
        if p.model and p.model.startswith(models) and p.model not in keep:
            Path(p.model).unlink(missing_ok=True)
            p = dataclasses.replace(p, model=None)
        points.append(p)
    best = next((p for p in points if frontier.best and p.number == frontier.best.number), None)
    return dataclasses.replace(frontier, points=tuple(points), best=best)


def write_csv(frontier: Frontier, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for p in frontier.points:
            row = p.to_dict()
            row["settings"] = json.dumps(p.settings, sort_keys=True)
            writer.writerow(row)
    os.replace(tmp, path)


def write(frontier: Frontier, out_dir: Path) -> Frontier:
    frontier = _prune_models(frontier, out_dir)
    if frontier.best is not None and frontier.best.model:
        _copy(Path(frontier.best.model), out_dir / "best.onnx")
    _write_text(
        out_dir / "pareto.json", json.dumps(frontier.to_dict(), indent=2, allow_nan=False, default=str) + "\n"
    )
    write_csv(frontier, out_dir / "candidates.csv")
    _write_text(out_dir / "report.html", html.render(frontier))
    return frontier
