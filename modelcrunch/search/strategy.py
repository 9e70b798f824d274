"""How the search spends its budget: sensitivity tables, a greedy path, then the sampler.

1. **Sensitivity tables** (measured once, stored as trials): every knob moved alone from the
   original, each to each strength — precision first, then every layer. Each entry is a real,
   measured candidate (so the tables also seed the front): quality loss and latency/size/RAM
   change of that layer alone, on the target provider.
2. **Composites** (AIMET-style ratio selection): for a few per-layer loss budgets, every layer at
   the strongest strength the tables say stays within the budget, composed and measured.
3. **Greedy path** (NetAdapt style): from the fastest whole-model precision that passes,
   step one layer one strength further at a time — the step the tables *predict* gives the most
   footprint per unit of quality lost (effects assumed additive) — then build and *measure* it.
   A measured step that fails the quality target, or does not lower the footprint, blocks that
   layer; the path ends when no step is left.
4. **Sampler** (Optuna NSGA-II over every knob, seeded): fills the front until the budget ends.

Predicted figures only choose what to measure next; only measured figures reach the front.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from modelcrunch.search.measure import Figures
from modelcrunch.search.space import SearchSpace, Settings
from modelcrunch.search.store import Record

Table = dict[tuple[str, object], Figures]  # (knob, value) -> figures of that knob alone


def sensitivity_plan(space: SearchSpace) -> list[Settings]:
    """Single-knob candidates: precisions first, then each layer at each strength (mid first)."""
    base = space.neutral()
    plan = [base]
    for knob in space.knobs:
        if knob.kind == "precision":
            plan += [base.moved({knob.name: v}) for v in knob.choices[1:]]
    layered = [k for k in space.knobs if k.kind in ("prune", "rank")]
    for depth in (2, 1, 3):  # the middle strength of every layer before the extremes
        for knob in layered:
            if depth < len(knob.choices):
                plan.append(base.moved({knob.name: knob.choices[depth]}))
    return plan


def table_of(records: list[Record]) -> Table:
    """The sensitivity table: the measured figures of every single-knob candidate."""
    table: Table = {}
    for r in records:
        changed = r.settings.changed()
        if len(changed) == 1:
            ((name, value),) = changed.items()
            table[(name, value)] = r.figures
    return table


def _predict(
    table: Table, base: Figures, knob: str, old: object, new: object, objective: str
) -> tuple[float, float] | None:
    """Predicted (footprint gain, quality loss) of moving ``knob`` from ``old`` to ``new``."""
    after = table.get((knob, new))
    if after is None:
        return None
    before = table.get((knob, old), base)
    gain = before.objective(objective) - after.objective(objective)
    if objective != "latency":  # latency is already a ratio to the original
        gain /= max(base.objective(objective), 1.0)
    return gain, max(before.quality - after.quality, 0.0)


#: Per-layer quality-loss budgets of the composite candidates (AIMET-style ratio selection).
COMPOSITE_LOSSES = (0.0005, 0.002, 0.005)


def _start(space: SearchSpace, table: Table, objective: str) -> Settings:
    """The original at the fastest (lowest-footprint) whole-model precision that passes alone."""
    passing = [
        (f.objective(objective), v) for (name, v), f in table.items() if name == "precision" and f.passed
    ]
    start = space.neutral()
    return start.moved({"precision": min(passing, key=lambda t: t[0])[1]}) if passing else start


def composites(space: SearchSpace, records: list[Record], objective: str) -> list[Settings]:
    """AIMET-style: for each per-layer loss budget, every layer at its strongest strength whose
    loss alone stays within the budget (and that lowers the footprint alone), all composed, at the
    fastest passing precision. The tables predict each layer; the composite is then measured."""
    table = table_of(records)
    base = next((r.figures for r in records if not r.settings.changed()), None)
    if base is None:
        return []
    start = _start(space, table, objective)
    out: list[Settings] = []
    for budget in COMPOSITE_LOSSES:
        moves = {}
        for knob in space.knobs:
            if knob.kind not in ("prune", "rank"):
                continue
            for value in reversed(knob.choices[1:]):
                f = table.get((knob.name, value))
                if (
                    f is not None
                    and f.passed
                    and base.quality - f.quality <= budget
                    and f.objective(objective) < base.objective(objective)
                ):
                    moves[knob.name] = value
                    break
        candidate = start.moved(moves)
        if moves and candidate.key not in {c.key for c in out}:
            out.append(candidate)
    return out


def greedy_steps(
    space: SearchSpace,
    records: Callable[[], list[Record]],
    objective: str,
) -> Iterator[tuple[Settings, Callable[[Record | None], None]]]:
    """Yield the next settings to measure and a callback taking its measured record."""
    table = table_of(records())
    base = next((r.figures for r in records() if not r.settings.changed()), None)
    if base is None:
        return
    current = _start(space, table, objective)
    current_figures = table.get(("precision", current.precision), base)
    blocked: set[str] = set()
    while True:
        options = []
        for knob in space.knobs:
            if knob.kind not in ("prune", "rank") or knob.name in blocked:
                continue
            index = knob.choices.index(current.values[knob.name])
            if index + 1 >= len(knob.choices):
                continue
            new = knob.choices[index + 1]
            predicted = _predict(table, base, knob.name, current.values[knob.name], new, objective)
            if predicted is None or predicted[0] <= 0:
                continue
            gain, loss = predicted
            options.append((gain / (loss + 1e-4), knob.name, new))
        if not options:
            return
        _, name, new = max(options, key=lambda t: t[0])
        candidate = current.moved({name: new})
        outcome: list[Record | None] = []
        yield candidate, outcome.append
        record = outcome[0] if outcome else None
        if record is None:
            blocked.add(name)
            continue
        better = record.figures.objective(objective) < current_figures.objective(objective)
        if record.figures.passed and better:
            current, current_figures = candidate, record.figures
        else:
            blocked.add(name)
