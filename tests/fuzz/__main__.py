"""``python -m fuzz [--fast] [-j N] [-k SUBSTRING]`` (from tests/): the whole campaign, or a slice."""

from __future__ import annotations

import argparse
import sys

from fuzz.corpus import cases
from fuzz.runner import campaign, plan, summary


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz")
    parser.add_argument("--fast", action="store_true", help="only the fast slice")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = parser.parse_args()
    chosen = [c for c in cases() if args.k in c.name]

    def report(run) -> None:
        if run.violations or args.verbose:
            status = "; ".join(run.violations) or "ok"
            print(f"{run.case} / {run.command}: exit {run.code}, {run.seconds:.1f} s: {status}", flush=True)
            if run.violations:
                print("    $ modelcrunch " + " ".join(run.argv[:12]), flush=True)
                for line in (run.stderr.strip().splitlines() or ["(no stderr)"])[-4:]:
                    print("    | " + line[:300], flush=True)

    runs = campaign(plan(chosen, fast=args.fast), jobs=args.jobs, on_run=report)
    print(summary(runs))
    return 1 if any(r.violations for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
