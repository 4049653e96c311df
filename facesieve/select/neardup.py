"""Near-duplicate groups within each identity (pure: arrays in, a table out, no I/O).

Grouping: leader clustering in keep order. Faces of one identity are visited best first (the
keep order of `exact.preference_rank`: quality, then path length, then path); an unassigned face
becomes a *centre* and takes every still-unassigned face that duplicates *it*. So:

- no chaining: A~B and B~C never put C with A unless C duplicates A's centre itself (single
  linkage would merge a whole slow pose sweep of video frames into one group);
- every dropped face is a duplicate of the face kept in its place, and its reason names that one
  pair and its cosine, which a person can check with two images side by side;
- the kept face is the best face of its group by construction;
- complete linkage would also stop chaining, but needs the whole within-identity matrix
  (O(n^2) memory, O(n^2 log n) time) and splits off a face that duplicates the best face but not
  some other member, keeping a duplicate that leader clustering drops;
- one pass of blocked exact products, memory bounded by the block, deterministic.

Duplicate of a centre c: cosine(x, c) >= threshold ("embedding"), or, when perceptual hashes
are given, Hamming(phash_x, phash_c) <= phash_max_bits and cosine(x, c) >= phash_min_sim ("phash").
The second signal exists because re-encoded or resized copies of a photo and other photos of the
same person overlap in cosine (measured with SFace: copies' p1 0.83, distinct photos' max 0.89),
so one cosine cut cannot separate them; the looser cosine floor stops two different people whose
crops happen to hash alike from being merged.

Exactness: products run in float32 BLAS; a pair whose float32 cosine lies within a small window of
a threshold is re-decided with a float64 dot product that does not depend on the blocking, so the
result is the same for every block size (and pair decisions are symmetric).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from facesieve.select.exact import preference_rank

__all__ = [
    "near_duplicate_groups",
    "check_embeddings",
    "identity_codes",
    "exact_cosine",
    "at_least",
    "cosine_window",
    "popcount64",
    "DEFAULT_PHASH_MAX_BITS",
    "DEFAULT_PHASH_MIN_SIM",
]

# Provisional defaults, to be calibrated on real data: 64-bit pHash copies of one photo usually
# differ in a few bits; 8 of 64 keeps false matches rare while tolerating re-encoding.
DEFAULT_PHASH_MAX_BITS = 8
DEFAULT_PHASH_MIN_SIM = 0.70
DEFAULT_BLOCK_SIZE = 1024
# Upper bound on one block's similarity matrix (elements): 2**24 float32 = 64 MiB.
_MAX_BLOCK_ELEMENTS = 1 << 24
_NORM_TOLERANCE = 1e-3


def check_embeddings(E: ArrayLike, n: int | None = None, *, name: str = "E") -> np.ndarray:
    """Return E as a float32 (N, d) array (no copy when it already is one, e.g. a memmap).

    Raises ValueError unless every row is finite and L2-normalised (|norm - 1| <= 1e-3).
    """
    arr = np.asarray(E)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, d) array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {n}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    for start in range(0, arr.shape[0], 65536):
        chunk = arr[start : start + 65536]
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64))
        bad = ~np.isfinite(norms) | (np.abs(norms - 1.0) > _NORM_TOLERANCE)
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} must hold finite L2-normalised rows; "
                f"row {row} has norm {norms[bad][0]:.6g}"
            )
    return arr


def identity_codes(identities: ArrayLike | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer code per row (0..K-1, in sorted label order) and the K labels.

    None means "one identity" (a flat folder). Missing labels (None/NaN) are an error.
    """
    if identities is None:
        return np.zeros(n, dtype=np.int64), np.array([""], dtype=object)
    arr = np.asarray(identities)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"identities must have shape ({n},), got {arr.shape}")
    series = pd.Series(arr, dtype=object)
    if series.isna().any():
        raise ValueError(f"identities has {int(series.isna().sum())} missing labels")
    try:
        codes, labels = pd.factorize(series, sort=True)
    except TypeError as exc:  # mixed, unorderable label types
        raise ValueError(f"identities must be all strings or all integers: {exc}") from None
    return codes.astype(np.int64), np.asarray(labels, dtype=object)


