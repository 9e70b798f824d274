"""``modelcrunch optimize`` / ``modelcrunch.optimize``: a tiny-budget search on the sample CNN, the
store and its resume, an interrupted run, constraint exit codes, the report, two workers, seeds."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import optuna
import pytest
from typer.testing import CliRunner

import modelcrunch
from modelcrunch.cli.app import app
from modelcrunch.search import api
from modelcrunch.search.space import Settings

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "sample_models" / "cnn.onnx"
CALIB = ROOT / "sample_models" / "cnn_digits_calib.npz"
FAST = {"bench_seconds": 0.2, "time_budget_s": 300}


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, modelcrunch.search.frontier.Frontier]:
    out = tmp_path_factory.mktemp("optimize") / "out"
    frontier = modelcrunch.optimize(CNN, CALIB, out, objectives=("latency", "size"), max_trials=4, **FAST)
    return out, frontier


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{out / 'study.db'}"
    (summary,) = optuna.study.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)


def test_package_import_does_not_import_optuna():
    code = (
        "import sys, modelcrunch; assert 'optuna' not in sys.modules; print(callable(modelcrunch.optimize))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_search_writes_a_real_front(searched):
    out, frontier = searched
    assert len(frontier.points) == 4  # the original and three precisions (the sensitivity order)
    assert frontier.measured_now == 4
    assert frontier.best is not None and frontier.best.figures.passed
    for name in ("pareto.json", "candidates.csv", "report.html", "best.onnx", "study.db"):
        assert (out / name).is_file(), name
    ort.InferenceSession(str(out / "best.onnx"), providers=["CPUExecutionProvider"])
    doc = json.loads((out / "pareto.json").read_text())
    assert doc["best"]["trial"] == frontier.best.number
    assert {p["status"] for p in doc["points"]} <= {"frontier", "dominated", "infeasible"}
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    assert len(rows) == len(doc["points"])  # dominated ones included
    for p in frontier.points:  # the front's models stay (verified when written), the others go
        if p.on_front and p.settings:
            assert p.model and Path(p.model).is_file()
        elif p.settings:
            assert p.model is None
    assert not list(out.rglob("*.tmp"))
    assert sum(p.phase.endswith("+decided") for p in frontier.points) >= 2  # re-timed together at the end


def test_resume_measures_nothing_already_stored(searched, tmp_path):
    out, first = searched
    again = tmp_path / "again"
    shutil.copytree(out, again)
    frontier = modelcrunch.optimize(CNN, CALIB, again, objectives=("latency", "size"), max_trials=1, **FAST)
    assert frontier.measured_now == 1
    assert len(frontier.points) == len(first.points) + 1
    old = {p.key: p.figures for p in first.points}
    for p in frontier.points:  # stored figures read back, not re-measured (latency: re-timed at the end)
        if p.key in old:
            assert (p.figures.quality, p.figures.size_bytes, p.figures.verdict) == (
                old[p.key].quality,
                old[p.key].size_bytes,
                old[p.key].verdict,
            )


def test_interrupt_leaves_a_resumable_store_and_no_partial_model(tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = {"n": 0}
    real = api._Context.work

    def flaky(self, settings):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, settings)

    monkeypatch.setattr(api._Context, "work", flaky)
    with pytest.raises(KeyboardInterrupt):
        modelcrunch.optimize(CNN, CALIB, out, knobs=("precision",), max_trials=3, **FAST)
    states = [t.state for t in _trials(out)]
    assert optuna.trial.TrialState.RUNNING not in states
    assert not list((out / "models").glob("*")) if (out / "models").exists() else True
    assert not (out / "best.onnx").exists()
    monkeypatch.setattr(api._Context, "work", real)
    frontier = modelcrunch.optimize(CNN, CALIB, out, knobs=("precision",), max_trials=1, **FAST)
    assert frontier.measured_now == 1 and len(frontier.points) == 2


def _cli(*args: str):
    return CliRunner().invoke(app, ["optimize", str(CNN), "--calibration", str(CALIB), *args])


def test_cli_constraint_nobody_meets_exits_3_with_nearest(searched, tmp_path):
    out, _ = searched
    again = tmp_path / "again"
    shutil.copytree(out, again)
    result = _cli("-o", str(again), "--objective", "latency", "--objective", "size", "--trials", "0",
                  "--max-size", "0.001", "--bench-seconds", "0.2")  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "nearest" in result.output and "#" in result.output
    doc = json.loads((again / "pareto.json").read_text())
    assert doc["best"] is None and doc["nearest"]


def test_cli_json_and_bad_input(searched, tmp_path):
    out, _ = searched
    again = tmp_path / "again"
    shutil.copytree(out, again)
    result = _cli(
        "-o", str(again), "--objective", "latency", "--objective", "size", "--trials", "0", "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["search_space"]["size"] > 1000 and doc["best"] is not None
    assert _cli("-o", str(tmp_path / "x"), "--objective", "speed").exit_code == 2
    assert _cli("-o", str(tmp_path / "x"), "--time-budget", "soon").exit_code == 2
    assert _cli("-o", str(tmp_path / "x"), "--knobs", "magic").exit_code == 2


def test_report_html_contents(searched):
    out, frontier = searched
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    for axis in ("latency", "size", "ram"):
        assert f'data-axis="{axis}"' in page
    assert 'class="pt frontier"' in page and 'class="pt original"' in page
    assert 'class="best"' in page and 'id="decisions"' in page
    assert frontier.best.summary in page
    assert "dominated" in page and "infeasible" in page  # the legend tells them apart


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_a_headless_browser(searched, tmp_path):
    out, _ = searched
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
         f"--screenshot={shot}", (out / "report.html").as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_two_workers_never_evaluate_the_same_trial_twice(tmp_path):
    out = tmp_path / "out"
    frontier = modelcrunch.optimize(
        CNN, CALIB, out, knobs=("precision", "float"), sensitivity=False, greedy=False, workers=2,
        max_trials=5, **FAST,
    )  # fmt: skip
    trials = _trials(out)
    measured = [t for t in trials if "figures" in t.user_attrs and "cached_from" not in t.user_attrs]
    keys = [t.user_attrs["key"] for t in measured]
    assert len(keys) == len(set(keys))  # no settings measured twice
    assert len({t.user_attrs["worker"] for t in measured}) == 2  # both processes measured
    assert len(frontier.points) == len(measured) >= 4


def test_seed_reproduces_the_candidates(tmp_path):
    def keys(out: Path) -> list[str]:
        modelcrunch.optimize(
            CNN, CALIB, out, knobs=("precision", "float"), sensitivity=False, greedy=False, max_trials=3,
            seed=5, **FAST,
        )  # fmt: skip
        return [t.user_attrs["key"] for t in sorted(_trials(out), key=lambda t: t.number)]

    assert keys(tmp_path / "a") == keys(tmp_path / "b")


def test_settings_key_ignores_neutral_knobs():
    a = Settings({"precision": "float", "float:/x": True, "prune:/c": 0.0})
    b = Settings({"precision": "float"})
    assert a.key == b.key and a.changed() == {}
    assert re.fullmatch(r"[0-9a-f]{12}", a.key)


def test_live_view_and_summary_render(searched):
    import io

    from rich.console import Console

    from modelcrunch.render import optimize as render

    _, frontier = searched
    console = Console(file=io.StringIO(), width=140)
    console.print(render.live_view(frontier, "sampler"))
    console.print(render.summary(frontier))
    text = console.file.getvalue()
    assert "Pareto front" in text and "budget left" in text and "best.onnx" in text


def test_composites_take_each_layer_at_its_strongest_safe_strength():
    from modelcrunch.search.measure import Figures
    from modelcrunch.search.space import Knob, SearchSpace
    from modelcrunch.search.store import Record
    from modelcrunch.search.strategy import composites

    space = SearchSpace(
        (
            Knob("prune:a", (0.0, 0.25, 0.5), ""),
            Knob("rank:b", (1.0, 0.95), ""),
            Knob("precision", ("float", "static"), ""),
        ),
        {},
    )

    def rec(n: int, values: dict, quality: float, latency: float, passed: bool = True) -> Record:
        figures = Figures(quality, passed, 0.0, latency, 1.0, 100, None, {})
        return Record(n, "", space.neutral().moved(values), figures, "sensitivity", None)

    records = [
        rec(0, {}, 1.0, 1.0),
        rec(1, {"precision": "static"}, 0.9999, 0.5),
        rec(2, {"prune:a": 0.25}, 0.9999, 0.9),
        rec(3, {"prune:a": 0.5}, 0.99, 0.8),
        rec(4, {"rank:b": 0.95}, 0.999, 1.1),  # slower alone: never taken
    ]
    (first, *_), all_ = composites(space, records, "latency")[:1], composites(space, records, "latency")
    assert first.changed() == {"precision": "static", "prune:a": 0.25}
    assert all(c.values["rank:b"] == 1.0 for c in all_)
