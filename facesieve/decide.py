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
IGNORE = "ignore"  # not meant as an image of the dataset (a README, a file outside the identity folders)


@dataclass
class DecideSettings:
    keep: int | None = None
    metric: str = "cosine"
    max_exhaustive: int = 2_000_000
    exact_duplicates: bool = True
    near_duplicate: float | None = None  # cosine threshold; None = no near-duplicate pass
    phash_max_bits: int = 8
    phash_min_sim: float = 0.7
    # The face-crop test (select/samephoto.py): pairs from crop_min_sim up go to it; None = no crop
    # test (the hash rule decides). A pair scoring at most same_photo_cut is one photo; at most
    # shot_cut a near-identical shot, grouped only when group_shots. The neighbour-ratio rule
    # (samephoto.Cuts) groups more pairs as one photo; 0 turns it off.
    crop_min_sim: float | None = None
    same_photo_cut: float = 0.0065
    shot_cut: float = 0.0065
    ratio_score_cut: float = 0.0
    ratio_cut: float = 0.0
    lone_cut: float = 0.0
    group_shots: bool = True
    cross_identity: float | None = None  # cosine threshold; None = no cross-identity pass
    identity_overlap: float | None = None
    outliers: bool = True
    drop_outliers: bool = False
    extra: dict = field(default_factory=dict)

    def cuts(self):
        from facesieve.select.samephoto import Cuts

        return Cuts(self.same_photo_cut, self.shot_cut, self.ratio_score_cut, self.ratio_cut, self.lone_cut)


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


DECISION_COLUMNS = ["action", "reason", "detail", "duplicate_of", "similarity", "outlier_score"]


def initial_decisions(files: pd.DataFrame) -> pd.DataFrame:
    """Start from the scan + faces statuses: errors and no-face files are decided here."""
    d = pd.DataFrame(index=files.index)
    d["action"] = KEEP
    d["reason"] = "kept"
    status = files["status"].to_numpy()
    reason = files["reason"].fillna("").to_numpy()
    err = status == "error"
    d.loc[err, "action"] = ERROR
    d.loc[err, "reason"] = np.where(reason[err] != "", reason[err], "unreadable")
    skipped = status == "skipped"  # set aside by the scan's rules: neither an error nor part of an identity
    d.loc[skipped, "action"] = IGNORE
    d.loc[skipped, "reason"] = np.where(reason[skipped] != "", reason[skipped], "ignored")
    noface = status == "no_face"
    d.loc[noface, "action"] = REMOVE
    d.loc[noface, "reason"] = "no_face"
    d["detail"] = ""
    d["duplicate_of"] = ""
    d["similarity"] = np.nan
    d["outlier_score"] = np.nan
    return d


def _set(decisions: pd.DataFrame, rows: np.ndarray, **values) -> None:
    for col, val in values.items():
        decisions.iloc[rows, decisions.columns.get_loc(col)] = val


def mark_exact_duplicates(decisions, byte_hash, pixel_hash, quality, paths, identities) -> int:
    """Same bytes or same decoded pixels, within and across identities: keep one (best quality,
    then shortest path), remove the rest naming the kept file."""
    from facesieve.select.exact import exact_duplicates

    cand = np.flatnonzero(decisions["action"].to_numpy() == KEEP)
    if len(cand) < 2:
        return 0
    res = exact_duplicates(byte_hash[cand], pixel_hash[cand], quality[cand], paths[cand], identities=identities[cand])
    drop = np.flatnonzero((res["dup_group"].to_numpy() >= 0) & ~res["is_kept"].to_numpy())
    if len(drop):
        rows = cand[drop]
        kept = cand[res["kept_index"].to_numpy()[drop]]
        _set(decisions, rows, action=REMOVE, reason="exact_duplicate", similarity=1.0)
        decisions.iloc[rows, decisions.columns.get_loc("duplicate_of")] = paths[kept]
        decisions.iloc[rows, decisions.columns.get_loc("detail")] = ["same " + m for m in res["match"].to_numpy()[drop]]
    return len(drop)


