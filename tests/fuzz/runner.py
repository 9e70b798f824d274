"""Run every command on every fuzz case in a child process and check every promise.

Each run gets a fresh folder with the case's files, an empty working directory and an empty
``TMPDIR``; the child (forked from a clean fork server that has imported modelcrunch once) has an
address-space limit (``RLIMIT_AS``) and a wall-clock limit. A run breaks a promise when:

* it outlives the time limit (a hang) or dies from a signal (e.g. the memory limit);
* its exit code is not 0/1/2/3, or is not 0 for a valid case (3 for a missed target or a slower result);
* on failure stderr is not exactly one line starting with ``error:`` (a missed gate, exit 3, may
  print its report's ``WARNING:`` lines first), or says "internal error";
* "Traceback" appears anywhere;
* with ``--json`` and success or a missed gate, stdout is not one JSON document;
* an input file changed (hash, type or link target) or vanished;
* on failure anything was created or changed in the case folder (an existing ``-o`` included),
  on success anything other than the output was;
* anything is left in the working directory or ``TMPDIR``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.corpus import COMMANDS, Case

TIME_LIMIT_S = 60.0
MEMORY_LIMIT_BYTES = 6 * 2**30


@dataclass
class Run:
    case: str
    command: str
    argv: list[str]
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)


def argv_for(case: Case, command: str, d: Path) -> list[str]:
    model, out = str(d / case.model), str(d / case.output)
    data = ["--inputs" if command == "bench" else "--calibration", str(d / case.data)] if case.data else []
    base = {
        "inspect": ["inspect", model, "--json"],
        "bench": ["bench", model, "--json", "--runs", "3", "--warmup", "1", *data],
        "quantize": [
            "quantize", model, "-o", out, "--json", "--max-samples", "8", "--eval-samples", "8",
            *(["--bench-seconds", "0.2"] if case.measure else ["--no-bench"]), *data,
        ],
        "prune": ["prune", model, "-o", out, "--structured", "--json",
                  *([] if case.measure else ["--no-measure"]), *data],
        "factorize": ["factorize", model, "-o", out, "--json",
                      *([] if case.measure else ["--no-measure"]), *data],
    }[command]  # fmt: skip
    return base + case.extra.get("*", []) + case.extra.get(command, [])


def _child(argv: list[str], cwd: str, tmp: str, out: str, err: str, memory: int) -> None:
    import atexit
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    os.chdir(cwd)
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = tmp
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = ["modelcrunch", *argv]
    code = 0
    try:
        from modelcrunch.cli.app import main

        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - what escapes the CLI is printed like Python would
        import traceback

        traceback.print_exc()
        code = 99
    atexit._run_exitfuncs()  # what a real process does on the way out (finalizers, temp folders)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _snapshot(root: Path) -> dict[str, tuple]:
    """relative path -> (kind, content hash or link target) for everything under ``root``."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISDIR(mode):
                found[rel] = ("dir", "")
            else:
                found[rel] = ("other", stat.S_IFMT(mode))
    return found


def _allowed_new(case: Case) -> set[str]:
    out = Path(case.output)
    allowed = {str(out), str(out) + ".data"}
    allowed |= {str(p) for p in out.parents if str(p) != "."}
    return allowed


