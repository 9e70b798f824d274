"""The CLI's guard: option ranges by name, one line for escaping errors, NaN-safe JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelcrunch.cli import _common
from modelcrunch.cli._guard import OptionError, check_options, describe_unexpected


@pytest.mark.parametrize(
    "options",
    [
        {"duration": float("nan")},
        {"bench_seconds": float("inf")},
        {"threads": 100000},
        {"seed": -1},
        {"min_cosine": -1.0},
        {"min_keep_ratio": 2.0},
        {"ratio": 1.0},
        {"top": 10**20},
    ],
)
def test_out_of_range_options_are_refused(options):
    with pytest.raises(OptionError, match="^--"):
        check_options(options)


def test_in_range_options_pass():
    check_options(
        {"threads": 2, "duration": 1.5, "seed": 0, "min_cosine": 0.99, "quiet": True, "shape": None}
    )


def test_unexpected_errors_are_classified():
    class Fail(Exception):
        __module__ = "onnxruntime.capi.onnxruntime_pybind11_state"

    assert describe_unexpected(Fail("bad\nmodel"))[1] == 2
    assert describe_unexpected(np.linalg.LinAlgError("SVD did not converge"))[1] == 2
    message, code = describe_unexpected(KeyError("x"))
    assert code == 1 and "please report" in message and "\n" not in message


def test_json_writer_turns_nan_into_null(capsys):
    _common.emit_json({"a": float("nan"), "b": [np.float32(np.inf), 1.0], "c": np.array([np.nan, 2.0])})
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": [None, 1.0], "c": [None, 2.0]}


def test_a_run_leaves_no_temporary_file_however_it_ends(tmp_path, monkeypatch):
    import tempfile
    from pathlib import Path

    from modelcrunch.cli import app as app_module

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def interrupted(**_kwargs):
        folder = tempfile.mkdtemp(prefix="modelcrunch-capture-")  # a cleanup Ctrl-C cut short
        (Path(folder) / "capture.onnx").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(app_module, "app", interrupted)
    with pytest.raises(SystemExit) as exit_:
        app_module.main(["inspect", "m.onnx"])
    assert exit_.value.code == 130
    assert list(tmp_path.iterdir()) == [] and tempfile.tempdir == str(tmp_path)
