"""Render a FactorizeReport as rich tables (the default human output of ``modelcrunch factorize``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from modelcrunch.passes.factorize.report import FactorizeReport
from modelcrunch.render.verdict import verdict_table


def _num(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _arrow(a: int, b: int) -> str:
    return _num(a) if a == b else f"{_num(a)} → [bold]{_num(b)}[/]"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def render_factorize(report: FactorizeReport, console: Console) -> None:
    calibrated = report.calibration_samples > 0
    title = f"factorize ({report.policy['kind']} {report.policy['value']:g}, conv method {report.method})"
    if report.extra.get("model"):
        title += f": {report.extra['model']} → {report.extra.get('output')}"
    table = Table(title=title)
    columns = ["layer", "op", "method", "weight", "rank", "params", "MACs", "weight err"]
    if calibrated:
        columns += ["out err plain", "out err data"]
    columns.append("note")
    for col in columns:
        table.add_column(
            col,
            justify="right" if col in ("rank", "params", "MACs") or "err" in col else "left",
            overflow="fold",
        )
    for x in report.layers:
        rank = "×".join(map(str, x.rank)) if x.rank else "-"
        row = [
            x.name,
            x.op_type,
            x.method,
            x.shape,
            rank,
            _arrow(x.params_before, x.params_after),
            _arrow(x.macs_before, x.macs_after),
            _pct(x.weight_error),
        ]
        if calibrated:
            row += [_pct(x.output_error_plain), _pct(x.output_error_data_aware)]
        row.append(x.reason if x.status == "factorized" else f"[yellow]skipped:[/] {x.reason}")
        table.add_row(*row)
    t = report.totals()
    total_row = [
        "[bold]total[/]",
        "",
        "",
        "",
        f"{t['layers_factorized']} done",
        _arrow(t["params_before"], t["params_after"]),
        _arrow(t["macs_before"], t["macs_after"]),
        "",
    ]
    if calibrated:
        total_row += ["", ""]
    table.add_row(*total_row, f"{t['layers_skipped']} skipped")
    console.print(table)
    console.print(
        f"model parameters: {_num(t['model_params_before'])} → {_num(t['model_params_after'])}"
        + (
            f" ({t['model_params_after'] / t['model_params_before']:.2f}×)"
            if t["model_params_before"]
            else ""
        )
        + (f"; data-aware over {report.calibration_samples} calibration samples" if calibrated else "")
    )
    for note in report.notes:
        console.print(f"note: {note}")
    if report.extra.get("verdict"):
        console.print(verdict_table(report.extra["verdict"]))
    if report.fidelity:
        for out in report.fidelity.get("outputs", []):
            console.print(
                f"fidelity ({out['name']}): cosine {out.get('cosine', 0):.5f}, "
                f"rel L2 {out.get('rel_l2', 0):.4f}"
                + (
                    f", top-1 agreement {out['top1_agreement']:.3f}"
                    if out.get("top1_agreement") is not None
                    else ""
                )
            )
        ref, cand = report.fidelity.get("accuracy_reference"), report.fidelity.get("accuracy_candidate")
        if ref is not None and cand is not None:
            console.print(f"accuracy: {ref:.4f} → {cand:.4f}")
    if report.benchmark:
        models = report.benchmark["models"]
        ratio = models[-1]["ratios"]["latency"]
        base, cand = models[0]["latency_ms"]["p50_ms"], models[-1]["latency_ms"]["p50_ms"]
        console.print(f"latency p50: {base:.3f} ms → {cand:.3f} ms ({ratio:.2f}× of the original)")
