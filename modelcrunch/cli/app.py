"""The ``modelcrunch`` command line: one thin module per command, registered here."""

from __future__ import annotations

import logging

import typer

from modelcrunch import __version__

app = typer.Typer(
    name="modelcrunch",
    help="Make ONNX models smaller and faster by rewriting the graph, and prove it by measurement.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelcrunch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """modelcrunch: inspect, prune, quantize, factorize and bench ONNX models."""


# ---- commands: one thin module each -------------------------------------------------------
from modelcrunch.cli import bench, distill, factorize, inspect, prune, quantize  # noqa: E402

app.command("inspect")(inspect.inspect_cmd)
app.command("bench")(bench.bench_cmd)
app.command("quantize")(quantize.quantize_cmd)
app.command("prune")(prune.prune_cmd)
app.command("factorize")(factorize.factorize_cmd)
app.command("distill")(distill.distill_cmd)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    app()
