"""Options of the detectors that train their own small model (confident_learning, spectral_signature)."""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from poisongate.config import Recipe
from poisongate.detectors.base import DetectorOptions


class ModelOptions(DetectorOptions):
    seed: int = 0
    model: Literal["mlp", "cnn"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [128, 64])  # []: linear
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(0.002, gt=0)
    weight_decay: float = Field(0.0001, ge=0)
    cnn_channels: list[int] = Field(default_factory=lambda: [16, 32], min_length=1)  # model cnn only
    # Rows a model sees at most (epochs x rows): a larger batch trains fewer epochs, about as many steps as a
    # smaller one, so the detector's cost stops growing with the batch (issue 19: 5 folds x 40 epochs of 1M rows
    # took 11 minutes). The default leaves a 30,000-row training set its full 40 epochs.
    max_examples: int = Field(1_500_000, ge=1)

    def recipe(self, rows: int) -> Recipe:
        """The detector's training recipe for `rows` training rows per model: its own model and schedule (epochs
        capped by max_examples), none of train's robust options."""
        off = {"clip_grad_norm": 0.0, "trim_fraction": 0.0,
               "adversarial": {"method": "none", "epsilon": 0.0, "pgd_steps": 1, "pgd_step_size": 0.0},
               "dp_sgd": {"enabled": False, "clip_norm": 1.0, "noise_multiplier": 0.0, "delta": 1e-5}}
        mine = self.model_dump(include=set(ModelOptions.model_fields) - set(DetectorOptions.model_fields)
                               - {"max_examples"})
        mine["epochs"] = max(1, min(self.epochs, math.ceil(self.max_examples / max(rows, 1))))
        return Recipe.model_validate({**off, **mine})


def classes_of(*ys: np.ndarray) -> tuple[int, ...]:
    """Class indices 0..max over the given label arrays."""
    return tuple(range(int(max(int(np.max(y, initial=-1)) for y in ys)) + 1))
