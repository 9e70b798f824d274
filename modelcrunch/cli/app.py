"""The ``modelcrunch`` command line: one thin module per command, registered here."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from modelcrunch import __version__
from modelcrunch.errors import EXIT_BAD_INPUT

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
    """modelcrunch: inspect, prune, quantize, factorize, distill, optimize and bench ONNX models."""


# ---- commands: one thin module each -------------------------------------------------------
from modelcrunch.cli import bench, distill, factorize, inspect, optimize, prune, quantize  # noqa: E402

app.command("inspect")(inspect.inspect_cmd)
app.command("bench")(bench.bench_cmd)
app.command("quantize")(quantize.quantize_cmd)
app.command("prune")(prune.prune_cmd)
app.command("factorize")(factorize.factorize_cmd)
app.command("optimize")(optimize.optimize_cmd)
app.command("distill")(distill.distill_cmd)


def main(argv: list[str] | None = None) -> None:
    """The console entry point: every usage error is one line (exit 2), Ctrl-C is "interrupted"."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.captureWarnings(True)  # numpy's RuntimeWarnings and the like: through the filter below
    for handler in logging.getLogger().handlers:
        handler.addFilter(_own_warnings)
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # its errors come back as exceptions: one line
    with _scratch():
        _run(argv)


@contextmanager
def _scratch() -> Iterator[None]:
    """Every temporary file of the run (ours, ONNX Runtime's tools') lives in one folder that goes
    when the run ends, however it ends: a Ctrl-C that lands inside a cleanup leaves nothing behind."""
    previous = tempfile.tempdir
    folder = tempfile.mkdtemp(prefix="modelcrunch-run-")
    tempfile.tempdir = folder
    try:
        yield
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def _run(argv: list[str] | None) -> None:
    try:
        code = app(args=argv, standalone_mode=False)
    except UsageError as exc:
        if isinstance(exc, NoArgsIsHelpError) or exc.ctx is None:
            exc.show()
            raise SystemExit(EXIT_BAD_INPUT) from None
        command = exc.ctx.command_path
        raise _one_line(f"{exc.format_message()} (see '{command} --help')", EXIT_BAD_INPUT) from None
    except (typer.Abort, KeyboardInterrupt):
        raise _one_line("interrupted", 130) from None
    if code == 130:  # typer turns a KeyboardInterrupt into Exit(130), silently
        raise _one_line("interrupted", 130)
    raise SystemExit(code if isinstance(code, int) else 0)


def _own_warnings(record: logging.LogRecord) -> bool:
    """modelcrunch's warnings reach stderr; the libraries' (onnx-ir, ONNX Runtime's tools) only as
    errors: they speak of their own internals, and an error is one line."""
    return record.name.startswith("modelcrunch") or record.levelno >= logging.ERROR


def _one_line(message: str, code: int) -> SystemExit:
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    return SystemExit(code)
