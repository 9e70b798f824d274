"""The search space: per-layer knobs of the existing stages, and one candidate's settings.

Knobs, found on the model (each a categorical choice, the first value meaning "leave it"):

* ``prune:<producer>`` — structured prune ratio of one channel group (``analysis.groups``); the
  kept count is rounded up to a multiple of :data:`ROUND_TO` (kernel-friendly widths);
* ``rank:<layer>`` — factorization energy of one MatMul/Gemm/Conv (1.0 = not factorized);
* ``precision`` — whole-model number format (float, fp16, int8 dynamic/static, int4 weight-only
  where the model has constant-weight MatMuls);
* ``float:<layer>`` — keep one weighted layer in float when the precision quantizes.

``Settings`` is one point of that space, keyed by a stable hash so that a measured candidate is
never measured twice (the store caches by key).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import onnx_ir as ir

from modelcrunch.analysis.groups import find_groups
from modelcrunch.errors import ModelcrunchError
from modelcrunch.passes.factorize.layers import find_layers
from modelcrunch.passes.prune.structured import ensure_node_names

PRUNE_RATIOS = (0.0, 0.25, 0.5, 0.75)
ENERGIES = (1.0, 0.99, 0.95, 0.9)
ROUND_TO = 8
QUANT_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class Knob:
    name: str  # "prune:/conv2/Conv", "rank:/conv2/Conv", "precision", "float:/conv2/Conv"
    choices: tuple
    label: str  # what it changes, for reports

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.name.split(":", 1)[1] if ":" in self.name else "model"

    @property
    def neutral(self):  # noqa: ANN201 - a categorical value
        return self.choices[0]


@dataclass(frozen=True)
class SearchSpace:
    knobs: tuple[Knob, ...]
    group_of: Mapping[str, int]  # prune knob target (first producer) -> channel group id

    @property
    def size(self) -> int:
        return math.prod(len(k.choices) for k in self.knobs)

    def knob(self, name: str) -> Knob:
        return next(k for k in self.knobs if k.name == name)

    def neutral(self) -> Settings:
        return Settings({k.name: k.neutral for k in self.knobs})

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for k in self.knobs:
            kinds[k.kind] = kinds.get(k.kind, 0) + 1
        parts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        return f"{self.size:.3g} candidates ({parts} knobs)"


def precisions(model: ir.Model) -> tuple[str, ...]:
    ops = {n.op_type for n in model.graph}
    modes = ["float", "fp16", "dynamic" if ops & {"MatMul", "Gemm"} else None, "static"]
    if "MatMul" in ops and "Conv" not in ops:
        modes.append("weight-only")
    return tuple(m for m in modes if m is not None)


KINDS = ("prune", "rank", "precision", "float")


def discover(model: ir.Model, kinds: tuple[str, ...] = KINDS) -> SearchSpace:
    """Every knob of the given ``kinds`` the stages offer on ``model`` (which gets unique node names)."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ModelcrunchError(f"--knobs {bad[0]}: choose from {', '.join(KINDS)}")
    ensure_node_names(model)
    knobs: list[Knob] = []
    group_of: dict[str, int] = {}
    for g in find_groups(model):
        if "prune" in kinds and g.reason is None and g.block == 1 and g.size >= 2 * ROUND_TO:
            target = g.producers[0]
            group_of[target] = g.id
            knobs.append(
                Knob(f"prune:{target}", PRUNE_RATIOS, f"{g.size} channels of {', '.join(g.producers)}")
            )
    layers, _ = find_layers(model, exclude=(), min_size=0, shape_of=lambda v: v.shape)
    for layer in layers:
        if "rank" in kinds and layer.params >= 4096:
            knobs.append(Knob(f"rank:{layer.name}", ENERGIES, f"{layer.op_type} {layer.params} weights"))
    if "precision" in kinds:
        knobs.append(Knob("precision", precisions(model), "number format"))
        if "float" in kinds:
            for node in model.graph:
                if node.op_type in QUANT_OPS and any(
                    v is not None and v.const_value is not None for v in node.inputs[1:2]
                ):
                    knobs.append(Knob(f"float:{node.name}", (False, True), f"keep {node.op_type} in float"))
    return SearchSpace(tuple(knobs), group_of)


@dataclass(frozen=True)
class Settings:
    """One candidate: a value for every knob (missing knobs are neutral)."""

    values: Mapping[str, object]

    @property
    def key(self) -> str:
        text = json.dumps(self.changed(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def changed(self) -> dict:
        """Only the knobs moved from neutral (what the candidate actually does)."""
        out = {}
        for name, value in self.values.items():
            neutral = 0.0 if name.startswith("prune:") else 1.0 if name.startswith("rank:") else None
            if name == "precision" and value != "float":
                out[name] = value
            elif name.startswith("float:"):
                if value and self.precision != "float":
                    out[name] = True
            elif neutral is not None and value != neutral:
                out[name] = value
        return out

    @property
    def precision(self) -> str:
        return str(self.values.get("precision", "float"))

    def of_kind(self, kind: str) -> dict[str, object]:
        return {k.split(":", 1)[1]: v for k, v in self.changed().items() if k.startswith(kind + ":")}

    def moved(self, updates: Mapping[str, object]) -> Settings:
        return Settings({**self.values, **updates})

    def summary(self) -> str:
        parts = []
        prune = self.of_kind("prune")
        if prune:
            parts.append(f"prune {len(prune)} groups (max {max(prune.values()):.0%})")
        rank = self.of_kind("rank")
        if rank:
            parts.append(f"factorize {len(rank)} layers (energy >= {min(rank.values()):g})")
        if self.precision != "float":
            floats = len(self.of_kind("float"))
            parts.append(self.precision + (f" ({floats} layers float)" if floats else ""))
        return ", ".join(parts) or "original"
