"""Identity-by-identity mean cosine similarity: a matrix a person can read to spot confusable
identities (bright off-diagonal cells) and loose identities (a dim diagonal cell).

Computed from per-identity sums of unit vectors, so the cost is O(N d + K^2 d), never N x N:
M_ab = s_a . s_b / (n_a n_b) and, without self pairs,
M_aa = (|s_a|^2 - sum_i |e_i|^2) / (n_a (n_a - 1)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesieve.figures import pyplot, save_figure

MAX_IDENTITIES = 20_000
"""A K x K float64 matrix of 20,000 identities is 3.2 GB; more is refused."""


def identity_similarity_matrix(
    embeddings: np.ndarray, identities: np.ndarray, *, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """(labels (K,), M (K, K) float64): mean pairwise cosine within / across identities.

    Rows are normalised here. The diagonal excludes self pairs and is NaN for one-face identities.
    Labels are sorted (np.unique order).
    """
    ids = np.asarray(identities)
    if ids.ndim != 1 or getattr(embeddings, "ndim", 0) != 2 or embeddings.shape[0] != ids.shape[0]:
        raise ValueError(
            "need (N, d) embeddings and (N,) identities, "
            f"got {np.shape(embeddings)} and {ids.shape}"
        )
    labels, codes = np.unique(ids, return_inverse=True)
    codes = codes.reshape(-1)
    k, d = len(labels), embeddings.shape[1]
    if k > MAX_IDENTITIES:
        raise ValueError(
            f"{k} identities would make a {k} x {k} matrix; pass a subset "
            f"(at most {MAX_IDENTITIES} identities)"
        )
    sums = np.zeros((k, d), dtype=np.float64)
    sq = np.zeros(k, dtype=np.float64)
    for s in range(0, ids.shape[0], chunk):
        e = np.asarray(embeddings[s : s + chunk], dtype=np.float64)
        nrm = np.linalg.norm(e, axis=1)
        if np.any(nrm == 0) or not np.all(np.isfinite(nrm)):
            raise ValueError("zero or non-finite embedding; pass only faces that were embedded")
        e = e / nrm[:, None]
        c = codes[s : s + chunk]
        _add_rows(sums, c, e)
        sq += np.bincount(c, weights=np.einsum("ij,ij->i", e, e), minlength=k)
    n = np.bincount(codes, minlength=k).astype(np.float64)
    m = (sums @ sums.T) / np.outer(n, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        diag = (np.einsum("ij,ij->i", sums, sums) - sq) / (n * (n - 1))
    diag[n < 2] = np.nan
    m[np.diag_indices(k)] = diag
    return labels, m


def _add_rows(sums: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
    """sums[codes[i]] += e[i] via a sort and reduceat (np.add.at is slow for many rows)."""
    order = np.argsort(codes, kind="stable")
    c = codes[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sums[c[starts]] += np.add.reduceat(e[order], starts, axis=0)


def cluster_order(m: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering on 1 - M, so similar identities sit together."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    m = np.asarray(m, dtype=np.float64)
    k = m.shape[0]
    if m.ndim != 2 or m.shape[1] != k:
        raise ValueError(f"M must be square, got shape {m.shape}")
    if k < 3:
        return np.arange(k)
    dist = 1.0 - (m + m.T) / 2.0
    dist = np.nan_to_num(dist, nan=1.0)
    np.fill_diagonal(dist, 0.0)
    dist = np.clip(dist, 0.0, None)
    return leaves_list(linkage(squareform(dist, checks=False), method="average"))


def plot_matrix(
    path: str | Path,
    labels: np.ndarray,
    m: np.ndarray,
    *,
    order: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Heat map of M; the figure grows with the number of identities so 40+ labels stay readable.

    order: a permutation (e.g. from cluster_order); NaN cells (one-face identities) show grey.
    """
    plt = pyplot()

    m = np.asarray(m, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    if order is not None:
        order = np.asarray(order)
        m = m[np.ix_(order, order)]
        labels = labels[order]
    k = m.shape[0]
    side = float(np.clip(2.0 + 0.22 * k, 5.0, 40.0))
    font = float(np.clip(11.0 - k / 12.0, 4.0, 9.0))
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=110)
    cmap = plt.colormaps["viridis"].with_extremes(bad="lightgrey")
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=np.nanmin(m), vmax=np.nanmax(m))
    ticks = np.arange(k)
    if k <= 400:
        ax.set_xticks(ticks, labels, rotation=90, fontsize=font)
        ax.set_yticks(ticks, labels, fontsize=font)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cb.set_label("mean cosine similarity")
    ax.set_title(title or f"identity similarity ({k} identities)")
    return save_figure(fig, path)
