"""Face-verification numerics on pair distances (LFW conventions): pairs, thresholds, ROC, reports.

Convention everywhere: a pair is called *genuine* (same person) when its distance is <= the
threshold. Distances are cosine distance (1 - cos) or Euclidean; lower means more alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesieve.figures import pyplot, save_figure

_ENUMERATE_LIMIT = 5_000_000
"""Impostor pairs are enumerated (not rejection-sampled) when the dataset has this few pairs."""
_LIST_LIMIT = 20_000_000
"""More pairs than this are never listed in full (about 1 GB of index arrays)."""


# --------------------------------------------------------------------------------------- pairs
def _as_labels(identities: np.ndarray) -> np.ndarray:
    ids = np.asarray(identities)
    if ids.ndim != 1:
        raise ValueError(f"identities must be one-dimensional, got shape {ids.shape}")
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def _triangle_decode(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear index p of an unordered pair (r < c), ordered by c then r -> (r, c)."""
    p = np.asarray(p, dtype=np.int64)
    c = np.floor((1.0 + np.sqrt(1.0 + 8.0 * p)) / 2.0).astype(np.int64)
    c -= (c * (c - 1) // 2) > p  # float rounding, either side
    c += ((c + 1) * c // 2) <= p
    r = p - c * (c - 1) // 2
    return r, c


def _genuine_pairs(codes: np.ndarray, n_pairs: int | None, rng: np.random.Generator) -> np.ndarray:
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    per_id = counts * (counts - 1) // 2
    offsets = np.concatenate([[0], np.cumsum(per_id)])
    total = int(offsets[-1])
    if n_pairs is None or n_pairs >= total:
        lin = np.arange(total, dtype=np.int64)
    else:
        lin = np.sort(rng.choice(total, size=n_pairs, replace=False))
    ident = np.searchsorted(offsets, lin, side="right") - 1
    r, c = _triangle_decode(lin - offsets[ident])
    a = order[starts[ident] + r]
    b = order[starts[ident] + c]
    return np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)


def _impostor_pairs(codes: np.ndarray, n_pairs: int | None, rng: np.random.Generator) -> np.ndarray:
    n = codes.shape[0]
    all_pairs = n * (n - 1) // 2
    counts = np.bincount(codes)
    total = all_pairs - int(np.sum(counts * (counts - 1) // 2))
    if total == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if n_pairs is None or n_pairs >= total or all_pairs <= _ENUMERATE_LIMIT:
        if all_pairs > _LIST_LIMIT:
            raise ValueError(
                f"{total} impostor pairs is too many to list; pass a smaller n_pairs to sample"
            )
        r, c = _triangle_decode(np.arange(all_pairs, dtype=np.int64))
        keep = codes[r] != codes[c]
        pairs = np.stack([r[keep], c[keep]], axis=1)
        if n_pairs is not None and n_pairs < total:
            pairs = pairs[np.sort(rng.choice(total, size=n_pairs, replace=False))]
        return _lexsorted(pairs)
    # Rejection: uniform unordered pairs, keep cross-identity ones, drop repeats.
    found = np.zeros(0, dtype=np.int64)
    while found.size < n_pairs:
        need = n_pairs - found.size
        draw = int(need * all_pairs / total * 1.2) + 16
        lin = rng.integers(0, all_pairs, size=draw)
        r, c = _triangle_decode(lin)
        lin = lin[codes[r] != codes[c]]
        merged = np.concatenate([found, lin])
        _, first = np.unique(merged, return_index=True)
        found = merged[np.sort(first)][:n_pairs]  # keep draw order so the cut is unbiased
    r, c = _triangle_decode(np.sort(found))
    return np.stack([r, c], axis=1)


def _lexsorted(pairs: np.ndarray) -> np.ndarray:
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))] if len(pairs) else pairs


