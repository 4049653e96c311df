"""SDD-FIQA as a quality method ("sdd-fiqa") and its pseudo-label file.

The labels themselves are computed by `sddfiqa.sdd_fiqa_labels` on the run's embeddings: a face
scores high when its similarities to its own identity sit far above its similarities to others.
As a `--quality` it is dataset-level (`fit`): every face's label depends on the whole dataset, so
all faces are relabelled when the set of faces changes. Faces of one-image identities get no label
(NaN): the selection treats them as unknown quality, the label file leaves them out and the report
lists them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from facesieve.quality.base import register
from facesieve.quality.sddfiqa import sdd_fiqa_labels
from facesieve.workspace import atomic_write_text


class SddFiqa:
    """Dataset-level method: SDD-FIQA pseudo-labels in [0, 100] (higher is better)."""

    uses_embedder = False  # works on the run's stored vectors; the key names the embedder via bind

    def __init__(self, n_pos: int = 24, n_neg: int = 24, runs: int = 12, seed: int = 0):
        self.n_pos, self.n_neg, self.runs, self.seed = n_pos, n_neg, runs, seed
        self.name = "sdd-fiqa"
        self._embedder = "?"
        self.report: dict = {}

    @property
    def key(self) -> str:
        return f"sdd-fiqa-v1|pos={self.n_pos}|neg={self.n_neg}|runs={self.runs}|seed={self.seed}|{self._embedder}"

    def bind(self, config) -> None:
        self._embedder = config.embedder

    def fit(self, faces: pd.DataFrame, vectors: np.ndarray, crops=None) -> pd.DataFrame:
        if "identity" not in faces:
            raise ValueError("sdd-fiqa needs each face's identity (a dataset with one folder per identity)")
        ids = faces["identity"].astype(str).to_numpy()
        if len(ids) and (ids == "").all():
            raise ValueError("sdd-fiqa needs identities: this dataset has none (flat layout)")
        scores, report = sdd_fiqa_labels(np.asarray(vectors), ids, n_pos=self.n_pos, n_neg=self.n_neg,
                                         runs=self.runs, seed=self.seed)
        self.report = report
        return pd.DataFrame({"quality": scores, "sdd_fiqa": scores})


register("sdd-fiqa")(lambda name: SddFiqa())


def format_labels(paths: list[str] | np.ndarray, scores: np.ndarray) -> str:
    """`path<TAB>score` lines (the official label-file layout), labelled faces only."""
    lines = [f"{p}\t{s:.6f}" for p, s in zip(paths, np.asarray(scores, float)) if np.isfinite(s)]
    return "".join(line + "\n" for line in lines)


def write_labels(out, paths, scores) -> int:
    """Write the label file atomically; returns the number of lines."""
    text = format_labels(paths, scores)
    atomic_write_text(out, text)
    return text.count("\n")
