"""QuantizeReport → rich tables (human output of ``modelcrunch quantize``)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from modelcrunch.passes.quantize.report import QuantizeReport
from modelcrunch.render.verdict import add_verdict

MAX_EXCLUDED_ROWS = 25
GROUP_ROWS = 3  # more nodes than this with one reason: one row for them all


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} KB"


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "—" if value is None else format(value, fmt)


def summary_table(report: QuantizeReport) -> Table:
    where = report.output or "nothing written"
    table = Table(title=f"modelcrunch quantize → {where}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("mode", f"{report.mode}  [dim]({report.mode_reason})[/]")
    table.add_row("size", f"{_mb(report.size_before)} → {_mb(report.size_after)}  ({report.size_ratio:.2f}x)")
    fidelity = report.fidelity or {}
    add_verdict(table, report.verdict)
    for output in [] if report.verdict else fidelity.get("outputs", []):
        top1 = output.get("top1_agreement")
        mask = output.get("mask_iou") if _mask_read(report.target, output["name"]) else None
        table.add_row(
            f"fidelity [{output['name']}]",
            f"cosine {_num(output['cosine'])}  rel-L2 {_num(output['rel_l2'])}"
            + (f"  top-1 agreement {top1:.1%}" if top1 is not None else "")
            + (f"  mask IoU {mask:.4f}" if mask is not None else ""),
        )
    if fidelity.get("accuracy_reference") is not None:
        table.add_row(
            "accuracy",
            f"{fidelity['accuracy_reference']:.2%} → {fidelity['accuracy_candidate']:.2%}  "
            f"(drop {fidelity['accuracy_drop'] * 100:.2f} points)",
        )
    if not report.verdict:
        table.add_row(
            "evaluated on", f"{report.evaluation['samples']} samples of {report.evaluation['source']}"
        )
    if report.latency:
        lat = report.latency
        style = "bold red" if lat["ratio"] >= 1.0 else "green"
        table.add_row(
            "latency (p50, batch 1)",
            f"{lat['original_ms']:.3f} ms → {lat['quantized_ms']:.3f} ms  [{style}]{lat['ratio']:.2f}x[/] "
            f"({lat['threads']} threads, interleaved)",
        )
    ops = ", ".join(f"{op} {count:+d}" for op, count in report.op_counts.items()) or "none"
    table.add_row(
        "nodes", f"{len(report.nodes_quantized)} layers quantized, {len(report.nodes_excluded)} kept float"
    )
    table.add_row("ops added", ops)
    if not report.verdict:
        table.add_row("target", _target(report.target))
    for note in report.preprocessing:
        table.add_row("pre-processing", note)
    table.add_row("time", f"{report.seconds:.1f} s")
    return table


def _mask_read(target: dict, name: str) -> bool:
    """Whether the mask-IoU target reads output ``name`` (the default names its maps; a given one: all)."""
    maps = target.get("mask_outputs")
    return bool(target.get("min_mask_iou")) and (maps is None or name in maps)


def _target(target: dict) -> str:
    parts = [f"cosine ≥ {target['min_cosine']}"]
    if target.get("min_top1_agreement"):
        parts.append(f"top-1 agreement ≥ {target['min_top1_agreement']:.1%}")
    if target.get("min_mask_iou"):
        parts.append(f"mask IoU ≥ {target['min_mask_iou']}")
    if target.get("max_channel_error") is not None:
        parts.append(f"channel error ≤ {target['max_channel_error']}")
    if target.get("max_drop") is not None:
        parts.append(f"drop ≤ {target['max_drop']} points")
    return ", ".join(parts) + ": " + ("met" if target["met"] else "[bold red]NOT met[/]")


def candidates_table(report: QuantizeReport) -> Table:
    table = Table(title="candidates (auto)", title_justify="left")
    for column in ("mode", "size", "latency", "task (worst figure)", "accuracy", "target", "layers q/float"):
        table.add_column(column)
    for c in report.candidates:
        mark = "→ " if c.mode == report.mode else "  "
        table.add_row(
            mark + c.mode,
            _mb(c.size_bytes),
            _num(c.latency_ratio, ".2f") + "x",
            _task(c),
            _num(c.accuracy, ".2%"),
            "met" if c.meets_target else "missed",
            f"{c.nodes_quantized}/{c.nodes_excluded}",
        )
    return table


def _task(candidate) -> str:  # noqa: ANN001
    task = candidate.task
    if not task:
        return _num(candidate.worst_cosine)
    return task.split("closest: ", 1)[-1].rstrip(")").split(" (target")[0] if "closest" in task else task[:60]


def excluded_table(report: QuantizeReport) -> Table:
    table = Table(title="kept in float", title_justify="left")
    table.add_column("node")
    table.add_column("op")
    table.add_column("why")
    groups: dict[str, list] = {}  # nodes sharing one reason share a row
    for node in report.nodes_excluded:
        groups.setdefault(node.reason, []).append(node)
    for reason, nodes in list(groups.items())[:MAX_EXCLUDED_ROWS]:
        if len(nodes) <= GROUP_ROWS:
            for node in nodes:
                table.add_row(node.name, node.op_type, reason)
            continue
        ops = Counter(node.op_type for node in nodes)
        table.add_row(
            f"{nodes[0].name}\n... and {len(nodes) - 1} more (see --json)",
            ", ".join(f"{op} ×{count}" for op, count in ops.most_common()),
            reason,
        )
    hidden = len(groups) - MAX_EXCLUDED_ROWS
    if hidden > 0:
        table.add_row(f"... {hidden} more reasons (see --json)", "", "")
    return table


def render_quantize(report: QuantizeReport, console: Console) -> None:
    console.print(summary_table(report))
    if len(report.candidates) > 1:
        console.print(candidates_table(report))
    if report.nodes_excluded:
        console.print(excluded_table(report))


def render_warnings(report: QuantizeReport, console: Console) -> None:
    for warning in report.warnings:
        console.print(f"[bold yellow]WARNING:[/] {warning}", soft_wrap=True)
