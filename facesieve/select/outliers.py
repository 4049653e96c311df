"""Faces that look filed under the wrong identity (pure: arrays in, a table out, no I/O).

Two views of the same question, combined:

1. Within the identity: cosine to the identity's robust centre, compared with the identity's own
   spread. The centre starts as the L2-normalised coordinate-wise median of its faces, then is
   re-estimated twice as the normalised mean of the faces no more than 2.5 robust spreads below
   the median centre similarity (a trimmed mean: the median survives up to half the faces being
   wrong, the trimmed mean is steadier on the many identities where few are).
   `robust_z = (median(centre_sim) - centre_sim) / spread`, spread = 1.4826 * MAD of the
   identity's centre similarities (the MAD scaled to a standard deviation under normality), floored
   at 0.02 so that identities of near-identical frames do not turn tiny differences into huge z.
   This is the modified z-score of Iglewicz and Hoaglin, for which 3.5 is their customary cut.
2. Across the dataset: `knn_same_share`, the share of the face's nearest faces (FAISS over all
   faces, self excluded) that carry its label. k is capped at (identity size - 1) so a small
   identity can still reach 1.0; neighbours an IVF search did not return are left out, and so,
   with `min_neighbour_sim` (the run passes the embedder's verification threshold, SFace's
   0.363), are neighbours under it: a face of somebody in no folder is far from every face, so its
   nearest are whoever it is least far from, often its own folder's, and those say nothing about
   whose face it is. A face with no neighbour left has share 0.

`score = max(robust_z, 0) / z * (1 - knn_same_share)`: zero for faces at or above their
identity's median or whose neighbours all share their label, 1.0 for a face exactly z spreads out
with no same-label neighbour; a ranking for review, not a probability.
`is_outlier = robust_z >= z and knn_same_share <= max_same_share and fit_ratio < max_fit`
(defaults 3.5, 0.5 and 0.4): far from its own identity, closer to other identities' faces than to
its own, *and* not one of them by average linkage's reading: `fit_ratio` is the face's average
cosine to its identity's other faces over the identity's median of the same (its tightness). A
face of someone else averages about what two different people do (fit_ratio mostly under 0.3 on
the shared sets); an odd photo of the person (harsh light, a 64 px crop) still averages a good
part of the person's own tightness. Requiring all three keeps a merely unusual photo (profile, old
age, low resolution) whose neighbours or average still say it is the person. max_fit is chosen in
bench/bench_label_noise.py (docs/thresholds.md, "Identity-level decisions").

Identities with fewer than 3 faces get no decision (NaN statistics, is_outlier False): with two
faces there is no majority to say which one is misfiled. A whole identity that is two people in
equal parts is not an outlier problem (no robust centre exists); `crossid.identity_overlaps`
and the per-identity similarity plots address that.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from facesieve.select.crossid import IndexKind, check_neighbours, nearest_neighbours
from facesieve.select.neardup import check_embeddings, identity_codes

__all__ = ["outlier_scores", "robust_centre", "DEFAULT_Z", "DEFAULT_MAX_SAME_SHARE", "DEFAULT_MAX_FIT", "MIN_FACES"]

DEFAULT_Z = 3.5
DEFAULT_MAX_SAME_SHARE = 0.5
DEFAULT_MAX_FIT = 0.4  # chosen leave-one-set-out by bench/bench_label_noise.py (docs/thresholds.md)
MIN_FACES = 3
_SPREAD_FLOOR = 0.02
_TRIM_SPREADS = 2.5
_ITERATIONS = 2
_MAD_TO_SD = 1.4826


def _normalised(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-12 else v


def _median_and_spread(s: np.ndarray) -> tuple[float, float]:
    m = float(np.median(s))
    return m, max(_MAD_TO_SD * float(np.median(np.abs(s - m))), _SPREAD_FLOOR)


def robust_centre(Y: np.ndarray) -> np.ndarray:
    """Robust unit centre of one identity's unit embeddings (rows of Y), float64 (d,).

    Normalised coordinate-wise median, then trimmed means (see the module docstring).
    """
    Y = np.asarray(Y, dtype=np.float64)
    c = _normalised(np.median(Y, axis=0))
    for _ in range(_ITERATIONS):
        s = Y @ c
        m, spread = _median_and_spread(s)
        inliers = s >= m - _TRIM_SPREADS * spread
        c = _normalised(Y[inliers].mean(axis=0))
    return c


def outlier_scores(
    E: ArrayLike,
    identities: ArrayLike,
    *,
    k: int = 10,
    z: float = DEFAULT_Z,
    max_same_share: float = DEFAULT_MAX_SAME_SHARE,
    max_fit: float | None = DEFAULT_MAX_FIT,
    index: IndexKind = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    min_neighbour_sim: float | None = None,
) -> pd.DataFrame:
    """Score every face for being filed under the wrong identity.

    Args:
        E: (N, d) float32 L2-normalised embeddings.
        identities: (N,) labels.
        k: nearest neighbours for knn_same_share (capped per identity, see module docstring).
        z: robust_z at or above which a face is far from its identity.
        max_same_share: knn_same_share at or below which its neighbours mostly carry other labels.
        max_fit: fit_ratio below which the face's average fit to its identity is another person's
            (None: not required).
        index, nlist, nprobe: FAISS search (see `crossid.nearest_neighbours`).
        neighbours: reuse a `nearest_neighbours(E, k)` result instead of searching again.
        min_neighbour_sim: cosine under which a neighbour is nobody's match and does not count in
            knn_same_share (None: every neighbour counts).

    Returns a DataFrame, one row per input row, same order:
        centre_sim (float64): cosine to the identity's robust centre.
        robust_z (float64): robust spreads below the identity's median centre_sim (negative above).
        knn_same_share (float64): share of the nearest faces with the same label.
        score (float64): max(robust_z, 0) / z * (1 - knn_same_share); higher = more suspect.
        fit_ratio (float64): average cosine to the identity's other faces over the identity's median.
        is_outlier (bool): robust_z >= z, knn_same_share <= max_same_share and fit_ratio < max_fit.
        nearest_other_identity: label of the nearest neighbour with another label (None if none
            among the searched neighbours).
        reason (str): the decision in words.
        The statistics are NaN (and is_outlier False) for identities with fewer than 3 faces.
    """
    X = check_embeddings(E)
    n = X.shape[0]
    codes, labels = identity_codes(identities, n)
    if not float(z) > 0:
        raise ValueError(f"z must be positive, got {z}")
    if not 0.0 <= float(max_same_share) <= 1.0:
        raise ValueError(f"max_same_share must be in [0, 1], got {max_same_share}")
    counts = np.bincount(codes, minlength=labels.shape[0]) if n else np.zeros(0, np.int64)
    size = counts[codes]
    eligible = size >= MIN_FACES

    centre_sim = np.full(n, np.nan)
    robust_z = np.full(n, np.nan)
    fit_ratio = np.full(n, np.nan)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a < MIN_FACES:
            continue
        idx = order[a:b]
        Y = np.asarray(X[idx], dtype=np.float64)
        s = Y @ robust_centre(Y)
        m, spread = _median_and_spread(s)
        centre_sim[idx] = s
        robust_z[idx] = (m - s) / spread
        fit = (Y @ Y.sum(axis=0) - np.einsum("ij,ij->i", Y, Y)) / (len(idx) - 1)  # average cosine to the others
        tight = float(np.median(fit))
        fit_ratio[idx] = fit / tight if tight > 1e-6 else np.inf

    share = np.full(n, np.nan)
    nearest_other = np.full(n, None, dtype=object)
    if eligible.any():
        if neighbours is None:
            sims, ids = nearest_neighbours(X, k, index=index, nlist=nlist, nprobe=nprobe)
        else:
            sims, ids = check_neighbours(neighbours, n)
            sims, ids = sims[:, :k], ids[:, :k]
        kk = ids.shape[1]
        valid = ids >= 0
        if min_neighbour_sim is not None:
            valid &= sims >= min_neighbour_sim
        nb_code = np.where(valid, codes[np.clip(ids, 0, None)], -1)
        same = valid & (nb_code == codes[:, None])
        k_i = np.minimum(kk, size - 1)
        within = np.arange(kk)[None, :] < k_i[:, None]
        n_valid = (valid & within).sum(axis=1)
        n_same = (same & within).sum(axis=1)
        has = eligible & (n_valid > 0)
        share[has] = n_same[has] / n_valid[has]
        if min_neighbour_sim is not None:
            share[eligible & (n_valid == 0)] = 0.0  # no face anywhere is a match: none says it is its folder's
        other = valid & ~same
        first_other = np.argmax(other, axis=1)
        found = other[np.arange(n), first_other] if kk else np.zeros(n, dtype=bool)
        nearest_other[found] = labels[nb_code[found, first_other[found]]]

    score = np.maximum(robust_z, 0.0) / float(z) * (1.0 - share)
    is_outlier = eligible & (robust_z >= z) & (share <= max_same_share)
    if max_fit is not None:
        is_outlier &= fit_ratio < max_fit

    too_few = f"identity has fewer than {MIN_FACES} faces: no decision"
    reason = np.where(eligible, "consistent with its identity", too_few).astype(object)
    for r in np.flatnonzero(is_outlier):
        reason[r] = (
            f"likely mislabeled: {robust_z[r]:.1f} robust spreads below its identity "
            f"(cosine {centre_sim[r]:.3f} to centre), "
            f"{share[r]:.0%} of nearest faces share its label, average fit {fit_ratio[r]:.2f} of its identity's"
        )
        if nearest_other[r] is not None:
            reason[r] += f"; nearest other identity {nearest_other[r]}"

    return pd.DataFrame(
        {
            "centre_sim": centre_sim,
            "robust_z": robust_z,
            "knn_same_share": share,
            "score": score,
            "fit_ratio": fit_ratio,
            "is_outlier": is_outlier,
            "nearest_other_identity": pd.Series(nearest_other, dtype=object),
            "reason": pd.Series(reason, dtype=object),
        }
    )
