"""What an engine is asked to compute: the wanted images and the stores their results go to.

Kept apart from the engines' package so the engines import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.workspace import StageStore


@dataclass
class Target:
    """Where a stage that feeds on faces keeps its results: its store, and the suffix that turns a
    face's key into this stage's key (so a changed model or setting is a different key)."""

    store: StageStore
    suffix: str


@dataclass
class QualityTarget(Target):
    method: str  # the quality method's name, for make_quality


@dataclass
class FacesWork:
    """The faces stage's job: the wanted images (columns image_id, key, path relative to `dataset`)
    and the stores for faces and, when the engine may fill them in the same pass, embeddings and
    quality."""

    dataset: Path
    wanted: pd.DataFrame
    store: StageStore
    embed: Target | None = None
    quality: QualityTarget | None = None

    def missing(self) -> np.ndarray:
        """Row numbers of `wanted` with no committed face yet."""
        return np.flatnonzero(~self.store.done_mask(self.wanted[["image_id", "key"]]))
