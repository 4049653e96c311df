"""The decide stage: pure functions from tables and arrays to one decision per file.

No I/O here. Every file gets an action (keep / remove / review / error) and a reason; later
passes (duplicates, outliers) only touch faces still kept, so each decision names the first
rule that removed the face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from facesieve.select.subset import select_subset

KEEP, REMOVE, REVIEW, ERROR = "keep", "remove", "review", "error"


@dataclass
class DecideSettings:
    keep: int | None = None
    metric: str = "cosine"
    max_exhaustive: int = 2_000_000
    extra: dict = field(default_factory=dict)


def quality_weights(quality: np.ndarray) -> np.ndarray:
    """Non-negative selection weights: the scores themselves when they already are, otherwise
    their ranks scaled to (0,1] (raw regressor outputs can be negative). Unknown -> 0."""
    q = np.asarray(quality, dtype=float)
    ok = ~np.isnan(q)
    w = np.zeros_like(q)
    if not ok.any():
        return w
    if (q[ok] >= 0).all():
        w[ok] = q[ok]
    else:
        order = q[ok].argsort().argsort()
        w[ok] = (order + 1) / ok.sum()
    return w


def initial_decisions(files: pd.DataFrame) -> pd.DataFrame:
    """Start from the scan + faces statuses: errors and no-face files are decided here."""
    d = pd.DataFrame(index=files.index)
    d["action"] = KEEP
    d["reason"] = "kept"
    status = files["status"].to_numpy()
    reason = files["reason"].fillna("").to_numpy()
    err = (status == "error") | (status == "skipped")
    d.loc[err, "action"] = ERROR
    d.loc[err, "reason"] = np.where(reason[err] != "", reason[err], "unreadable")
    noface = status == "no_face"
    d.loc[noface, "action"] = REMOVE
    d.loc[noface, "reason"] = "no_face"
    d["detail"] = ""
    return d


def select_per_identity(
    decisions: pd.DataFrame,
    identities: np.ndarray,
    paths: np.ndarray,
    vectors: np.ndarray,
    weights: np.ndarray,
    settings: DecideSettings,
) -> pd.DataFrame:
    """FaceDuplicationFilter's K-subset per identity, among the faces still kept.

    `vectors` has one row per file (rows of files without a face are ignored). Returns one row per
    identity: identity, n_candidates, k, method, score.
    """
    k = settings.keep
    rows = []
    kept = decisions["action"].to_numpy() == KEEP
    for ident in pd.unique(identities[kept]):
        idx = np.flatnonzero(kept & (identities == ident))
        if len(idx) <= k:
            decisions.iloc[idx, decisions.columns.get_loc("reason")] = "too_few"
            rows.append({"identity": ident, "n_candidates": len(idx), "k": k, "method": "all", "score": np.nan})
            continue
        res = select_subset(
            np.asarray(vectors[idx], dtype=np.float64),
            weights[idx],
            k,
            names=list(paths[idx]),
            max_exhaustive=settings.max_exhaustive,
        )
        chosen = idx[res.indices]
        dropped = np.setdiff1d(idx, chosen)
        decisions.iloc[chosen, decisions.columns.get_loc("reason")] = "selected"
        decisions.iloc[dropped, decisions.columns.get_loc("action")] = REMOVE
        decisions.iloc[dropped, decisions.columns.get_loc("reason")] = "not_selected"
        rows.append({"identity": ident, "n_candidates": len(idx), "k": k, "method": res.method, "score": float(res.score)})
    return pd.DataFrame(rows, columns=["identity", "n_candidates", "k", "method", "score"])


def mean_encodings(decisions: pd.DataFrame, identities: np.ndarray, vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Per identity, the float64 mean of the kept faces' vectors (FaceDuplicationFilter's best_encoding)."""
    out = {}
    kept = decisions["action"].to_numpy() == KEEP
    for ident in pd.unique(identities[kept]):
        idx = np.flatnonzero(kept & (identities == ident))
        out[ident] = np.asarray(vectors[idx], dtype=np.float64).mean(axis=0)
    return out