class _OnRows:
    """A pixel check addressed by candidate number instead of file row (and its prefetch)."""

    def __init__(self, check, rows: np.ndarray):
        self.check, self.rows = check, rows

    def __call__(self, i: int, j: int):
        return self.check(int(self.rows[i]), int(self.rows[j]))

    def prefetch(self, pairs) -> None:
        if hasattr(self.check, "prefetch"):
            self.check.prefetch([(int(self.rows[i]), int(self.rows[j])) for i, j in pairs])


SAME_PHOTO, SHOT = "near_duplicate", "near_identical_shot"  # the two reasons of a grouped face


def mark_near_duplicates(decisions, vectors, identities, quality, paths, phash, settings: DecideSettings, pixels=None,
                         progress=None) -> pd.DataFrame:
    """Groups around a best-quality centre within each identity; the centre is kept.

    `pixels(i, j)` (rows of the file table) -> (grouped, score) is the face-crop test
    (samephoto.SamePhotoCheck). A face whose score to its centre is at most settings.same_photo_cut
    is removed as the same photo (reason near_duplicate), one above it as a near-identical shot."""
    from facesieve.select.neardup import near_duplicate_groups

    cand = np.flatnonzero(decisions["action"].to_numpy() == KEEP)
    if len(cand) < 2:
        return pd.DataFrame()
    use_pixels = pixels is not None and settings.crop_min_sim is not None
    res = near_duplicate_groups(
        np.asarray(vectors[cand], np.float32), identities[cand], quality[cand], paths[cand], settings.near_duplicate,
        phash=None if phash is None else phash[cand], phash_max_bits=settings.phash_max_bits, phash_min_sim=settings.phash_min_sim,
        pixels=_OnRows(pixels, cand) if use_pixels else None,
        pixel_min_sim=settings.crop_min_sim if use_pixels else 1.0,
        pixel_neighbours=settings.extra.get("crop_neighbours", 6),
        progress=progress,
    )
    drop = np.flatnonzero((res["group"].to_numpy() >= 0) & ~res["is_kept"].to_numpy())
    if len(drop):
        rows = cand[drop]
        kept = cand[res["kept_index"].to_numpy()[drop]]
        score = res["pixel_residual"].to_numpy()[drop]
        # a near-identical shot: between the two cuts (above the shot cut only the same-photo ratio
        # rules group a pair); NaN (grouped by embedding or hash) stays a same-photo decision
        shot = settings.group_shots & (score > settings.same_photo_cut) & (score <= settings.shot_cut)
        if hasattr(pixels, "same_photo"):  # the check knows which rule grouped the pair
            shot &= np.array([not (s == s and pixels.same_photo(int(r), int(k))) for r, k, s in zip(rows, kept, score)], bool)
        _set(decisions, rows, action=REMOVE, reason=SAME_PHOTO)
        _set(decisions, rows[shot], reason=SHOT)
        decisions.iloc[rows, decisions.columns.get_loc("duplicate_of")] = paths[kept]
        decisions.iloc[rows, decisions.columns.get_loc("similarity")] = res["similarity"].to_numpy()[drop]
        decisions.iloc[rows, decisions.columns.get_loc("detail")] = [
            (f"near-identical shot (crop score {r:.3f})" if is_shot else f"same photo (crop score {r:.3f})")
            if s == "pixels" else "matched by " + s
            for s, r, is_shot in zip(res["signal"].to_numpy()[drop], score, shot)
        ]
    groups = res.assign(row=cand)
    return groups[groups["group"] >= 0]


