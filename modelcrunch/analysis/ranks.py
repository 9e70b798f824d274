"""Choosing low-rank factorization ranks from singular-value spectra.

Three policies (exactly one is used per run):

* **rank ratio** ``ρ``: ``r = ceil(ρ · r_max)`` for every layer.
* **energy** ``e``: the smallest ``r`` with ``Σ_{i<r} σ_i² ≥ e · Σ σ_i²`` per layer.
* **global budget** ``t`` on parameters or MACs: every layer starts unfactorized; the greedy step
  moves the layer whose next smaller option adds the least *relative spectrum loss*
  (``Σ_{i≥r} σ_i² / Σ σ_i²``) per parameter (or MAC) saved, until the considered layers cost at most
  ``t`` × their original cost (or no option is left). Options are precomputed per layer and only
  include ranks that actually save (``cost(r) < cost(full)``).

Ranks are rounded *up* to a multiple of ``round_to`` (capped at the full rank).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np


def round_rank(rank: int, round_to: int, max_rank: int) -> int:
    """Round ``rank`` up to a multiple of ``round_to``, at least 1 and at most ``max_rank``."""
    rank = max(1, rank)
    if round_to > 1:
        rank = math.ceil(rank / round_to) * round_to
    return min(rank, max_rank)


def rank_for_ratio(max_rank: int, ratio: float, round_to: int = 1) -> int:
    return round_rank(math.ceil(ratio * max_rank), round_to, max_rank)


def rank_for_energy(energies: np.ndarray, energy: float, round_to: int = 1) -> int:
    """Smallest rank keeping ``energy`` of the squared singular values ``energies`` (descending)."""
    total = float(np.sum(energies))
    if total <= 0.0:
        return round_rank(1, round_to, len(energies))
    kept = np.cumsum(energies) / total
    rank = int(np.searchsorted(kept, energy - 1e-12) + 1)
    return round_rank(rank, round_to, len(energies))


def tail_fraction(energies: np.ndarray, rank: int) -> float:
    """Relative squared error of the best rank-``rank`` approximation: ``Σ_{i≥r} σ_i² / Σ σ_i²``."""
    total = float(np.sum(energies))
    return float(np.sum(energies[rank:]) / total) if total > 0 else 0.0


@dataclass(frozen=True)
class RankOption:
    """One way to factorize a layer: its ranks, its cost, and its relative spectrum loss."""

    ranks: tuple[int, ...]
    params: int
    macs: int
    loss: float


@dataclass(frozen=True)
class BudgetItem:
    """A layer in the global budget: its unfactorized cost and its saving options (any order)."""

    key: str
    params: int
    macs: int
    options: tuple[RankOption, ...]


def allocate_budget(items: list[BudgetItem], target: float, metric: str = "params") -> dict[str, RankOption]:
    """Greedy allocation: returns the chosen option per layer key (layers left whole are absent).

    ``metric`` is ``"params"`` or ``"macs"``; ``target`` is the allowed fraction of the considered
    layers' original total cost. Each move takes a layer from its current option to the later option
    with the lowest added loss per unit saved (a jump over several rungs when that is cheaper per
    unit: the lower convex hull of the layer's loss/cost curve), so a layer whose first saving rank
    is expensive is not locked out; the last move stops at the first rung that meets the budget.
    """
    if metric not in ("params", "macs"):
        raise ValueError(f"metric must be 'params' or 'macs', not {metric!r}")

    def cost(x: RankOption | BudgetItem) -> int:
        return x.params if metric == "params" else x.macs

    budget = target * sum(cost(item) for item in items)
    ladders: dict[str, list[RankOption]] = {}
    for item in items:
        ladder = sorted((o for o in item.options if cost(o) < cost(item)), key=lambda o: (-cost(o), o.loss))
        if ladder:
            ladders[item.key] = ladder
    costs = {k: np.array([cost(o) for o in lad], dtype=np.float64) for k, lad in ladders.items()}
    losses = {k: np.array([o.loss for o in lad], dtype=np.float64) for k, lad in ladders.items()}
    current_cost = {item.key: float(cost(item)) for item in items}
    current_loss = dict.fromkeys(current_cost, 0.0)
    position = dict.fromkeys(ladders, -1)
    total = sum(current_cost.values())

    def push(heap: list, key: str) -> None:
        start = position[key] + 1
        if start >= len(ladders[key]):
            return
        saved = np.maximum(current_cost[key] - costs[key][start:], 1.0)
        ratio = np.maximum(losses[key][start:] - current_loss[key], 0.0) / saved
        best = start + int(np.flatnonzero(ratio <= ratio.min() * (1 + 1e-9) + 1e-18)[-1])
        heapq.heappush(heap, (float(ratio.min()), key, position[key], best))

    heap: list = []
    for key in ladders:
        push(heap, key)
    chosen: dict[str, RankOption] = {}
    while total > budget and heap:
        _, key, from_position, target_index = heapq.heappop(heap)
        if from_position != position[key]:
            continue
        # Stop at the first rung that meets the budget rather than overshooting it.
        needed = total - budget
        reach = np.flatnonzero(current_cost[key] - costs[key][from_position + 1 : target_index + 1] >= needed)
        if reach.size:
            target_index = from_position + 1 + int(reach[0])
        option = ladders[key][target_index]
        total -= current_cost[key] - cost(option)
        current_cost[key], current_loss[key], position[key] = float(cost(option)), option.loss, target_index
        chosen[key] = option
        push(heap, key)
    return chosen
