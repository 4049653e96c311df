"""The quality-scorer plug-in interface and the name -> scorer registry.

A scorer gives one higher-is-better number per face, plus named components. Several can run;
`combine_ranks` makes one score from several by averaging their ranks (scales differ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.stats import rankdata


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


_REGISTRY: dict[str, Callable[[str], QualityScorer]] = {}


def register(prefix: str):
    """Register a factory for names equal to `prefix` or starting with `prefix:`."""

    def deco(factory):
        _REGISTRY[prefix] = factory
        return factory

    return deco


def available() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def make_quality(name: str) -> QualityScorer:
    """The scorer for a method name; "a+b" is the rank average of methods a and b."""
    _load_builtin()
    base = name.split(":", 1)[0]
    if "+" in base:
        from facesieve.quality.combined import make_rank_average

        return make_rank_average(name)
    if base not in _REGISTRY:
        raise ValueError(f"unknown quality method {name!r}; choose from {', '.join(available())}")
    return _REGISTRY[base](name)


def combine_ranks(scores: list[np.ndarray]) -> np.ndarray:
    """Mean of per-method ranks scaled to [0,1]; NaN where any method has no score."""
    ranks = []
    for s in scores:
        s = np.asarray(s, dtype=float)
        r = np.full(s.shape, np.nan)
        ok = ~np.isnan(s)
        if ok.sum() > 1:
            r[ok] = (rankdata(s[ok]) - 1) / (ok.sum() - 1)
        elif ok.sum() == 1:
            r[ok] = 1.0
        ranks.append(r)
    return np.mean(ranks, axis=0)


class Uniform:
    """Every face weighs the same: FaceDuplicationFilter's behaviour."""

    name = "uniform"
    key = "uniform"
    uses_embedder = False

    def score(self, data: QualityInput) -> pd.DataFrame:
        return pd.DataFrame({"quality": np.ones(len(data.crops), dtype=np.float64)})


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    register("uniform")(lambda name: Uniform())
    from facesieve.quality import image  # noqa: F401  (registers "image")
    from facesieve.quality import combined, ers, labels, robustness  # noqa: F401  (offline, ers, sdd-fiqa, robustness)
    try:
        from facesieve.quality import plugins  # noqa: F401
    except ImportError:
        pass
