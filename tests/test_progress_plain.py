"""Plain progress lines with an ETA when stderr is not a terminal."""

from __future__ import annotations

import io

from modelcrunch.cli._progress import PlainProgress


def test_lines_are_throttled_and_carry_an_eta():
    now = [0.0]
    out = io.StringIO()
    progress = PlainProgress(out, interval_s=10, clock=lambda: now[0])
    progress("repairing layers", 0, 50)
    now[0] = 5
    progress("repairing layers", 5, 50)  # before the interval: nothing
    assert out.getvalue() == ""
    now[0] = 20
    progress("repairing layers", 20, 50)
    assert out.getvalue() == "[20s] repairing layers: 20/50 (40%), ETA 30s\n"
    now[0] = 25
    progress("repairing layers", 25, 50)
    now[0] = 95
    progress("benchmark", 3, 3)
    assert out.getvalue().splitlines()[-1] == "[1m35s] benchmark: 3/3 (100%)"


def test_a_short_run_prints_nothing():
    out = io.StringIO()
    progress = PlainProgress(out, interval_s=10)
    for i in range(100):
        progress("calibrating", i, 100)
    assert out.getvalue() == ""


def test_a_phase_begun_again_restarts_its_eta():
    """A second candidate's "sensitivity" starts at 1 again: its ETA reads its own rate, not the first's."""
    now = [0.0]
    out = io.StringIO()
    progress = PlainProgress(out, interval_s=1, clock=lambda: now[0])
    progress("sensitivity", 0, 40)
    now[0] = 40
    progress("sensitivity", 40, 40)
    now[0] = 150  # a long silent phase in between
    progress("sensitivity", 1, 44)
    now[0] = 160
    progress("sensitivity", 11, 44)
    assert out.getvalue().splitlines()[-1] == "[2m40s] sensitivity: 11/44 (25%), ETA 33s"
