"""Timing of ``modelcrunch inspect`` on a synthetic ~50 MB model (run by ``make bench``).

Target (issue): the CLI run on a 50 MB model takes well under 1 s, Python start-up excluded.
The model (12 MatMul 1024x1024 float32 layers, ~16% exact zeros, symbolic batch) is built in a
temporary folder. Measured, interleaved, medians of RUNS:

* ``inspect_model`` in-process (load, shape inference, weight sparsity over all 48 MiB, MACs, memory);
* the CLI in-process (typer's CliRunner: parsing + library + rendering);
* ``python -m modelcrunch inspect`` as a subprocess, and ``python -c "import modelcrunch.cli.app"``
  (start-up and imports); their difference is the CLI run without start-up;
* a fresh process timing ``app()`` alone (after the imports): the first, cold run of the command,
  including the modules typer and the command import lazily.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from modelcrunch.analysis.stats import inspect_model
from modelcrunch.cli.app import app

RUNS = 5
LAYERS, WIDTH = 12, 1024


def build(path: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "input"
    for i in range(LAYERS):
        w = rng.standard_normal((WIDTH, WIDTH)).astype(np.float32)
        w[w < -1] = 0.0
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        out = "output" if i == LAYERS - 1 else f"r{i}"
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"], name=f"mm{i}"),
            helper.make_node("Relu", [f"h{i}"], [out], name=f"relu{i}"),
        ]
        x = out
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", WIDTH])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


#: A fresh process that times the command alone (after ``import modelcrunch.cli.app``).
_FRESH = """
import sys, time
from modelcrunch.cli.app import app
sys.argv = ["modelcrunch", *sys.argv[1:]]
start = time.perf_counter()
try:
    app()
except SystemExit:
    pass
sys.stderr.write(f"ELAPSED {time.perf_counter() - start}\\n")
"""


def _fresh_command(args: list[str]) -> float:
    done = subprocess.run([sys.executable, "-c", _FRESH, *args], check=True, capture_output=True, text=True)
    return float(done.stderr.rsplit("ELAPSED ", 1)[1])


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp) / "big50.onnx")
        args = ["inspect", str(path), "--shape", f"input=1x{WIDTH}"]
        cases = {
            "inspect_model (library)": lambda: inspect_model(path, {"input": [1, WIDTH]}),
            "CLI in-process": lambda: runner.invoke(app, args),
            "python -m modelcrunch inspect": lambda: subprocess.run(
                [sys.executable, "-m", "modelcrunch", *args], check=True, capture_output=True
            ),
            "python start-up + imports": lambda: subprocess.run(
                [sys.executable, "-c", "import modelcrunch.cli.app"], check=True, capture_output=True
            ),
        }
        for fn in cases.values():  # warm the page cache and lazy imports
            fn()
        times: dict[str, list[float]] = {name: [] for name in cases}
        fresh = "fresh process, command only"
        times[fresh] = []
        for _ in range(RUNS):  # interleaved
            for name, fn in cases.items():
                times[name].append(_timed(fn))
            times[fresh].append(_fresh_command(args))
        size_mb = path.stat().st_size / 1e6
    medians = {name: statistics.median(t) for name, t in times.items()}
    table = Table(title=f"modelcrunch inspect on a {size_mb:.1f} MB model (median of {RUNS})")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    for name, value in medians.items():
        table.add_row(name, f"{value:.3f}")
    cli = medians["python -m modelcrunch inspect"] - medians["python start-up + imports"]
    table.add_row("[bold]CLI run without start-up[/]", f"[bold]{cli:.3f}[/]")
    Console().print(table)
    print(f"target < 1 s (CLI in-process): {'PASS' if medians['CLI in-process'] < 1.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