def mark_cross_identity(decisions, vectors, identities, paths, has_face, settings: DecideSettings) -> pd.DataFrame:
    """Faces of different identities closer than the duplicate threshold: both go to review."""
    from facesieve.select.crossid import cross_identity_pairs, index_for

    cand = np.flatnonzero(has_face)
    if len(cand) < 2 or len(pd.unique(identities[cand])) < 2:
        return pd.DataFrame(columns=["path_a", "path_b", "identity_a", "identity_b", "similarity"])
    pairs = cross_identity_pairs(
        np.asarray(vectors[cand], np.float32), identities[cand], settings.cross_identity, index=index_for(len(cand))
    )
    out = []
    action = decisions["action"].to_numpy()
    for i, j, sim in zip(pairs["i"].to_numpy(), pairs["j"].to_numpy(), pairs["similarity"].to_numpy()):
        a, b = cand[i], cand[j]
        out.append((paths[a], paths[b], identities[a], identities[b], float(sim)))
        for me, other in ((a, b), (b, a)):
            if action[me] == KEEP:
                _set(decisions, np.array([me]), action=REVIEW, reason="cross_identity_duplicate", similarity=float(sim))
                decisions.iloc[me, decisions.columns.get_loc("duplicate_of")] = paths[other]
                action[me] = REVIEW
    return pd.DataFrame(out, columns=["path_a", "path_b", "identity_a", "identity_b", "similarity"])


def mark_outliers(decisions, vectors, identities, has_face, settings: DecideSettings) -> pd.DataFrame:
    """Faces far from their identity whose neighbours carry other labels: review (or remove)."""
    from facesieve.select.crossid import index_for
    from facesieve.select.outliers import outlier_scores

    cand = np.flatnonzero(has_face)
    if len(cand) < 3:
        return pd.DataFrame()
    res = outlier_scores(np.asarray(vectors[cand], np.float32), identities[cand], index=index_for(len(cand)))
    decisions.iloc[cand, decisions.columns.get_loc("outlier_score")] = res["score"].to_numpy()
    flag = res["is_outlier"].to_numpy() & (decisions["action"].to_numpy()[cand] == KEEP)
    rows = cand[flag]
    if len(rows):
        _set(decisions, rows, action=REMOVE if settings.drop_outliers else REVIEW, reason="outlier")
        decisions.iloc[rows, decisions.columns.get_loc("detail")] = [
            f"robust_z {z:.1f}, same-label neighbours {s:.0%}"
            for z, s in zip(res["robust_z"].to_numpy()[flag], res["knn_same_share"].to_numpy()[flag])
        ]
    return res.assign(row=cand)


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
        explain_not_selected(decisions, chosen, dropped, paths, vectors)
        rows.append({"identity": ident, "n_candidates": len(idx), "k": k, "method": res.method, "score": float(res.score)})
    return pd.DataFrame(rows, columns=["identity", "n_candidates", "k", "method", "score"])


def explain_not_selected(decisions: pd.DataFrame, chosen: np.ndarray, dropped: np.ndarray, paths: np.ndarray,
                         vectors: np.ndarray) -> None:
    """Say why each face left out of the K-subset was dropped, even one of higher quality than a
    kept face: the subset is chosen to cover the identity, so a face whose look a kept face
    already gives is the one to go. detail names that kept face, similarity is their cosine."""
    if not len(dropped) or not len(chosen):
        return
    v = np.asarray(vectors, dtype=np.float64)
    unit = v / np.maximum(np.linalg.norm(v, axis=1), 1e-12)[:, None]
    sims = unit[dropped] @ unit[chosen].T
    best = sims.argmax(axis=1)
    cos = sims[np.arange(len(dropped)), best]
    detail = [f"represented by kept {paths[chosen[b]]} (cosine {c:.3f}); the K faces are chosen to cover the identity, "
              "not by quality alone" for b, c in zip(best, cos)]
    decisions.iloc[dropped, decisions.columns.get_loc("detail")] = np.array(detail, dtype=object)
    decisions.iloc[dropped, decisions.columns.get_loc("similarity")] = cos


def mean_encodings(decisions: pd.DataFrame, identities: np.ndarray, vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Per identity, the float64 mean of the kept faces' vectors (FaceDuplicationFilter's best_encoding)."""
    out = {}
    kept = decisions["action"].to_numpy() == KEEP
    for ident in pd.unique(identities[kept]):
        idx = np.flatnonzero(kept & (identities == ident))
        out[ident] = np.asarray(vectors[idx], dtype=np.float64).mean(axis=0)
    return out
