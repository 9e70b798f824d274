"""The quality judge's verdict (``runtime/judge.Verdict.to_dict()``) as table rows, for every command."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table


def _value(figure: dict) -> str:
    value = figure["value"]
    return "n/a" if value is None else f"{value:.4f}"


def _figure(figure: dict) -> str:
    text = f"{figure['figure']} {_value(figure)}"
    details = figure.get("details") or {}
    if figure["figure"] == "cosine" and details.get("grouped_by_scale"):
        text += f" (worst of {details['groups']} channel groups by scale)"
    if figure["figure"] == "cosine" and details.get("worst_channel_rel_error"):
        text += (
            f", worst channel {details['worst_channel']} rel. error {details['worst_channel_rel_error']:.3f}"
        )
    if figure["figure"] == "detection F1":
        text += f" ({details.get('matched')} of {details.get('reference_detections')} detections matched)"
    if figure["target"] is None:
        return f"[dim]{escape(text)}[/]"
    op = "≤" if figure["figure"].startswith("accuracy drop") else "≥"
    mark = "[green]ok[/]" if figure["passed"] else "[bold red]MISSED[/]"
    return f"{escape(text)} (target {op} {figure['target']:g}) {mark}"


def verdict_rows(verdict: dict | None) -> list[tuple[str, str]]:
    """(label, text) rows: each output's kind (and why), its figures against their targets."""
    if not verdict:
        return []
    rows = []
    outputs = verdict.get("outputs", {})
    by_output: dict[str, list[dict]] = {}
    for figure in verdict["figures"]:
        by_output.setdefault(figure["output"], []).append(figure)
    for name, figures in by_output.items():
        spec = outputs.get(name)
        label = f"{name} ({spec['kind']})" if spec else ("task" if name == "*" else name)
        rows.append((label, "\n".join(_figure(f) for f in figures)))
        if spec:
            rows.append(("", f"[dim]kind: {escape(spec['reason'])}[/]"))
    if all(f["target"] is None for f in verdict["figures"]):
        rows.append(("quality target", f"none gated; judged on {escape(verdict.get('data') or '')}"))
        return rows
    verdict_text = "[green]met[/]" if verdict["passed"] else "[bold red]MISSED[/]"
    rows.append(("quality target", f"{verdict_text} on {escape(verdict.get('data') or '')}"))
    return rows


def add_verdict(table: Table, verdict: dict | None) -> None:
    for label, text in verdict_rows(verdict):
        table.add_row(label, text)


def verdict_table(verdict: dict | None, title: str = "quality") -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    add_verdict(table, verdict)
    return table


def miss_line(verdict: dict | None, notes: tuple[str, ...] | list[str] = ()) -> str:
    """One line saying why a run failed: the missed figures, else the speed note."""
    missed = [f for f in (verdict or {}).get("figures", []) if f["target"] is not None and not f["passed"]]
    if missed:
        parts = [f"{f['output']}: {f['figure']} {f['value'] if f['value'] is None else round(f['value'], 4)} "
                 f"(target {f['target']:g})" for f in missed]  # fmt: skip
        return "quality target missed: " + "; ".join(parts)
    slow = speed_notes(notes)
    return slow[0] if slow else "quality target missed"


def speed_notes(notes: tuple[str, ...] | list[str]) -> list[str]:
    """The notes of a failed speed check (``passes/guard.speed_verdict``'s messages)."""
    return [n for n in notes if "SLOWER" in n or "--require-faster" in n]
