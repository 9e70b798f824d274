"""The ``prune`` command: options, one JSON document on stdout, one-line errors."""

from __future__ import annotations

import json

import models_prune as mp
import typer
from models import save_proto
from typer.testing import CliRunner

from modelcrunch.cli.prune import prune_cmd

app = typer.Typer()
app.command("prune")(prune_cmd)
app.command("noop")(lambda: None)  # keeps "prune" a sub-command, as in the real app


def run(*args: str):
    return CliRunner().invoke(app, ["prune", *args])


def test_structured_json(tmp_path):
    src = save_proto(mp.residual_add(), tmp_path / "in.onnx")
    result = run(
        str(src),
        "-o",
        str(tmp_path / "out.onnx"),
        "--structured",
        "--ratio",
        "0.375",
        "--json",
        "--no-measure",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "modelcrunch.prune/1" and doc["mode"] == "structured"
    assert doc["totals"]["groups_pruned"] == 2 and doc["totals"]["macs_ratio"] < 1


def test_sparsity_with_sparse_storage_and_table(tmp_path):
    src = save_proto(mp.residual_add(), tmp_path / "in.onnx")
    result = run(
        str(src), "-o", str(tmp_path / "out.onnx"), "--sparsity", "0.9", "--sparse-storage", "--no-measure"
    )
    # 90 % of a random toy's weights zeroed misses the default target: exit 3, nothing written
    assert result.exit_code == 3, result.output
    text = " ".join(result.stdout.split())
    assert "sparse storage" in text and "not faster" in text and "MISSED" in text
    assert not (tmp_path / "out.onnx").exists()
    result = run(
        str(src), "-o", str(tmp_path / "out.onnx"), "--sparsity", "0.9", "--no-measure", "--keep-best"
    )
    assert result.exit_code == 3 and (tmp_path / "out.onnx").exists()


def test_bad_options_are_one_line_errors(tmp_path):
    src = save_proto(mp.residual_add(), tmp_path / "in.onnx")
    result = run(str(src), "-o", str(tmp_path / "out.onnx"), "--structured", "--sparsity", "0.5")
    assert result.exit_code == 2
    result = run(str(src), "-o", str(tmp_path / "out.onnx"), "--pattern", "4:2")
    assert result.exit_code == 2
    result = run(str(src), "-o", str(src), "--structured")
    assert result.exit_code == 2