def make_pairs(
    identities: np.ndarray,
    *,
    n_pairs: int | None = None,
    seed: int = 0,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Genuine (same identity) and impostor (different identity) index pairs.

    n_pairs None: every within-identity pair and every cross-identity pair (i < j). Otherwise up
    to n_pairs per side, sampled without replacement, reproducible from ``seed``.
    valid: optional (N,) bool mask; faces that failed (no face, no embedding) are left out and
    the pairs still index the full array, so the caller keeps its own row numbers.

    Returns (pairs (M, 2) int64 with pairs[:, 0] < pairs[:, 1], is_genuine (M,) bool);
    genuine pairs first, each side sorted.
    """
    if n_pairs is not None and (int(n_pairs) != n_pairs or n_pairs < 0):
        raise ValueError(f"n_pairs must be a non-negative integer or None, got {n_pairs!r}")
    codes = _as_labels(identities)
    keep = np.arange(codes.shape[0])
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != codes.shape:
            raise ValueError(f"valid has shape {valid.shape}, identities {codes.shape}")
        keep = np.flatnonzero(valid)
        codes = np.unique(codes[keep], return_inverse=True)[1].reshape(-1)
    rng = np.random.default_rng(seed)
    gen = _lexsorted(_genuine_pairs(codes, n_pairs, rng)) if codes.size else np.zeros((0, 2), int)
    imp = _impostor_pairs(codes, n_pairs, rng) if codes.size else np.zeros((0, 2), int)
    pairs = keep[np.concatenate([gen, imp]).astype(np.int64)].reshape(-1, 2)
    is_genuine = np.concatenate([np.ones(len(gen), bool), np.zeros(len(imp), bool)])
    return pairs.astype(np.int64), is_genuine


def pair_distances(
    embeddings: np.ndarray, pairs: np.ndarray, metric: str = "cosine", *, chunk: int = 1024
) -> np.ndarray:
    """Distance per pair: cosine (1 - cos; vectors need not be unit length) or euclidean.

    Works in float64 on cache-sized chunks of pairs; embeddings may be a memmap.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float64)
    if metric == "cosine":
        inv = np.zeros(embeddings.shape[0])
        used = np.unique(pairs)
        for s in range(0, len(used), chunk):
            r = used[s : s + chunk]
            e = np.asarray(embeddings[r], dtype=np.float64)
            nrm = np.sqrt(np.einsum("ij,ij->i", e, e))
            if np.any(nrm == 0):
                raise ValueError("zero-length embedding in a pair; cosine distance undefined")
            inv[r] = 1.0 / nrm
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        a = np.asarray(embeddings[p[:, 0]], dtype=np.float64)
        b = np.asarray(embeddings[p[:, 1]], dtype=np.float64)
        if metric == "euclidean":
            diff = a - b
            out[s : s + chunk] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        else:
            cos = np.einsum("ij,ij->i", a, b) * inv[p[:, 0]] * inv[p[:, 1]]
            out[s : s + chunk] = 1.0 - cos
    return out


# ---------------------------------------------------------------------------------- thresholds
def _check(dist: np.ndarray, is_genuine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(dist, dtype=np.float64).reshape(-1)
    g = np.asarray(is_genuine, dtype=bool).reshape(-1)
    if d.shape != g.shape:
        raise ValueError(f"{d.size} distances but {g.size} labels")
    if d.size == 0:
        raise ValueError("no pairs")
    if not np.all(np.isfinite(d)):
        raise ValueError("distances must be finite")
    return d, g


def threshold_mean_std(genuine_dist: np.ndarray) -> float:
    """face-similarity's rule: mean + 1 (population) standard deviation of genuine distances."""
    d = np.asarray(genuine_dist, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no genuine distances")
    return float(d.mean() + d.std())


def accuracy_at(dist: np.ndarray, is_genuine: np.ndarray, thr: float) -> float:
    """Fraction of pairs classified right when dist <= thr means genuine."""
    d, g = _check(dist, is_genuine)
    return float(np.mean((d <= thr) == g))


def best_threshold(dist: np.ndarray, is_genuine: np.ndarray) -> tuple[float, float]:
    """Threshold maximising accuracy, and that accuracy; O(M log M).

    Candidates: midpoints between consecutive distinct distances, plus one below the smallest and
    one above the largest. Ties between candidates go to the smallest threshold.
    """
    d, g = _check(dist, is_genuine)
    u, inv = np.unique(d, return_inverse=True)
    gen_le = np.cumsum(np.bincount(inv, weights=g, minlength=len(u)))
    imp_le = np.cumsum(np.bincount(inv, weights=~g, minlength=len(u)))
    n_imp = imp_le[-1]
    # correct[0]: threshold below everything (all called impostor);
    # correct[k + 1]: threshold between u[k] and u[k + 1]
    correct = np.concatenate([[n_imp], gen_le + (n_imp - imp_le)])
    cand = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1.0]])
    k = int(np.argmax(correct))
    return float(cand[k]), float(correct[k] / d.size)


def tenfold_accuracy(
    dist: np.ndarray, is_genuine: np.ndarray, *, seed: int = 0, folds: int = 10
) -> tuple[float, float, float]:
    """LFW protocol: stratified, seeded folds; threshold from the other folds; accuracy on this one.

    Returns (mean accuracy, population std of the fold accuracies, mean threshold).
    """
    d, g = _check(dist, is_genuine)
    if d.size < folds:
        raise ValueError(f"{d.size} pairs cannot be split into {folds} folds")
    rng = np.random.default_rng(seed)
    fold = np.empty(d.size, dtype=np.int64)
    for side in (np.flatnonzero(g), np.flatnonzero(~g)):
        perm = rng.permutation(side)
        fold[perm] = np.arange(perm.size) % folds
    accs, thrs = [], []
    for f in range(folds):
        test = fold == f
        thr, _ = best_threshold(d[~test], g[~test])
        accs.append(np.mean((d[test] <= thr) == g[test]))
        thrs.append(thr)
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(thrs))