def check(run: Run, case: Case, before: dict, after: dict, cwd: Path, tmp: Path) -> None:
    v = run.violations
    if run.code is None:
        return
    if run.code not in (0, 1, 2, 3) and not (run.code == 130 and case.interrupt_after is not None):
        v.append(f"exit code {run.code}")
    # a valid case must finish its work: exit 0, or exit 3 when the finished measurement misses the
    # quality target (random weights cannot keep a task through a 30 % prune) or finds the result
    # slower than the original (a factorized 64-wide MLP: one more MatMul); the verdict is the answer
    verdicts = ("quality target missed", "SLOWER than the original")
    missed = run.code == 3 and any(v in run.stderr for v in verdicts)
    if case.expect_ok and run.code != 0 and not missed:
        v.append(f"valid case failed with exit {run.code}")
    if "Traceback" in run.stdout or "Traceback" in run.stderr:
        v.append("traceback")
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    if run.code == 3:
        # a missed gate is a finished measurement: its report (stdout) and the report's warnings
        # (stderr) come first, then the one error line
        lines = [line for line in lines if not line.startswith("WARNING:")]
    if run.code != 0:
        if len(lines) != 1:
            v.append(f"{len(lines)} stderr lines on failure")
        elif not lines[0].startswith("error:"):
            v.append("the stderr line does not start with 'error:'")
    if "internal error" in run.stderr:
        v.append("internal error")
    if run.code in (0, 3) and "--json" in run.argv:
        try:
            json.loads(run.stdout)
        except ValueError as exc:
            v.append(f"--json stdout is not one JSON document ({exc})")
    allowed = _allowed_new(case) if run.code == 0 else set()
    inputs = {k for k in before if k not in allowed}
    for rel in sorted(inputs):
        if rel not in after:
            v.append(f"{rel} vanished")
        elif after[rel] != before[rel]:
            v.append(f"{rel} changed")
    for rel in sorted(set(after) - set(before) - allowed):
        v.append(f"{rel} left behind")
    for where, folder in (("working directory", cwd), ("TMPDIR", tmp)):
        left = sorted(p.name for p in folder.iterdir())
        if left:
            v.append(f"left in the {where}: {', '.join(left[:3])}")


def run_one(
    case: Case,
    command: str,
    scratch: Path,
    *,
    time_limit: float = TIME_LIMIT_S,
    memory: int = MEMORY_LIMIT_BYTES,
) -> Run:
    root = Path(tempfile.mkdtemp(prefix=f"{case.name[:40]}-{command}-", dir=scratch))
    d, cwd, tmp = root / "case", root / "cwd", root / "tmp"
    for folder in (d, cwd, tmp):
        folder.mkdir()
    case.build(d)
    before = _snapshot(d)
    run = Run(case.name, command, argv_for(case, command, d))
    out, err = root / "stdout", root / "stderr"
    ctx = multiprocessing.get_context("forkserver")
    process = ctx.Process(
        target=_child, args=(run.argv, str(cwd), str(tmp), str(out), str(err), memory), daemon=True
    )
    started = time.perf_counter()
    time_limit = case.time_limit or time_limit
    process.start()
    if case.interrupt_after is not None:
        process.join(case.interrupt_after)
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGINT)
    process.join(time_limit)
    run.seconds = time.perf_counter() - started
    if process.is_alive():
        process.kill()
        process.join()
        run.violations.append(f"hang (killed after {time_limit:.0f} s)")
    elif process.exitcode is not None and process.exitcode < 0:
        name = signal.Signals(-process.exitcode).name
        run.violations.append(f"killed by {name} (memory limit {memory / 2**30:.0f} GiB?)")
    else:
        run.code = process.exitcode
    run.stdout = out.read_text(errors="replace") if out.exists() else ""
    run.stderr = err.read_text(errors="replace") if err.exists() else ""
    check(run, case, before, _snapshot(d), cwd, tmp)
    shutil.rmtree(root, ignore_errors=True)
    return run


def plan(cases: list[Case], *, fast: bool = False) -> list[tuple[Case, str]]:
    """(case, command) pairs: every command a case names, or, for the fast slice, one command per
    fast case (rotating through the commands so each is exercised)."""
    if not fast:
        return [(case, command) for case in cases for command in case.commands]
    pairs = []
    for i, case in enumerate(c for c in cases if c.fast):
        pairs.append((case, case.commands[i % len(case.commands)]))
    return pairs


def prepare() -> None:
    """Start the fork server with modelcrunch imported (children start in milliseconds)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["fuzz.runner", "modelcrunch.cli.app"])


def campaign(pairs: list[tuple[Case, str]], *, jobs: int = 1, on_run=None, **limits) -> list[Run]:
    prepare()
    scratch = Path(tempfile.mkdtemp(prefix="modelcrunch-fuzz-"))
    try:

        def one(pair: tuple[Case, str]) -> Run:
            run = run_one(pair[0], pair[1], scratch, **limits)
            if on_run is not None:
                on_run(run)
            return run

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(one, pairs))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def summary(runs: list[Run]) -> str:
    cases = len({r.case for r in runs})
    commands = len({r.command for r in runs})
    violations = sum(1 for r in runs if r.violations)
    return f"fuzz: {cases} cases x {commands} commands ({len(runs)} runs), {violations} violations"


__all__ = ["COMMANDS", "Run", "campaign", "plan", "run_one", "summary"]
