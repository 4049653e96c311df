"""Cross-identity duplicates and overlapping identities (pure: arrays in, tables out, no I/O).

Two findings, both from nearest-neighbour search with FAISS over the whole dataset:

- `cross_identity_pairs`: a face whose near neighbour carries another label, with cosine at or
  above a threshold: the same photo (or person) filed under two identities.
- `identity_overlaps`: two identities whose mean embeddings point the same way: one person split
  into two folders, or two people merged across them.

`nearest_neighbours` is the shared search (also used by `outliers`): exact inner product
(`faiss.IndexFlatIP`) by default; `index="ivf"` trades a little recall for speed on very large N
(an inverted file over spherical k-means cells, `nprobe` cells searched per query).
Search is batched over queries so memory stays at the index plus one batch of results.
"""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.sparse import csr_matrix

from facesieve.select.neardup import check_embeddings, cosine_window, exact_cosine, identity_codes

__all__ = [
    "cross_identity_pairs",
    "identity_overlaps",
    "identity_means",
    "nearest_neighbours",
    "IndexKind",
    "index_for",
]

IndexKind = Literal["flat", "ivf"]
_QUERY_BATCH = 16384
EXACT_SEARCH_MAX = 50_000  # faces; above this an exact search costs N^2 d and IVF is used


def index_for(n: int) -> IndexKind:
    """The index a whole-dataset search uses: exact up to EXACT_SEARCH_MAX faces, IVF beyond
    (on 1M faces an exact search is ~1e14 multiply-adds per pass, hours on a small machine)."""
    return "flat" if n <= EXACT_SEARCH_MAX else "ivf"


