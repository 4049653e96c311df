"""Exact duplicates: the same file twice, or the same decoded pixels in two files.

Pure decision function (arrays in, a table out, no I/O). Two rows are exact duplicates when
their file bytes hash equal *or* their decoded pixels hash equal; groups are the connected
components of those two relations, so a PNG re-save of a JPEG (same pixels, other bytes) joins
the byte-identical copies of that JPEG. Identities are ignored on purpose: the same photo filed
under two people is a duplicate too (and a labelling problem the report shows).

The keep order (`preference_rank`) is shared by every facesieve decision that keeps one face of
several: best quality first (NaN = unknown = lowest), then the shortest path, then the
lexicographically smallest path, then the lower row index. The same inputs always keep the same
file, whatever order the rows come in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["exact_duplicates", "preference_rank"]


def _as_1d(values: ArrayLike, n: int | None, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")
    return arr


def preference_rank(quality: ArrayLike, paths: ArrayLike) -> np.ndarray:
    """Rank of each row in the keep order (0 = the row to keep first).

    Order: quality descending (NaN and -inf last), path length ascending, path ascending
    (code-point order), row index ascending.
    """
    q = _as_1d(quality, None, "quality").astype(np.float64)
    p = _as_1d(paths, q.shape[0], "paths")
    q_key = np.where(np.isnan(q) | np.isneginf(q), np.inf, -q)
    p_str = pd.Series(p, dtype=object).astype(str)
    p_len = p_str.str.len().to_numpy(dtype=np.int64)
    p_code, _ = pd.factorize(p_str, sort=True)
    order = np.lexsort((np.arange(q.shape[0]), p_code, p_len, q_key))
    rank = np.empty(q.shape[0], dtype=np.int64)
    rank[order] = np.arange(q.shape[0], dtype=np.int64)
    return rank


def _hash_codes(hashes: ArrayLike, n: int, name: str) -> np.ndarray:
    """Integer code per row; -1 where the hash is missing (None, NaN or empty)."""
    s = pd.Series(_as_1d(hashes, n, name), dtype=object)
    empty = s.map(lambda v: hasattr(v, "__len__") and len(v) == 0).to_numpy(dtype=bool)
    missing = s.isna().to_numpy() | empty
    codes, _ = pd.factorize(s.where(~missing, None))
    codes = codes.astype(np.int64)
    codes[missing] = -1
    return codes


def _first_row_of_code(codes: np.ndarray) -> np.ndarray:
    """For each row with a code, the lowest row index holding the same code (-1 otherwise)."""
    rep = np.full(codes.shape[0], -1, dtype=np.int64)
    valid = np.flatnonzero(codes >= 0)
    if valid.size:
        _, first = np.unique(codes[valid], return_index=True)
        first_row = np.full(codes.max() + 1, -1, dtype=np.int64)
        first_row[codes[valid][first]] = valid[first]
        rep[valid] = first_row[codes[valid]]
    return rep


def exact_duplicates(
    byte_hash: ArrayLike,
    pixel_hash: ArrayLike,
    quality: ArrayLike,
    paths: ArrayLike,
    *,
    identities: ArrayLike | None = None,
) -> pd.DataFrame:
    """Group rows whose file bytes or decoded pixels are identical and keep one per group.

    Args:
        byte_hash: (N,) hash of each file's bytes; None/NaN/"" = unknown, never matches.
        pixel_hash: (N,) hash of each decoded image (e.g. of shape + dtype + pixel bytes).
        quality: (N,) higher is better; NaN = unknown = lowest.
        paths: (N,) file paths, for the tie-breaks of the keep order.
        identities: optional (N,) labels; only used to flag groups that span identities.

    Returns a DataFrame, one row per input row, same order:
        dup_group (int64): group number, -1 for rows with no exact copy. Numbered by the lowest
            row index in the group.
        is_kept (bool): True for the kept row of a group and for every unique row.
        kept_index (int64): row index of the kept row of the group (itself when kept or unique).
        match (str): "" for unique rows; for a dropped row "bytes" when its bytes equal the kept
            row's, else "pixels"; for a kept row "bytes" when some dropped row is byte-identical to
            it, else "pixels".
        group_size (int64): rows in the group (1 for unique rows).
        cross_identity (bool): the group holds more than one identity (False without identities).
        reason (str): the decision in words.
    """
    b = _as_1d(byte_hash, None, "byte_hash")
    n = b.shape[0]
    b_code = _hash_codes(b, n, "byte_hash")
    p_code = _hash_codes(pixel_hash, n, "pixel_hash")
    rank = preference_rank(_as_1d(quality, n, "quality"), _as_1d(paths, n, "paths"))
    if n == 0:
        return _empty_result()

    rows = np.arange(n, dtype=np.int64)
    edges_src, edges_dst = [], []
    for rep in (_first_row_of_code(b_code), _first_row_of_code(p_code)):
        linked = rep >= 0
        edges_src.append(rows[linked])
        edges_dst.append(rep[linked])
    src, dst = np.concatenate(edges_src), np.concatenate(edges_dst)
    graph = coo_matrix((np.ones(src.shape[0], dtype=np.int8), (src, dst)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    comp = comp.astype(np.int64)

    size = np.bincount(comp)[comp]
    in_group = size > 1

    # Kept row per component: the lowest preference rank.
    order = np.lexsort((rank, comp))
    starts = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]])
    kept_of_comp = np.empty(comp.max() + 1, dtype=np.int64)
    kept_of_comp[comp[order][starts]] = order[starts]
    kept_index = np.where(in_group, kept_of_comp[comp], rows)
    is_kept = kept_index == rows

    # Group numbers by the lowest row index of each multi-row component.
    dup_group = np.full(n, -1, dtype=np.int64)
    if in_group.any():
        _, first = np.unique(comp[in_group], return_index=True)
        first_rows = np.sort(rows[in_group][first])
        number = np.full(comp.max() + 1, -1, dtype=np.int64)
        number[comp[first_rows]] = np.arange(first_rows.shape[0], dtype=np.int64)
        dup_group[in_group] = number[comp[in_group]]

    same_bytes = (b_code >= 0) & (b_code == b_code[kept_index])
    dropped = in_group & ~is_kept
    match = np.full(n, "", dtype=object)
    match[dropped] = np.where(same_bytes[dropped], "bytes", "pixels")
    kept_has_byte_copy = np.zeros(n, dtype=bool)
    kept_has_byte_copy[kept_index[dropped & same_bytes]] = True
    kept_in_group = in_group & is_kept
    match[kept_in_group] = np.where(kept_has_byte_copy[kept_in_group], "bytes", "pixels")

    cross = np.zeros(n, dtype=bool)
    if identities is not None and in_group.any():
        id_code, _ = pd.factorize(pd.Series(_as_1d(identities, n, "identities"), dtype=object))
        pairs = pd.DataFrame({"c": comp[in_group], "i": id_code[in_group]})
        n_ids = pairs.groupby("c")["i"].nunique()
        cross[in_group] = n_ids.reindex(comp[in_group]).to_numpy() > 1

    reason = np.full(n, "unique", dtype=object)
    for r in np.flatnonzero(in_group):
        if is_kept[r]:
            reason[r] = f"kept: best of {size[r]} exact copies"
        else:
            reason[r] = f"exact copy ({match[r]}) of row {kept_index[r]}"
        if cross[r]:
            reason[r] += "; group spans identities"

    return _frame(dup_group, is_kept, kept_index, match, np.where(in_group, size, 1), cross, reason)


def _empty_result() -> pd.DataFrame:
    empty_i = np.zeros(0, dtype=np.int64)
    empty_o = np.zeros(0, dtype=object)
    return _frame(empty_i, np.zeros(0, bool), empty_i, empty_o, empty_i, np.zeros(0, bool), empty_o)


def _frame(
    dup_group: np.ndarray,
    is_kept: np.ndarray,
    kept_index: np.ndarray,
    match: np.ndarray,
    size: np.ndarray,
    cross: np.ndarray,
    reason: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dup_group": dup_group,
            "is_kept": is_kept,
            "kept_index": kept_index,
            "match": pd.Series(match, dtype=object),
            "group_size": np.asarray(size, dtype=np.int64),
            "cross_identity": cross,
            "reason": pd.Series(reason, dtype=object),
        }
    )
