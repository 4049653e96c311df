"""The quality-scorer interface: what a method is given and what it returns.

A scorer gives one higher-is-better number per face, plus named components. Method modules import
only this; which name builds which scorer is facesieve.quality.registry's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd


@dataclass
class QualityInput:
    """What a scorer may look at: aligned RGB crops (n,112,112,3) uint8, the faces table rows
    (box, landmarks, image size), the run's embedder (for perturbation robustness), its unit
    embeddings and their raw norms before normalisation (`norms`, (n,); None when the caller does
    not have them: a scorer that needs them embeds the crops again)."""

    crops: np.ndarray
    faces: pd.DataFrame
    embedder: object | None = None
    embeddings: np.ndarray | None = None
    norms: np.ndarray | None = None


class QualityScorer(Protocol):
    name: str

    @property
    def key(self) -> str:
        """Cache key: changes whenever the scores would change (name, parameters, weights)."""

    uses_embedder: bool

    def score(self, data: QualityInput) -> pd.DataFrame:
        """One row per face: column `quality` (higher is better) and one column per component."""
