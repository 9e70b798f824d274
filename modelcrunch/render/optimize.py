"""Render an optimize Frontier: the front as a rich table, a one-line progress, and the summary."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelcrunch.search.frontier import Frontier


def front_table(frontier: Frontier, title: str = "Pareto front") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("trial", "settings", "quality", "passed", "latency", "MB", "RAM MB", "status"):
        table.add_column(col, justify="left" if col == "settings" else "right")
    best = frontier.best.number if frontier.best else None
    for p in frontier.front:
        f = p.figures
        ram = f"{f.ram_bytes / 1e6:.1f}" if f.ram_bytes else "–"
        mark = " *" if p.number == best else ""
        table.add_row(
            f"#{p.number}{mark}",
            p.summary,
            f"{f.quality:.4f}",
            "yes" if f.passed else "no",
            f"{f.latency_ratio:.2f}x",
            f"{f.size_bytes / 1e6:.3f}",
            ram,
            p.status,
        )
    return table


def progress_line(frontier: Frontier, phase: str) -> str:
    left = max(frontier.budget_s - frontier.elapsed_s, 0.0)
    return (
        f"[{phase}] {len(frontier.points)} measured ({frontier.measured_now} this run), "
        f"front {len(frontier.front)}, {frontier.elapsed_s:.0f} s elapsed, {left:.0f} s of budget left"
    )


def live_view(frontier: Frontier, phase: str) -> Group:
    done = min(frontier.elapsed_s / frontier.budget_s, 1.0) if frontier.budget_s > 0 else 1.0
    width = 30
    bar = "█" * int(done * width) + "░" * (width - int(done * width))
    return Group(front_table(frontier), Text(f"{bar} {progress_line(frontier, phase)}"))


def summary(frontier: Frontier) -> Group:
    parts: list = [front_table(frontier, "Pareto front (* = best.onnx)")]
    if frontier.best is not None:
        b = frontier.best
        parts.append(
            Text(
                f"best.onnx: #{b.number} {b.summary} — quality {b.figures.quality:.4f}, "
                f"{b.figures.latency_ratio:.2f}x latency, {b.figures.size_bytes / 1e6:.3f} MB "
                f"({frontier.reason})"
            )
        )
    parts.append(
        Text(
            f"{len(frontier.points)} candidates ({frontier.measured_now} measured in this run, "
            f"{len(frontier.failures)} failed to build) in {frontier.elapsed_s:.0f} s; "
            f"wrote pareto.json, candidates.csv, report.html to {frontier.out_dir}"
        )
    )
    return Group(*parts)
