"""``modelcrunch inspect MODEL``: size, signature, parameters, MACs and activation memory."""

from __future__ import annotations

from typing import Annotated

import typer

from modelcrunch.analysis.stats import inspect_model
from modelcrunch.cli._common import (
    DebugOpt,
    JsonOpt,
    ModelArg,
    QuietOpt,
    ShapeOpt,
    emit_json,
    handle_errors,
    shapes_option,
    stderr,
    stdout,
)
from modelcrunch.render.inspect import render_inspect
from modelcrunch.runtime.session import load_problem


@handle_errors
def inspect_cmd(
    model: ModelArg,
    shape: ShapeOpt = None,
    batch: Annotated[
        int | None, typer.Option(min=1, help="Set every input's first symbolic dim (e.g. batch) to N.")
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="Heavy layers shown, by MACs (--json lists all).")] = 20,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a model's size, signature, parameters, per-layer MACs and peak activation memory."""
    report = inspect_model(model, shapes_option(shape), batch=batch)
    problem = load_problem(model)
    if problem is not None:
        stderr.print(f"warning: {problem}", markup=False, highlight=False, soft_wrap=True)
    if json_out:
        emit_json(report.to_dict())
        return
    render_inspect(report, stdout, top=top)
    if not report.macs_complete and report.symbolic_dims and not quiet:
        example = next(
            (i for i in report.inputs if any(isinstance(d, str) for d in i.shape)), report.inputs[0]
        )
        dims = "x".join("1" if isinstance(d, str) or d is None else str(d) for d in example.shape)
        stderr.print(
            f"hint: pass --shape {example.name}={dims} (or --batch 1) to count all MACs", highlight=False
        )
