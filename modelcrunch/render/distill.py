"""Render distillation: live progress (loss and held-out figure) and the closing table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

_stderr = Console(stderr=True, highlight=False)


def _epoch_line(stats: Any) -> str:
    loss = "-" if stats.train_loss is None else f"{stats.train_loss:.4g}"
    mark = " (best)" if stats.best else ""
    return (
        f"epoch {stats.epoch}: train loss {loss}, held-out loss {stats.heldout_loss:.4g}, "
        f"held-out figure {stats.figure:.4f}{mark}, {stats.seconds:.0f}s"
    )


@contextmanager
def distill_progress(quiet: bool, console: Console = _stderr) -> Iterator[tuple[Any, Any]]:
    """(on_step, on_epoch) callbacks: a rich bar on a terminal, one plain line per epoch otherwise."""
    if quiet:
        yield None, None
        return
    if not console.is_terminal:
        yield None, lambda stats: console.print(_epoch_line(stats), markup=False, soft_wrap=True)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  held-out {task.fields[figure]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("epoch 1", total=None, loss="-", figure="-")

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            progress.update(
                task, description=f"epoch {epoch}", completed=step, total=steps, loss=f"{loss:.4g}"
            )

        def on_epoch(stats: Any) -> None:
            progress.console.print(_epoch_line(stats), markup=False)
            progress.update(task, figure=f"{stats.figure:.4f}")

        yield on_step, on_epoch


def render_distill(report: Any, console: Console) -> None:
    d = report.to_dict()
    table = Table(title=f"distill: {d.get('student')} → {d.get('output')} (teacher {d.get('teacher')})")
    for col in ("epoch", "steps", "train loss", "held-out loss", "held-out figure", ""):
        table.add_column(col, justify="right")
    for e in report.epochs:
        loss = "-" if e.train_loss is None else f"{e.train_loss:.4g}"
        mark = "best" if e.epoch == report.best_epoch else ""
        table.add_row(str(e.epoch), str(e.steps), loss, f"{e.heldout_loss:.4g}", f"{e.figure:.4f}", mark)
    console.print(table)
    kinds = ", ".join(f"{n}: {k}" for n, k in report.kinds.items())
    console.print(f"outputs: {kinds}; figure: {report.figure_name}")
    console.print(
        f"held-out figure {report.figure_before:.4f} → [bold]{report.figure_after:.4f}[/] "
        f"(epoch {report.best_epoch} kept; {report.heldout_samples} held-out, {report.train_samples} "
        f"training samples; stopped: {report.stopped}; {report.seconds:.1f}s)"
    )
    console.print(
        f"trained {report.trained_tensors} tensors ({report.trained_values:,} values); translation "
        f"error vs ONNX Runtime {report.translation_error:.1e}; graph unchanged"
    )