def _build_index(
    X: np.ndarray, index: IndexKind, nlist: int | None, nprobe: int, seed: int
) -> faiss.Index:
    n, d = X.shape
    if index == "flat":
        idx: faiss.Index = faiss.IndexFlatIP(d)
    elif index == "ivf":
        if nlist is None:
            nlist = int(max(1, min(2 * np.sqrt(n), n // 39)))
        if not 1 <= nlist <= n:
            raise ValueError(f"nlist must be in [1, N={n}], got {nlist}")
        quantizer = faiss.IndexFlatIP(d)
        idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        idx.cp.spherical = True
        idx.cp.seed = seed
        n_train = min(n, 64 * nlist)
        pick = np.sort(np.random.default_rng(seed).choice(n, size=n_train, replace=False))
        idx.train(np.ascontiguousarray(X[pick]))
        idx.nprobe = int(min(max(1, nprobe), nlist))
    else:
        raise ValueError(f"index must be 'flat' or 'ivf', got {index!r}")
    for s in range(0, n, 262144):
        idx.add(np.ascontiguousarray(X[s : s + 262144]))
    return idx


def nearest_neighbours(
    E: ArrayLike,
    k: int,
    *,
    index: IndexKind = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other faces of every face by cosine (self excluded).

    Returns (sims float32 (N, k'), ids int64 (N, k')) with k' = min(k, N - 1), best first.
    With an IVF index a row may find fewer than k' faces: its tail holds id -1 and sim NaN.
    When a face has exact copies, the copies are neighbours and its own row is what is dropped.
    """
    X = check_embeddings(E)
    n = X.shape[0]
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    kk = int(min(k, n - 1))
    if kk < 1:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    searcher = _build_index(X, index, nlist, nprobe, seed)
    sims = np.empty((n, kk), dtype=np.float32)
    ids = np.empty((n, kk), dtype=np.int64)
    for s in range(0, n, _QUERY_BATCH):
        q = np.ascontiguousarray(X[s : s + _QUERY_BATCH])
        D, I = searcher.search(q, kk + 1)
        own = np.arange(s, s + q.shape[0], dtype=np.int64)[:, None]
        is_self = I == own
        no_self = ~is_self.any(axis=1)
        is_self[no_self, -1] = True  # drop the weakest instead
        keep = ~is_self
        sims[s : s + q.shape[0]] = D[keep].reshape(q.shape[0], kk)
        ids[s : s + q.shape[0]] = I[keep].reshape(q.shape[0], kk)
    sims[ids < 0] = np.nan
    return sims, ids


def check_neighbours(
    neighbours: tuple[np.ndarray, np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (sims, ids) pair from `nearest_neighbours` for N faces."""
    sims, ids = (np.asarray(a) for a in neighbours)
    if sims.shape != ids.shape or sims.ndim != 2 or sims.shape[0] != n:
        raise ValueError(
            f"neighbours must be (sims, ids) of shape (N={n}, k), got {sims.shape} and {ids.shape}"
        )
    return sims, ids.astype(np.int64, copy=False)


def cross_identity_pairs(
    E: ArrayLike,
    identities: ArrayLike,
    threshold: float,
    *,
    k: int = 10,
    index: IndexKind = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Pairs of faces with different labels and cosine >= threshold.

    Each face's k nearest neighbours (over all faces) are searched, so a pair is found when one
    face is among the other's k nearest; a face with more than k closer faces (e.g. many
    same-identity near-copies) can hide a cross-identity partner: raise k then.
    `neighbours` reuses a `nearest_neighbours` result instead of searching again.

    Returns a DataFrame sorted by similarity descending, then i, j:
        i, j (int64): row indices, i < j.
        identity_i, identity_j: their labels.
        similarity (float64): cosine of the pair (float64 recomputation, not the index's).
    """
    X = check_embeddings(E)
    n = X.shape[0]
    codes, labels = identity_codes(identities, n)
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
    if neighbours is None:
        sims, ids = nearest_neighbours(X, k, index=index, nlist=nlist, nprobe=nprobe)
    else:
        sims, ids = check_neighbours(neighbours, n)
    rows = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], ids.shape)
    cand = (ids >= 0) & (sims >= threshold - cosine_window(X.shape[1]))
    i, j = rows[cand], ids[cand]
    other = codes[i] != codes[j]
    i, j = i[other], j[other]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    if lo.size:
        pairs = np.unique(np.stack([lo, hi], axis=1), axis=0)
        lo, hi = pairs[:, 0], pairs[:, 1]
    sim = exact_cosine(X, lo, hi)
    ok = sim >= threshold
    lo, hi, sim = lo[ok], hi[ok], sim[ok]
    order = np.lexsort((hi, lo, -sim))
    return pd.DataFrame(
        {
            "i": lo[order],
            "j": hi[order],
            "identity_i": labels[codes[lo[order]]],
            "identity_j": labels[codes[hi[order]]],
            "similarity": sim[order],
        }
    )


def identity_means(
    E: ArrayLike, identities: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L2-normalised mean embedding per identity: (means float32 (K, d), labels (K,), counts (K,)).

    A mean of (near) zero length (faces pointing every way) gets a zero row.
    """
    X = check_embeddings(E)
    codes, labels = identity_codes(identities, X.shape[0])
    K, d = labels.shape[0], X.shape[1]
    sums = np.zeros((K, d), dtype=np.float64)
    for s in range(0, X.shape[0], 262144):
        c = codes[s : s + 262144]
        cols = np.arange(c.shape[0])
        onehot = csr_matrix((np.ones(c.shape[0]), (c, cols)), shape=(K, c.shape[0]))
        sums += onehot @ np.asarray(X[s : s + 262144], dtype=np.float64)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    means = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 1e-12)
    return means.astype(np.float32), labels, np.bincount(codes, minlength=K)


def identity_overlaps(E: ArrayLike, identities: ArrayLike, threshold: float) -> pd.DataFrame:
    """Pairs of identities whose normalised mean embeddings have cosine >= threshold.

    All such pairs are returned (FAISS range search over the identity means, exact).

    Returns a DataFrame sorted by similarity descending, then labels:
        identity_a, identity_b: labels, identity_a < identity_b.
        n_a, n_b (int64): faces per identity.
        similarity (float64): cosine of the two normalised means.
        distance (float64): 1 - similarity.
    """
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
    means, labels, counts = identity_means(E, identities)
    K, d = means.shape
    a = b = np.zeros(0, dtype=np.int64)
    if K > 1:
        valid = np.flatnonzero(np.linalg.norm(means, axis=1) > 0)
        index = faiss.IndexFlatIP(d)
        index.add(np.ascontiguousarray(means[valid]))
        radius = float(threshold) - cosine_window(d)
        a_parts, b_parts = [], []
        for s in range(0, valid.shape[0], _QUERY_BATCH):
            q = valid[s : s + _QUERY_BATCH]
            lims, _, I = index.range_search(np.ascontiguousarray(means[q]), radius)
            src = np.repeat(q, np.diff(lims).astype(np.int64))
            a_parts.append(src)
            b_parts.append(valid[I.astype(np.int64)])
        a, b = np.concatenate(a_parts), np.concatenate(b_parts)
        keep = a < b
        a, b = a[keep], b[keep]
    sim = exact_cosine(means, a, b)
    ok = sim >= threshold
    a, b, sim = a[ok], b[ok], sim[ok]
    order = np.lexsort((b, a, -sim))
    a, b, sim = a[order], b[order], sim[order]
    return pd.DataFrame(
        {
            "identity_a": labels[a],
            "identity_b": labels[b],
            "n_a": counts[a].astype(np.int64),
            "n_b": counts[b].astype(np.int64),
            "similarity": sim,
            "distance": 1.0 - sim,
        }
    )
