"""``modelcrunch inspect`` on the command line: human tables, --json, --shape, --top, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import models_inspect as mi
import onnx
from models import mlp_proto, save_proto
from typer.testing import CliRunner

from modelcrunch.cli.app import app

runner = CliRunner()


def test_json_is_one_document_with_schema(tmp_path: Path) -> None:
    path = save_proto(mlp_proto(), tmp_path / "mlp.onnx")
    result = runner.invoke(app, ["inspect", str(path), "--json", "--shape", "input=2x16", "--top", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "modelcrunch.inspect/1"
    assert doc["macs_total"] == 2 * 32 * 16 + 2 * 8 * 32 and doc["macs_complete"] is True
    assert len(doc["layers"]) == 2  # JSON lists every layer whatever --top says
    assert doc["memory"]["peak_bytes"] == 640


def test_unknown_macs_shown_as_unknown_with_hint(tmp_path: Path) -> None:
    path = save_proto(mlp_proto(), tmp_path / "mlp.onnx")
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"MACs\s+unknown \(dynamic dims", result.stdout)
    assert "--shape input=1x16" in result.stderr
    doc = json.loads(runner.invoke(app, ["inspect", str(path), "--json"]).stdout)
    assert doc["macs_complete"] is False and doc["layers"][0]["macs"] is None


def test_top_limits_the_table(tmp_path: Path) -> None:
    path = tmp_path / "g.onnx"
    onnx.save(mi.gemm_matmul_proto(), str(path))
    result = runner.invoke(app, ["inspect", str(path), "--top", "1"])
    assert result.exit_code == 0, result.output
    # matmul (2*5*8*32 MACs) outranks gemm (4*32*16)
    assert "top 1 of 2" in result.stdout and "│ matmul" in result.stdout and "│ gemm" not in result.stdout


def test_bad_shape_name_is_a_one_line_error(tmp_path: Path) -> None:
    path = save_proto(mlp_proto(), tmp_path / "mlp.onnx")
    result = runner.invoke(app, ["inspect", str(path), "--shape", "nope=1x16"])
    assert result.exit_code == 2
    assert "unknown input name 'nope'" in result.stderr and "Traceback" not in result.output


def test_json_names_a_multi_output_head_found_without_data(tmp_path: Path) -> None:
    """A GFL head spreads over several outputs: inspect runs one synthetic feed to see their structure
    (scores in [0, 1] per level, 4 x 8 bins beside them) and names every member."""
    from onnx import TensorProto, helper

    levels = {"s0": (1, 64, 3), "b0": (1, 64, 32), "s1": (1, 16, 3), "b1": (1, 16, 32)}
    nodes = [helper.make_node("Sigmoid" if n[0] == "s" else "Identity", [f"{n}_in"], [n]) for n in levels]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(f"{n}_in", TensorProto.FLOAT, list(s)) for n, s in levels.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in levels.items()],
    )
    path = save_proto(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "h.onnx"
    )
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    kinds = json.loads(result.stdout)["output_kinds"]
    assert {name: (spec["kind"], spec["layout"]) for name, spec in kinds.items()} == {
        name: ("detection", "dfl") for name in levels
    }
    assert "box distributions over 8 bins" in kinds["b1"]["reason"]
    text = runner.invoke(app, ["inspect", str(path)])
    assert text.exit_code == 0 and "GFL" in text.stdout