def exact_cosine(E: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine of the pairs (i[t], j[t]) in float64, independent of blocking and of pair order."""
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    out = np.empty(i.shape[0], dtype=np.float64)
    for s in range(0, i.shape[0], 32768):
        a = np.asarray(E[i[s : s + 32768]], dtype=np.float64)
        b = np.asarray(E[j[s : s + 32768]], dtype=np.float64)
        out[s : s + 32768] = (a * b).sum(axis=1)
    return out


def cosine_window(d: int) -> float:
    """Half-width around a threshold inside which a float32 BLAS cosine is re-checked."""
    return max(1e-4, 4.0 * d * 2.0**-24)


def at_least(
    S: np.ndarray, E: np.ndarray, rows: np.ndarray, cols: np.ndarray, t: float
) -> np.ndarray:
    """S >= t, with entries near t re-decided by `exact_cosine`.

    rows / cols: E-row indices of S's entries, broadcastable to S.shape.
    """
    decided = S >= t
    near = np.abs(S - t) <= cosine_window(E.shape[1])
    if near.any():
        r = np.broadcast_to(rows, S.shape)[near]
        c = np.broadcast_to(cols, S.shape)[near]
        decided[near] = exact_cosine(E, r, c) >= t
    return decided


def popcount64(x: ArrayLike) -> np.ndarray:
    """Number of set bits of each uint64 value, as int64."""
    arr = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(arr).astype(np.int64)
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)
    return table[arr.view(np.uint8).reshape(*arr.shape, 8)].sum(axis=-1)


def hash_distance(ph: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance between the hashes of rows a and b. With a second column (the hash of
    the mirrored image) a mirrored copy matches too: min(d(a, b), d(mirror(a), b))."""
    if ph.ndim == 1:
        return popcount64(ph[a] ^ ph[b])
    return np.minimum(popcount64(ph[a, 0] ^ ph[b, 0]), popcount64(ph[a, 1] ^ ph[b, 0]))


def _as_phash(phash: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(phash)
    if arr.ndim not in (1, 2) or arr.shape[0] != n or (arr.ndim == 2 and arr.shape[1] != 2):
        raise ValueError(f"phash must have shape ({n},) or ({n}, 2), got {arr.shape}")
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype == np.int64:
        return arr.view(np.uint64)
    try:
        return arr.astype(np.uint64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"phash must be 64-bit integers, got dtype {arr.dtype}") from None


def _leaders(
    X: np.ndarray,
    ph: np.ndarray | None,
    threshold: float,
    phash_min_sim: float,
    phash_max_bits: int,
    block_size: int,
) -> np.ndarray:
    """Leader clustering of X's rows, visited in row order; returns each row's centre row."""
    n = X.shape[0]
    centre = np.full(n, -1, dtype=np.int64)
    floor = min(threshold, phash_min_sim) if ph is not None else threshold
    start = 0
    while start < n:
        cols_all = start + np.flatnonzero(centre[start:] < 0)
        b = max(1, min(block_size, _MAX_BLOCK_ELEMENTS // max(cols_all.shape[0], 1)))
        stop = min(start + b, n)
        rows = start + np.flatnonzero(centre[start:stop] < 0)
        if rows.size == 0:
            start = stop
            continue
        cols = cols_all
        S = X[rows] @ X[cols].T
        dup = at_least(S, X, rows[:, None], cols[None, :], floor)
        dup[np.arange(rows.size), np.searchsorted(cols, rows)] = False
        if ph is not None:
            r, c = np.nonzero(dup)
            if r.size:
                by_cosine = at_least(S[r, c], X, rows[r], cols[c], threshold)
                by_hash = hash_distance(ph, rows[r], cols[c]) <= phash_max_bits
                drop = ~(by_cosine | by_hash)
                dup[r[drop], c[drop]] = False
        del S
        for bi in np.flatnonzero(dup.any(axis=1)):
            p = rows[bi]
            if centre[p] >= 0:
                continue
            centre[p] = p
            take = cols[dup[bi]]
            centre[take[centre[take] < 0]] = p
        lone = rows[centre[rows] < 0]
        centre[lone] = lone
        start = stop
    return centre


def near_duplicate_groups(
    E: ArrayLike,
    identities: ArrayLike | None,
    quality: ArrayLike,
    paths: ArrayLike,
    threshold: float,
    *,
    phash: ArrayLike | None = None,
    phash_max_bits: int = DEFAULT_PHASH_MAX_BITS,
    phash_min_sim: float = DEFAULT_PHASH_MIN_SIM,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> pd.DataFrame:
    """Group near-duplicate faces within each identity and keep the best of each group.

    Args:
        E: (N, d) float32 L2-normalised embeddings.
        identities: (N,) labels (str or int); None = all faces are one identity.
        quality: (N,) higher is better, NaN = unknown = lowest.
        paths: (N,) paths, for the keep order's tie-breaks.
        threshold: cosine at or above which a face duplicates its centre.
        phash: optional (N,) 64-bit perceptual hashes (np.uint64) for the second signal, or
            (N, 2): each image's hash and its mirror image's hash (flipped copies then match).
        phash_max_bits: Hamming distance at or below which hashes match.
        phash_min_sim: cosine floor for a hash match to count.
        block_size: rows per blocked product (capped so a block holds <= 2**24 similarities).
            Results do not depend on it.

    Returns a DataFrame, one row per input row, same order:
        group (int64): -1 for faces with no near-duplicate; else numbered by identity (sorted
            label order), then by the keep order of the group's kept face.
        is_kept (bool): the group's centre, or a face with no near-duplicate.
        kept_index (int64): row of the kept face of the group (itself when kept).
        similarity (float64): cosine to the kept face; NaN for kept faces.
        signal (str): why a dropped face is a duplicate: "embedding", "phash" or "both";
            "" for kept faces.
        phash_distance (int64): Hamming distance to the kept face's hash; -1 when not a dropped
            face or no hashes were given.
        group_size (int64): faces in the group (1 for faces with no near-duplicate).
        reason (str): the decision in words.
    """
    X = check_embeddings(E)
    n = X.shape[0]
    codes, _ = identity_codes(identities, n)
    rank = preference_rank(quality, paths)
    if rank.shape[0] != n:
        raise ValueError(f"quality/paths have {rank.shape[0]} entries, expected {n}")
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    ph = None
    if phash is not None:
        ph = _as_phash(phash, n)
        if not 0 <= int(phash_max_bits) <= 64:
            raise ValueError(f"phash_max_bits must be in [0, 64], got {phash_max_bits}")
        if not -1.0 <= float(phash_min_sim) <= 1.0:
            raise ValueError(f"phash_min_sim must be a cosine in [-1, 1], got {phash_min_sim}")

    order = np.lexsort((rank, codes))
    bounds = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1], True])
    centre = np.arange(n, dtype=np.int64)
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a < 2:
            continue
        idx = order[a:b]
        local = _leaders(
            np.ascontiguousarray(X[idx]),
            None if ph is None else ph[idx],
            float(threshold),
            float(phash_min_sim),
            int(phash_max_bits),
            int(block_size),
        )
        centre[idx] = idx[local]

    rows = np.arange(n, dtype=np.int64)
    size = np.bincount(centre, minlength=n)
    group_size = size[centre]
    dropped = centre != rows
    kept_groups = np.flatnonzero(size > 1)
    number = np.full(n, -1, dtype=np.int64)
    if kept_groups.size:
        kg = kept_groups[np.lexsort((rank[kept_groups], codes[kept_groups]))]
        number[kg] = np.arange(kg.shape[0], dtype=np.int64)
    group = np.where(group_size > 1, number[centre], -1)

    similarity = np.full(n, np.nan, dtype=np.float64)
    d_rows = rows[dropped]
    similarity[d_rows] = exact_cosine(X, d_rows, centre[d_rows])
    phash_distance = np.full(n, -1, dtype=np.int64)
    signal = np.full(n, "", dtype=object)
    by_cosine = similarity[d_rows] >= threshold
    if ph is not None:
        phash_distance[d_rows] = hash_distance(ph, d_rows, centre[d_rows])
        by_hash = (phash_distance[d_rows] <= phash_max_bits) & (
            similarity[d_rows] >= phash_min_sim
        )
    else:
        by_hash = np.zeros(d_rows.shape[0], dtype=bool)
    signal[d_rows] = np.where(by_cosine & by_hash, "both", np.where(by_hash, "phash", "embedding"))

    reason = np.full(n, "no near-duplicate", dtype=object)
    for r in np.flatnonzero(group_size > 1):
        if not dropped[r]:
            reason[r] = f"kept: best of {group_size[r]} near-duplicates"
            continue
        text = f"near-duplicate of row {centre[r]} (cosine {similarity[r]:.3f}"
        if phash_distance[r] >= 0:
            text += f", phash {phash_distance[r]} bits"
        reason[r] = text + f"; signal {signal[r]})"

    return pd.DataFrame(
        {
            "group": group,
            "is_kept": ~dropped,
            "kept_index": centre,
            "similarity": similarity,
            "signal": pd.Series(signal, dtype=object),
            "phash_distance": phash_distance,
            "group_size": group_size.astype(np.int64),
            "reason": pd.Series(reason, dtype=object),
        }
    )
