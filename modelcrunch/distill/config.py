"""Distillation settings (importable without torch, so the CLI can check them first)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelcrunch.errors import ModelcrunchError

#: --augment choices (see modelcrunch.distill.augment).
MODES = ("auto", "none", "image", "audio", "text")
EPOCHS = 30  # passes at most when neither --epochs nor a time budget is given


@dataclass(frozen=True)
class DistillConfig:
    epochs: int | None = None  # None: EPOCHS, or no cap under a time budget (it and patience stop)
    batch_size: int = 16
    lr: float = 1e-4
    temperature: float = 2.0
    holdout: float = 0.2
    patience: int = 5
    time_budget: float | None = None  # seconds of training
    seed: int = 0
    augment: str = "auto"
    tolerance: float = 1e-3  # translation check: max|torch - ort| / max|ort|
    threads: int | None = None
    feature_match: float = 0.0  # weight of the intermediate feature loss (0: outputs only)
    checkpoint: Path | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.augment not in MODES:
            raise ModelcrunchError(f"--augment must be one of {', '.join(MODES)}, got '{self.augment}'")
        if not 0 < self.holdout < 1:
            raise ModelcrunchError(f"--holdout must be in (0, 1), got {self.holdout}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ModelcrunchError(f"--{name.replace('_', '-')} must be >= 1")
        if self.feature_match < 0:
            raise ModelcrunchError("--feature-match must be >= 0")
        if self.lr <= 0 or self.temperature <= 0:
            raise ModelcrunchError("--lr and --temperature must be > 0")
        if self.resume and self.checkpoint is None:
            raise ModelcrunchError("--resume needs --checkpoint DIR")

    @property
    def max_epochs(self) -> int | None:
        """Passes over the training samples at most; None: until the time budget or patience ends
        training."""
        if self.epochs is not None:
            return self.epochs
        return None if self.time_budget is not None else EPOCHS
