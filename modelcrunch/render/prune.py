"""Render a PruneReport as rich tables (the default human output of ``modelcrunch prune``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from modelcrunch.passes.prune.report import PruneReport
from modelcrunch.render.verdict import verdict_table


def _num(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _arrow(a, b, fmt=str) -> str:
    return fmt(a) if a == b else f"{fmt(a)} → [bold]{fmt(b)}[/]"


def render_prune(report: PruneReport, console: Console) -> None:
    if report.mode == "structured":
        table = Table(title=f"prune --structured: {report.model} → {report.output}")
        for col in ("layer", "op", "in ch", "out ch", "params", "MACs"):
            table.add_column(col, justify="left" if col in ("layer", "op") else "right")
        for x in report.layers:
            table.add_row(
                x.name,
                x.op_type,
                _arrow(x.in_before, x.in_after),
                _arrow(x.out_before, x.out_after),
                _arrow(x.params_before, x.params_after, _num),
                _arrow(x.macs_before, x.macs_after, _num),
            )
        table.add_row(
            "[bold]total[/]",
            "",
            "",
            "",
            _arrow(report.params_before, report.params_after, _num),
            _arrow(report.macs_before, report.macs_after, _num),
        )
        console.print(table)
        console.print(
            f"groups: {report.groups_pruned} pruned, {len(report.skipped)} skipped "
            f"of {report.groups_total}"
            + (f"; MACs ×{report.macs_ratio:.3f}" if report.macs_ratio is not None else "")
        )
        for s in report.skipped:
            console.print(f"  skipped {', '.join(s.producers)} ({s.channels} ch): {s.reason}", markup=False)
        for r in report.repaired:
            fit = f"block rel. error (output of {r.block})" if r.block else "layer rel. error"
            console.print(
                f"  repaired {r.name}: {fit} {r.rel_error_before:.3f} → {r.rel_error_after:.3f}", markup=False
            )
    else:
        table = Table(title=f"prune ({report.mode}): {report.model} → {report.output}")
        for col in ("tensor", "shape", "sparsity"):
            table.add_column(col, justify="left" if col == "tensor" else "right")
        for s in report.sparsity:
            table.add_row(
                s.name,
                "×".join(map(str, s.shape)),
                _arrow(f"{s.sparsity_before:.1%}", f"{s.sparsity_after:.1%}"),
            )
        console.print(table)
        for name in report.left_dense:
            console.print(f"  left dense: {name}", markup=False)
    if report.sparse_storage is not None:
        st = report.sparse_storage
        console.print(
            f"sparse storage: {len(st.tensors)} tensors; file {_num(st.size_before)}B → "
            f"{_num(st.size_after)}B"
        )
    console.print(f"file size: {_num(report.size_before)}B → {_num(report.size_after)}B")
    if report.verdict:
        console.print(verdict_table(report.verdict))
    for label, fid in (
        ("fidelity before repair", report.fidelity_before_repair),
        ("fidelity", report.fidelity),
    ):
        if fid is None:
            continue
        line = f"{label}: worst cosine {fid.worst_cosine:.4f}"
        if fid.worst_top1_agreement is not None:
            line += f", top-1 agreement {fid.worst_top1_agreement:.1%}"
        if fid.accuracy_reference is not None:
            line += f", accuracy {fid.accuracy_reference:.1%} → {fid.accuracy_candidate:.1%}"
        console.print(line + f" ({fid.samples} samples)")
    if report.latency is not None:
        base, new = report.latency.models
        ratio = new.latency.p50_ms / base.latency.p50_ms
        console.print(
            f"latency (batch {base.batch}, median, interleaved): {base.latency.p50_ms:.3f} ms → "
            f"{new.latency.p50_ms:.3f} ms (×{ratio:.2f}, {1 / ratio:.2f}× faster)"
        )
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
