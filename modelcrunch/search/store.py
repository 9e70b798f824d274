"""The search's database: one Optuna study (SQLite in OUT_DIR by default, any SQLAlchemy URL).

Every evaluation is one trial. Before a candidate is built, the store looks up its settings key:
a candidate measured before (this run, an earlier interrupted run, or another worker) is not
measured again — its stored figures are told to the new trial. Two workers that draw the same
settings at once both record the key; the later trial (higher number) yields, marked
``duplicate_of``, so no candidate is ever evaluated twice. Interrupted trials are marked failed,
and the model of a trial is written (atomically) before the trial completes, so the store never
points at a partial model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from modelcrunch.search.measure import Figures
from modelcrunch.search.space import SearchSpace, Settings

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

POPULATION = 8


@dataclass(frozen=True)
class Record:
    number: int
    key: str
    settings: Settings
    figures: Figures
    phase: str
    model: str | None


def storage_url(out_dir: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"


def _storage(url: str):  # noqa: ANN202
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    return optuna.storages.RDBStorage(url)


class Store:
    def __init__(self, url: str, name: str, space: SearchSpace, objectives: Sequence[str], seed: int) -> None:
        self.space, self.objectives = space, tuple(objectives)
        self.distributions = {k.name: CategoricalDistribution(list(k.choices)) for k in space.knobs}
        sampler = optuna.samplers.NSGAIISampler(population_size=POPULATION, seed=seed)
        self.study = optuna.create_study(
            storage=_storage(url),
            study_name=name,
            directions=["maximize", *["minimize"] * len(self.objectives)],
            sampler=sampler,
            load_if_exists=True,
        )

    def values(self, figures: Figures) -> list[float]:
        return [figures.quality, *(figures.objective(o) for o in self.objectives)]

    def records(self) -> list[Record]:
        """Every measured candidate (cached repeats and duplicates left out), oldest first."""
        out = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if "figures" in t.user_attrs and "cached_from" not in t.user_attrs:
                out.append(
                    Record(
                        t.number,
                        t.user_attrs["key"],
                        Settings(dict(t.params)),
                        Figures.from_dict(t.user_attrs["figures"]),
                        t.user_attrs.get("phase", "sampler"),
                        t.user_attrs.get("model"),
                    )
                )
        return out

    def _find(self, key: str, number: int) -> tuple[str, object] | None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.number == number or t.user_attrs.get("key") != key:
                continue
            if t.state == TrialState.COMPLETE and "figures" in t.user_attrs:
                return "complete", t
            if t.state == TrialState.RUNNING and t.number < number:
                return "running", t
        return None

    def cached(self, settings: Settings) -> Record | None:
        for r in self.records():
            if r.key == settings.key:
                return r
        return None

    def evaluate(
        self, settings: Settings | None, phase: str, work: Callable[[Settings], tuple[Figures, str]]
    ) -> tuple[Record | None, bool]:
        """One trial: ``settings`` (or the sampler's choice); returns (record, measured now)."""
        if settings is not None:
            known = self.cached(settings)
            if known is not None:
                return known, False
            self.study.enqueue_trial(dict(settings.values))
        trial = self.study.ask(self.distributions)
        settings = Settings(dict(trial.params))
        key = settings.key
        trial.set_user_attr("key", key)
        trial.set_user_attr("phase", phase)
        trial.set_user_attr("worker", os.getpid())
        found = self._find(key, trial.number)
        if found is not None:
            state, other = found
            if state == "complete":  # measured before: tell its figures, measure nothing
                figures = Figures.from_dict(other.user_attrs["figures"])
                trial.set_user_attr("cached_from", other.number)
                self.study.tell(trial, self.values(figures))
                return None, False
            trial.set_user_attr("duplicate_of", other.number)
            self.study.tell(trial, state=TrialState.FAIL)
            return None, False
        try:
            figures, model = work(settings)
        except KeyboardInterrupt:
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # noqa: BLE001 - a stage that cannot build this point: record, go on
            logger.warning("candidate %s failed: %s: %s", key, type(exc).__name__, exc)
            trial.set_user_attr("error", f"{type(exc).__name__}: {str(exc)[:200]}")
            self.study.tell(trial, state=TrialState.FAIL)
            return None, True
        trial.set_user_attr("figures", figures.to_dict())
        trial.set_user_attr("model", model)
        self.study.tell(trial, self.values(figures))
        return Record(trial.number, key, settings, figures, phase, model), True

    def failures(self) -> list[dict]:
        return [
            {
                "number": t.number,
                "error": t.user_attrs["error"],
                "settings": Settings(dict(t.params)).changed(),
            }
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if "error" in t.user_attrs
        ]
