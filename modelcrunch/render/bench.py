"""A bench report as rich tables (terminal), CSV or Markdown (CI logs, PR comments).

All three render the same rows: one per model and batch size, with the fidelity columns of
that model (blank for the baseline).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from rich.table import Table

from modelcrunch.render.verdict import verdict_table
from modelcrunch.runtime.report import BenchReport

COLUMNS = [
    "model",
    "batch",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "min_ms",
    "mean_ms",
    "stdev_ms",
    "items_per_s",
    "create_ms",
    "memory_mib",
    "size_kib",
    "latency_ratio",
    "throughput_ratio",
    "size_ratio",
    "memory_ratio",
    "max_abs",
    "rel_l2",
    "cosine",
    "snr_db",
    "top1_agreement",
    "accuracy",
]


def _num(value: float | None, fmt: str = ".4g") -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, fmt)


def rows(report: BenchReport) -> list[dict[str, str]]:
    """One flat row per model per batch size (strings, ready for any table)."""
    evaluation = report.evaluation
    out = []
    for result in report.results:
        for k, (m, r) in enumerate(zip(result.models, result.ratios, strict=True)):
            fid = evaluation.fidelity[k - 1] if evaluation and k > 0 else None
            worst = min(fid.outputs, key=lambda o: o.cosine) if fid and fid.outputs else None
            lat = m.latency
            out.append(
                {
                    "model": Path(m.name).name if m.path else m.name,
                    "batch": str(m.batch),
                    "p50_ms": _num(lat.p50_ms),
                    "p90_ms": _num(lat.p90_ms),
                    "p99_ms": _num(lat.p99_ms),
                    "min_ms": _num(lat.min_ms),
                    "mean_ms": _num(lat.mean_ms),
                    "stdev_ms": _num(lat.stdev_ms),
                    "items_per_s": _num(m.throughput, ".1f"),
                    "create_ms": _num(m.session_create_ms, ".1f"),
                    "memory_mib": _num(None if m.memory_bytes is None else m.memory_bytes / 2**20, ".2f"),
                    "size_kib": _num(m.size_bytes / 1024, ".1f"),
                    "latency_ratio": _num(r.latency, ".3f"),
                    "throughput_ratio": _num(r.throughput, ".3f"),
                    "size_ratio": _num(r.size, ".3f"),
                    "memory_ratio": _num(r.memory, ".3f"),
                    "max_abs": _num(worst.max_abs) if worst else "",
                    "rel_l2": _num(worst.rel_l2) if worst else "",
                    "cosine": _num(worst.cosine, ".6f") if worst else "",
                    "snr_db": _num(worst.snr_db, ".1f") if worst else "",
                    "top1_agreement": _num(fid.worst_top1_agreement, ".4f") if fid else "",
                    "accuracy": _num(evaluation.accuracies[k], ".4f") if evaluation else "",
                }
            )
    return out


def to_csv(report: BenchReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(report))
    return buffer.getvalue()


MARKDOWN_COLUMNS = [
    "model",
    "batch",
    "p50_ms",
    "p90_ms",
    "items_per_s",
    "size_kib",
    "memory_mib",
    "latency_ratio",
    "size_ratio",
    "memory_ratio",
    "cosine",
    "snr_db",
    "top1_agreement",
    "accuracy",
]


def to_markdown(report: BenchReport) -> str:
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in MARKDOWN_COLUMNS) + " |" for row in rows(report)]
    lines += [
        f"\n**{g.message.replace('gate failed', 'Gate failed')}**" for g in report.gates if not g.passed
    ]
    if report.gates and report.passed:
        lines.append(f"\nGates passed: {len(report.gates)} of {len(report.gates)}.")
    return "\n".join(lines) + "\n"


def to_tables(report: BenchReport) -> list[Table]:
    """Timing table, fidelity table (with several models or labels) and gates table."""
    cfg, data = report.config, rows(report)
    first = report.results[0]
    caption = (
        f"{first.models[0].providers[0]}, threads={cfg.threads or 'default'}, opt={cfg.optimization}, "
        f"{first.models[0].latency.runs} runs{' interleaved' if first.interleaved else ''}, "
        f"memory: {first.memory_method}"
    )
    timing = Table(title="Latency (ms)", caption=caption)
    costs = Table(title="Cost, and ratios to the first model")
    specs = [
        (
            timing,
            [
                ("model", "model"),
                ("batch", "batch"),
                ("min_ms", "min"),
                ("p50_ms", "p50"),
                ("p90_ms", "p90"),
                ("p99_ms", "p99"),
                ("mean_ms", "mean"),
                ("stdev_ms", "stdev"),
                ("items_per_s", "items/s"),
            ],
        ),
        (
            costs,
            [
                ("model", "model"),
                ("batch", "batch"),
                ("create_ms", "create ms"),
                ("memory_mib", "mem MiB"),
                ("size_kib", "size KiB"),
                ("latency_ratio", "lat×"),
                ("throughput_ratio", "thr×"),
                ("size_ratio", "size×"),
                ("memory_ratio", "mem×"),
            ],
        ),
    ]
    for table, columns in specs:
        for col, header in columns:
            table.add_column(header, justify="left" if col == "model" else "right", no_wrap=col == "model")
        for row in data:
            table.add_row(*(row[c] for c, _ in columns))
    tables = [timing, costs]
    if report.evaluation is not None:
        fidelity = Table(title="Fidelity vs the first model", caption=report.fidelity_source)
        for header in ["model", "output", "max abs", "rel L2", "cosine", "SNR dB", "top-1", "acc"]:
            fidelity.add_column(
                header,
                justify="left" if header in ("model", "output") else "right",
                no_wrap=header in ("model", "output"),
            )
        evaluation = report.evaluation
        fidelity.add_row(
            Path(report.names[0]).name, "baseline", "", "", "", "", "", _num(evaluation.accuracies[0], ".4f")
        )
        for k, fid in enumerate(evaluation.fidelity, 1):
            for o in fid.outputs:
                fidelity.add_row(
                    Path(report.names[k]).name,
                    o.name,
                    _num(o.max_abs),
                    _num(o.rel_l2),
                    _num(o.cosine, ".6f"),
                    _num(o.snr_db, ".1f"),
                    _num(o.top1_agreement, ".4f"),
                    _num(evaluation.accuracies[k], ".4f"),
                )
        tables.append(fidelity)
    for name, verdict in zip(report.names[1:], report.verdicts, strict=False):
        title = f"Task figures: {Path(name).name} vs the first model"
        tables.append(verdict_table(verdict.to_dict(), title=title))
    if report.gates:
        gates = Table(title="Gates")
        for header in ["gate", "model", "value", "limit", "result"]:
            gates.add_column(header)
        for g in report.gates:
            gates.add_row(
                g.gate + (f" (batch {g.batch})" if g.batch is not None else ""),
                Path(g.model).name,
                _num(g.value),
                f"{'≤' if g.upper else '≥'} {g.limit:g}",
                "[green]pass[/]" if g.passed else "[bold red]FAIL[/]",
            )
        tables.append(gates)
    return tables