# ------------------------------------------------------------------------------------------ ROC
def roc(dist: np.ndarray, is_genuine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds) with accept = dist <= threshold, thresholds ascending.

    The first point is (0, 0) at a threshold just below the smallest distance; the last is
    (1, 1) when both classes are present.
    """
    d, g = _check(dist, is_genuine)
    n_gen, n_imp = int(g.sum()), int((~g).sum())
    if n_gen == 0 or n_imp == 0:
        raise ValueError("ROC needs both genuine and impostor pairs")
    u, inv = np.unique(d, return_inverse=True)
    tar = np.cumsum(np.bincount(inv, weights=g, minlength=len(u))) / n_gen
    far = np.cumsum(np.bincount(inv, weights=~g, minlength=len(u))) / n_imp
    thr = np.concatenate([[np.nextafter(u[0], -np.inf)], u])
    return np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), thr


def auc(dist: np.ndarray, is_genuine: np.ndarray) -> float:
    """Area under the ROC curve (trapezoid), 1 for perfectly separated classes."""
    far, tar, _ = roc(dist, is_genuine)
    return float(np.trapezoid(tar, far))


def eer(dist: np.ndarray, is_genuine: np.ndarray) -> float:
    """Equal error rate: FAR = FRR, linearly interpolated between the two ROC points around it."""
    far, tar, _ = roc(dist, is_genuine)
    gap = (1.0 - tar) - far  # FRR - FAR, falls from 1 to -1 along ascending thresholds
    k = int(np.argmax(gap <= 0))
    if k == 0:
        return float(far[0])
    t = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(far[k - 1] + t * (far[k] - far[k - 1]))


def _far_key(far: float) -> str:
    """1e-2 -> "1e-02"; a target that short form would round (0.25) keeps its digits."""
    short = f"{far:.0e}"
    return short if float(short) == far else f"{far:g}"


def tar_at_far(
    dist: np.ndarray, is_genuine: np.ndarray, fars: tuple[float, ...] = (1e-2, 1e-3)
) -> dict[str, float]:
    """TAR at the largest threshold whose FAR does not exceed each target (no interpolation).

    Keys are "1e-02"-style. A target below 1 / n_impostor can only be met at FAR 0.
    """
    far, tar, _ = roc(dist, is_genuine)
    out = {}
    for f in fars:
        k = int(np.searchsorted(far, f, side="right")) - 1  # far ascending, far[0] = 0
        out[_far_key(f)] = float(tar[k])
    return out


def verification_report(dist: np.ndarray, is_genuine: np.ndarray, seed: int = 0) -> dict:
    """Every number above in one JSON-ready dict.

    Accuracies count pairs, so with all pairs (far more impostors than genuine) they mostly
    measure impostor rejection; sample equal sides (make_pairs(n_pairs=...)) for LFW-like numbers.
    """
    d, g = _check(dist, is_genuine)
    thr_ms = threshold_mean_std(d[g])
    acc10, acc10_std, thr10 = tenfold_accuracy(d, g, seed=seed)
    return {
        "accuracy_mean_std": accuracy_at(d, g, thr_ms),
        "threshold_mean_std": thr_ms,
        "accuracy_10fold": acc10,
        "accuracy_10fold_std": acc10_std,
        "threshold_10fold": thr10,
        "eer": eer(d, g),
        "auc": auc(d, g),
        "tar_at_far": tar_at_far(d, g),
        "n_genuine": int(g.sum()),
        "n_impostor": int((~g).sum()),
    }


# ------------------------------------------------------------------------------------- plotting
def plot_roc(
    path: str | Path, far: np.ndarray, tar: np.ndarray, *, label: str | None = None
) -> Path:
    """ROC with a log FAR axis (the region that matters for face verification)."""
    plt = pyplot()
    far = np.asarray(far, dtype=float)
    tar = np.asarray(tar, dtype=float)
    pos = far > 0
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.plot(far[pos], tar[pos], lw=1.5, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    if label:
        ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_distance_hist(
    path: str | Path,
    dist: np.ndarray,
    is_genuine: np.ndarray,
    thresholds: dict[str, float] | None = None,
) -> Path:
    """Genuine and impostor distance histograms with named threshold lines."""
    plt = pyplot()
    d, g = _check(dist, is_genuine)
    bins = np.linspace(d.min(), d.max(), 60) if d.max() > d.min() else 10
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.hist(d[g], bins=bins, alpha=0.6, density=True, label=f"genuine ({int(g.sum())})")
    ax.hist(d[~g], bins=bins, alpha=0.6, density=True, label=f"impostor ({int((~g).sum())})")
    for i, (name, thr) in enumerate((thresholds or {}).items()):
        ax.axvline(thr, color=f"C{i + 2}", ls="--", lw=1.2, label=f"{name} = {thr:.3f}")
    ax.set_xlabel("distance")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
