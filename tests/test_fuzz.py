"""The fast slice of the fuzz campaign (``make fuzz`` runs all of it): one command per fast case,
each in a child process with time and memory limits, every promise checked (see tests/fuzz)."""

from __future__ import annotations

from fuzz.corpus import cases
from fuzz.runner import campaign, plan


def test_fast_fuzz_slice_breaks_no_promise():
    pairs = plan(cases(), fast=True)
    assert len(pairs) >= 30
    runs = campaign(pairs, jobs=2, time_limit=30.0)
    broken = [
        f"{r.case} / {r.command}: {'; '.join(r.violations)} | {r.stderr.strip()[-300:]}"
        for r in runs
        if r.violations
    ]
    assert not broken, "\n".join(broken)


def test_corpus_has_at_least_100_cases_and_covers_every_command():
    corpus = cases()
    assert len(corpus) >= 100
    assert {c for case in corpus for c in case.commands} == {
        "inspect",
        "bench",
        "quantize",
        "prune",
        "factorize",
    }
