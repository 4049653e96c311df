"""Several quality methods at once ("a+b"): the mean of their ranks, over the whole dataset.

Ranks, not scores, because the methods' scales differ (a probability, a label in [0, 100], a
norm). The registry builds the parts and hands them here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from facesieve import stages
from facesieve.quality.base import QualityInput

PART_ROWS = 256  # faces scored at once inside a dataset-level method


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


class RankAverage:
    """Several methods at once ("offline+sdd-fiqa"): the mean of their ranks scaled to [0, 1].

    Ranks are only meaningful over the whole dataset, so this is a dataset-level method (`fit`):
    it is recomputed for every face whenever the set of faces changes. Each part's own score is
    kept as a column `<part>_quality`.
    """

    uses_embedder = True

    def __init__(self, parts: list, names: list[str]):
        if len(parts) < 2:
            raise ValueError("a rank average needs at least two methods, e.g. offline+image")
        self.parts = parts
        self.names = names
        self.name = "+".join(names)
        self._config = None

    @property
    def key(self) -> str:
        return "rank(" + ",".join(p.key for p in self.parts) + ")"

    def bind(self, config) -> None:
        """The run's settings: the embedder for per-face parts, and whatever the parts need."""
        self._config = config
        for p in self.parts:
            if hasattr(p, "bind"):
                p.bind(config)

    def fit(self, faces: pd.DataFrame, vectors: np.ndarray, crops: np.ndarray) -> pd.DataFrame:
        scores = {}
        for name, part in zip(self.names, self.parts):
            if hasattr(part, "fit"):
                s = part.fit(faces, vectors, crops)["quality"].to_numpy(float)
            else:
                s = score_all(part, faces, vectors, crops, self._embedder(part))
            scores[f"{name}_quality"] = s
        out = pd.DataFrame({"quality": combine_ranks(list(scores.values()))})
        return pd.concat([out, pd.DataFrame(scores)], axis=1)

    def _embedder(self, part):
        if not getattr(part, "uses_embedder", False):
            return None
        if self._config is None:
            raise ValueError(f"{self.name}: call bind(config) first (a part needs the run's embedder)")
        return stages.embedder(self._config.embedder)


def score_all(scorer, faces: pd.DataFrame, vectors: np.ndarray, crops: np.ndarray, emb) -> np.ndarray:
    """A per-face method's `quality` for every face, PART_ROWS faces at a time."""
    out = np.full(len(faces), np.nan)
    for s in range(0, len(faces), PART_ROWS):
        sl = slice(s, min(s + PART_ROWS, len(faces)))
        data = QualityInput(crops=np.asarray(crops[sl]), faces=faces.iloc[sl].reset_index(drop=True), embedder=emb,
                            embeddings=np.asarray(vectors[sl]) if vectors is not None else None)
        out[sl] = scorer.score(data)["quality"].to_numpy(float)
    return out
