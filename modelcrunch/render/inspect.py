"""Render an InspectReport as rich tables (the default human output of ``modelcrunch inspect``)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelcrunch.analysis.stats import InspectReport, TensorInfo

UNKNOWN = "unknown"


def _num(n: int | None) -> str:
    if n is None:
        return UNKNOWN
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _bytes(n: int | None) -> str:
    if n is None:
        return UNKNOWN
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def _pct(x: float | None) -> str:
    return UNKNOWN if x is None else f"{100 * x:.1f}%"


def _shape(dims: list[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _signature(tensors: list[TensorInfo]) -> str:
    return escape(", ".join(f"{t.name}: {t.dtype}{_shape(t.shape)}" for t in tensors))


def render_inspect(report: InspectReport, console: Console, *, top: int = 20) -> None:
    opsets = ", ".join(f"{d} {v}" for d, v in report.opsets.items())
    console.print(f"[bold]{escape(report.model)}[/]  {_bytes(report.file_size_bytes)}")
    console.print(f"IR {report.ir_version}  opsets: {opsets}  producer: {escape(report.producer or '-')}")
    console.print(f"inputs:  {_signature(report.inputs)}")
    console.print(f"outputs: {_signature(report.outputs)}")
    for name, spec in report.output_kinds.items():
        console.print(f"  {name}: {spec['kind']} ({spec['reason']})", markup=False)
    if report.symbolic_dims:
        console.print(escape(f"symbolic dims: {', '.join(report.symbolic_dims)}"))

    by_dtype = ", ".join(f"{d} {_bytes(b)}" for d, b in report.weight_bytes.items()) or "none"
    unknown = sum(1 for x in report.layers if x.macs is None)
    if report.macs_complete:
        macs, flops = _num(report.macs_total), _num(report.flops_total)
    elif unknown == len(report.layers):
        macs = flops = f"{UNKNOWN} (dynamic dims; see the hint below)"
    else:
        partial = f" (partial: {unknown} of {len(report.layers)} layers unknown)"
        macs = f"≥ {_num(report.macs_total)}{partial}"
        flops = f"≥ {_num(report.flops_total)} (partial)"
    mem = report.memory
    totals = Table(show_header=False, box=None, padding=(0, 2))
    for key, value in (
        ("parameters", _num(report.params)),
        ("weights", f"{_bytes(sum(report.weight_bytes.values()))} ({by_dtype})"),
        ("weight sparsity", _pct(report.sparsity)),
        ("nodes", str(report.node_count)),
        ("MACs", macs),
        ("FLOPs (2*MACs)", flops),
        (
            "peak activations",
            f"{_bytes(mem.peak_bytes)} (inputs {_bytes(mem.inputs_bytes)}, "
            f"outputs {_bytes(mem.outputs_bytes)})",
        ),
    ):
        totals.add_row(key, value)
    console.print(totals)
    console.print(escape("ops: " + ", ".join(f"{op} {n}" for op, n in report.op_histogram.items())))

    ranked = sorted(report.layers, key=lambda x: -1 if x.macs is None else x.macs, reverse=True)
    shown = ranked[:top]
    title = (
        f"heavy layers (top {len(shown)} of {len(ranked)} by MACs)" if len(ranked) > top else "heavy layers"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("layer", overflow="fold")
    table.add_column("op")
    table.add_column("weight shape", no_wrap=True)
    for col in ("params", "MACs", "sparsity"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("dtype", no_wrap=True)
    for x in shown:
        table.add_row(
            escape(x.name),
            escape(x.op),
            escape(_shape(x.weight_shape)) if x.weight_shape is not None else "-",
            _num(x.params),
            _num(x.macs),
            _pct(x.sparsity) if x.weight else "-",
            x.weight_dtype or "-",
        )
    console.print(table)
    if report.shape_inference_error:
        console.print(
            "[yellow]note:[/] shape inference failed, shapes are partial: "
            + escape(report.shape_inference_error)
        )
