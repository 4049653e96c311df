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
are given, Hamming(phash_x, phash_c) <= phash_max_bits and cosine(x, c) >= phash_min_sim ("phash"),
or, when a pixel check is given, cosine(x, c) >= pixel_min_sim and the check accepts the pair
("pixels": the face-crop test of select/samephoto.py in runs). The second and third signals
exist because re-encoded, resized or cropped copies of a photo and other photos of the same person
overlap in cosine, so one cosine cut cannot separate them. The hash also matches distinct shots
of one sitting (ORL, video frames); the pixel check does not, so runs use it by default and the
hash only without it (docs/thresholds.md). The pixel check is asked only about a face's few
nearest faces (nearest_pairs), which bounds its cost.

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
    the mirrored image) a mirrored copy matches too: min(d(a, b), d(mirror(a), b)); with four (then
    the picture inside its frame and its mirror, imaging.all_image_hashes) the lesser of the two
    views' distances, so a copy given a frame meets its source by its picture."""
    if ph.ndim == 1:
        return popcount64(ph[a] ^ ph[b])
    d = np.minimum(popcount64(ph[a, 0] ^ ph[b, 0]), popcount64(ph[a, 1] ^ ph[b, 0]))
    for v in range(2, ph.shape[1] - 1, 2):
        d = np.minimum(d, np.minimum(popcount64(ph[a, v] ^ ph[b, v]), popcount64(ph[a, v + 1] ^ ph[b, v])))
    return d


def hash_block(ph: np.ndarray, rows, cols) -> np.ndarray:
    """Hamming distances between the hashes of `rows` and of `cols` (indices or a slice of the rows
    of ph, (n, 1), (n, 2) or (n, 4)), a rows x cols block, as hash_distance."""
    D = popcount64(ph[rows, 0][:, None] ^ ph[None, cols, 0])
    if ph.shape[1] > 1:
        D = np.minimum(D, popcount64(ph[rows, 1][:, None] ^ ph[None, cols, 0]))
    for v in range(2, ph.shape[1] - 1, 2):
        D = np.minimum(D, np.minimum(popcount64(ph[rows, v][:, None] ^ ph[None, cols, v]), popcount64(ph[rows, v + 1][:, None] ^ ph[None, cols, v])))
    return D


def _as_phash(phash: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(phash)
    if arr.ndim not in (1, 2) or arr.shape[0] != n or (arr.ndim == 2 and arr.shape[1] not in (2, 4)):
        raise ValueError(f"phash must have shape ({n},), ({n}, 2) or ({n}, 4), got {arr.shape}")
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
    pixels=None,
    pixel_min_sim: float = 1.0,
    pixel_pairs: set | None = None,
    any_cosine: set | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Leader clustering of X's rows, visited in row order; returns each row's centre row and,
    for rows matched by the pixel check, its residual (NaN otherwise).

    `pixels(centre_row, row)` -> (is_copy, residual, ...): asked only for pairs at or above
    pixel_min_sim that neither the cosine nor the hash rule takes, and only while the row is
    still unassigned, and only for pairs in `pixel_pairs` (each face with its nearest neighbours),
    so the (costly) check runs at most a few times per face. Pairs in `any_cosine` (i < j; the
    whole-image hash pairs) go to the check whatever their cosine."""
    n = X.shape[0]
    low = np.array(sorted(any_cosine or ()), np.int64).reshape(-1, 2)
    low = np.concatenate([low, low[:, ::-1]])
    centre = np.full(n, -1, dtype=np.int64)
    residual = np.full(n, np.nan)
    floor = min(threshold, phash_min_sim) if ph is not None else threshold
    if pixels is not None:
        floor = min(floor, pixel_min_sim)
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
        maybe = np.zeros_like(dup)
        r, c = np.nonzero(dup)
        if r.size and floor < threshold:
            sure = at_least(S[r, c], X, rows[r], cols[c], threshold)
            if ph is not None:
                by_hash = hash_distance(ph, rows[r], cols[c]) <= phash_max_bits
                sure |= by_hash & at_least(S[r, c], X, rows[r], cols[c], phash_min_sim)
            ro, co = r[~sure], c[~sure]  # open pairs: only the pixel check may still take them
            if pixels is not None:
                maybe[ro, co] = at_least(S[ro, co], X, rows[ro], cols[co], pixel_min_sim)
            dup[ro, co] = False
        if pixels is not None and low.size:
            rpos, cpos = np.full(n, -1), np.full(n, -1)
            rpos[rows], cpos[cols] = np.arange(rows.size), np.arange(cols.size)
            sel = (rpos[low[:, 0]] >= 0) & (cpos[low[:, 1]] >= 0)
            lr, lc = rpos[low[sel, 0]], cpos[low[sel, 1]]
            maybe[lr, lc] |= ~dup[lr, lc]
        del S
        for bi in np.flatnonzero(dup.any(axis=1) | maybe.any(axis=1)):
            p = rows[bi]
            if centre[p] >= 0:
                continue
            centre[p] = p
            take = cols[dup[bi]]
            centre[take[centre[take] < 0]] = p
            for q in cols[maybe[bi]]:
                if centre[q] < 0 and (pixel_pairs is None or (min(p, q), max(p, q)) in pixel_pairs):
                    is_copy, res = pixels(int(p), int(q))[:2]
                    if is_copy:
                        centre[q] = p
                        residual[q] = res
        lone = rows[centre[rows] < 0]
        centre[lone] = lone
        start = stop
    return centre, residual


def _join_closest(centre: np.ndarray, residual: np.ndarray, pairs: list[tuple[int, int]], pixels, partner: np.ndarray) -> None:
    """Move each face the pixel check grouped into the group of the face it is closest to.

    Leader clustering gives a face to the first centre that takes it: a copy of a video frame can
    join another frame (consecutive frames score as low as copies) while its own source stays
    apart. A face with a candidate partner that the check also groups with it, at a lower score
    than its centre, follows that partner's group (the partner's centre, as it stands when the
    closest pairs are taken first). Only faces that are not centres move, so who is kept does
    not change, only which kept face a removed one is attributed to. `pairs`: input rows the
    check scored (their scores are cached); `pixels.peek(i, j)`, when the check has it, asks
    without counting the pair as grouped. `partner[q]`: the face q's score is now to."""
    if not pairs:
        return
    ask = getattr(pixels, "peek", pixels)
    best: dict[int, tuple[float, int]] = {}  # face -> (score, partner) of its closest grouped partner
    for i, j in pairs:
        for q, o in ((i, j), (j, i)):
            if centre[q] != q and centre[q] != o and residual[q] == residual[q]:  # q grouped by the check
                ok, s = ask(int(o), int(q))[:2]
                if ok and s < residual[q] and (s, o) < best.get(q, (np.inf, -1)):
                    best[q] = (s, o)
    for q, (s, o) in sorted(best.items(), key=lambda kv: kv[1]):
        if centre[o] != centre[q]:  # a centre never moves, so o's group is o's centre as it stands
            centre[q] = centre[o]
            residual[q] = s
            partner[q] = o


def _join_copies(centre: np.ndarray, residual: np.ndarray, pairs: list[tuple[int, int]], pixels, partner: np.ndarray,
                 rows: np.ndarray) -> None:
    """Move each lone kept face that is the same photo as a grouped face into that face's group.

    Leader clustering can leave a copy on its own: its source was taken, as a near-identical shot,
    by another face visited earlier (a video frame), and once taken the source takes no one, so
    the copy, which that face does not group, is kept beside it. One photo is one photo whatever
    group it is in, so the copy follows its source (the closest such partner first). Only the
    check's same-photo decision on the pair's own evidence moves a face (`pixels.same_photo(o, q,
    outright=True)`, where the check has it: a near-identical shot of a shot would drift, and a
    rule that judges the pair against the identity's other photos errs on a studio series' close
    shots, which a chain would compound), and only a face that no other face has joined, so every
    group still has its centre. Two faces left alone stay so: the grouping asked about them.
    `rows`: the identity's faces (input rows), the pairs' own; `partner` as in _join_closest."""
    same = getattr(pixels, "same_photo", None)
    if same is None or not pairs:
        return
    ask = getattr(pixels, "peek", pixels)
    kept, counts = np.unique(centre[rows], return_counts=True)  # the identity's groups only: this runs once an identity
    members = dict(zip(kept.tolist(), counts.tolist()))
    best: dict[int, tuple[float, int]] = {}
    for i, j in pairs:
        for q, o in ((i, j), (j, i)):
            if centre[q] == q and members[q] == 1 and members[centre[o]] > 1:  # q alone, o grouped (the cheap test first)
                ok, s = ask(int(o), int(q))[:2]
                if ok and (s, o) < best.get(q, (np.inf, -1)) and same(int(o), int(q), outright=True):
                    best[q] = (s, o)
    for q, (s, o) in sorted(best.items(), key=lambda kv: kv[1]):
        target = centre[o]
        if members[q] == 1 and centre[q] == q and target != q:  # still alone (no face has joined it since)
            centre[q] = target
            residual[q] = s
            partner[q] = o
            members[q] -= 1
            members[target] += 1


_PREFETCH_BATCH = 1024  # pixel pairs gathered (over whole identities) before they are computed together


def _band_pairs(X, ph, idx, pairs, threshold, phash_min_sim, phash_max_bits) -> list[tuple[int, int]]:
    """The pairs (input rows) that the grouping may ask the pixel check about: nearest pairs that
    neither the cosine nor the hash rule decides."""
    if not pairs:
        return []
    ij = np.array(sorted(pairs), dtype=np.int64)
    i, j = idx[ij[:, 0]], idx[ij[:, 1]]
    cos = exact_cosine(X, i, j)
    open_ = cos < threshold
    if ph is not None:
        open_ &= ~((hash_distance(ph, i, j) <= phash_max_bits) & (cos >= phash_min_sim))
    return list(zip(i[open_].tolist(), j[open_].tolist()))


def hash_pairs(ph: np.ndarray, bits: int, k: int, block_size: int = DEFAULT_BLOCK_SIZE) -> set:
    """Pairs (i, j), i < j, whose whole-image hashes (ph: (n, 2), hash and mirrored hash; or (n, 4),
    then the picture's inside its frame: hash_distance) differ in
    at most `bits` bits, j among i's k closest by hash or i among j's. A copy whose face the
    embedder misreads (a small, dark or covered face: cosine to its source down to 0.2) keeps its
    image's hash, so it still meets its source; the face-crop test then decides."""
    n = ph.shape[0]
    out: set = set()
    if n < 2 or k < 1 or bits < 0:
        return out
    b = max(1, min(block_size, _MAX_BLOCK_ELEMENTS // n))
    for s in range(0, n, b):
        rows = np.arange(s, min(n, s + b))
        D = hash_block(ph, rows, slice(None))
        D[np.arange(rows.size), rows] = 65
        kk = min(k, n - 1)
        top = np.argpartition(D, kk - 1, axis=1)[:, :kk]
        for r, row in enumerate(top):
            i = int(rows[r])
            for j in row[D[r, row] <= bits]:
                out.add((min(i, int(j)), max(i, int(j))))
    return out


FLOOR_SHARE = 0.1  # hash_floors: the low quantile of a face's hash distances to its identity's other faces
FLOOR_LEAST = 4  # ... taken over at least this many other faces (fewer: no floor)
FLOOR_MOST = 512  # ... and at most this many (an even spread of the identity's faces)


def hash_floors(ph: np.ndarray, labels: ArrayLike) -> np.ndarray:
    """Each face's hash floor: the FLOOR_SHARE quantile of the Hamming distances (mirror-aware)
    from its image's hash to the hashes of its identity's other faces; NaN where the identity has
    fewer than FLOOR_LEAST others.

    Why: how much two close hashes say depends on how spread the identity's photos are. Web photos
    of a person from many sources sit 20-30 bits apart, so a pair within a few bits is one photo;
    a studio series (one backdrop, one framing: ORL, yaleB, a video's frames) keeps most of its
    photos within a few bits of each other, and there a close hash says nothing. The low quantile
    (not the median) is what a distinct photo can come down to; a face's own few copies are under
    it only where they are more than FLOOR_SHARE of the identity. Large identities are compared
    with an even spread of FLOOR_MOST of their faces (deterministic)."""
    ph = np.asarray(ph, np.uint64).reshape(len(ph), -1)
    codes, _ = identity_codes(labels, len(ph))
    out = np.full(len(ph), np.nan)
    order = np.argsort(codes, kind="stable")
    for idx in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
        if len(idx) <= FLOOR_LEAST:
            continue
        ref = idx if len(idx) <= FLOOR_MOST + 1 else idx[np.linspace(0, len(idx) - 1, FLOOR_MOST + 1).astype(np.int64)]
        for s in range(0, len(idx), 256):
            rows = idx[s : s + 256]
            D = hash_block(ph, rows, ref)
            itself = rows[:, None] == ref[None, :]
            D[itself] = 65  # not the face itself: sorted last, past the others
            D.sort(axis=1)
            # the quantile of each row's others (linear between order statistics, as np.quantile)
            at = FLOOR_SHARE * (len(ref) - itself.sum(axis=1) - 1)
            lo = np.floor(at).astype(np.int64)
            hi = np.minimum(lo + 1, D.shape[1] - 1)
            below, above = (np.take_along_axis(D, x[:, None], axis=1)[:, 0] for x in (lo, hi))
            out[rows] = below + (at - lo) * (above - below)
    return out


def nearest_pairs(X: np.ndarray, k: int, floor: float, block_size: int = DEFAULT_BLOCK_SIZE) -> set:
    """Pairs (i, j), i < j, where j is among i's k most similar rows or i among j's, with cosine
    >= floor. Bounds the pixel checks to at most 2k per face: a copy's source is among its nearest
    faces (copies' cosine to their source: p5 0.915; distinct photos: median 0.786, SFace)."""
    return nearest_of(X, np.arange(X.shape[0]), k, floor, block_size)


def nearest_of(X: np.ndarray, queries: np.ndarray, k: int, floor: float = -np.inf, block_size: int = DEFAULT_BLOCK_SIZE) -> set:
    """Pairs (i, j), i < j, where j is among query row i's k most similar rows of X, with
    similarity >= floor; the queries taken in blocks (the answer does not depend on them)."""
    out: set = set()
    n = X.shape[0]
    queries = np.asarray(queries, np.int64)
    if n < 2 or k < 1 or not len(queries):
        return out
    k = min(k, n - 1)
    b = max(1, min(block_size, _MAX_BLOCK_ELEMENTS // n))
    for s in range(0, len(queries), b):
        q = queries[s : s + b]
        S = X[q] @ X.T
        S[np.arange(len(q)), q] = -np.inf
        top = np.argpartition(-S, k - 1, axis=1)[:, :k]
        for r, (i, row) in enumerate(zip(q.tolist(), top)):
            for j in row[S[r, row] >= floor].tolist():
                out.add((min(i, j), max(i, j)))
    return out


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
    pixels=None,
    pixel_min_sim: float = 1.0,
    pixel_neighbours: int = 4,
    pixel_hashes: ArrayLike | None = None,
    pixel_hash_bits: int = -1,
    pixel_nearest: int = 0,
    pixel_view_nearest: int = 0,
    progress=None,
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
        pixels: optional image check, called as pixels(i, j) with two input rows (the centre
            first) -> (is_copy, score); the face-crop test, samephoto.SamePhotoCheck. Asked for pairs at or above
            pixel_min_sim that neither the cosine nor the hash rule takes.
        pixel_min_sim: cosine floor for a pair to be given to the pixel check.
        pixel_neighbours: a pair goes to the pixel check only when one face is among the other's
            this many most similar faces of the identity (bounds the checks to 2x this per face).
        pixel_hashes, pixel_hash_bits: optional (N, 2) or (N, 4) whole-image hashes (hash, mirrored
            hash[, the picture's inside its frame, mirrored]: hash_distance);
            pairs within pixel_hash_bits of each other (each face's pixel_neighbours closest) also
            go to the pixel check, whatever their cosine (hash_pairs).
        pixel_nearest: each face's this many nearest faces also go to the pixel check, whatever
            their cosine; given to its prefetch as `companions` (pairs that are not the
            neighbour-ratio rule's references: a far face would move every ratio it joins).
        pixel_view_nearest: each tight face (its aligned crop mostly outside its image:
            `pixels.tight(rows)`) also meets this many nearest faces of its identity by its crop's spectrum
            (`pixels.spectra(rows)`, samephoto.crop_spectrum), as companions: what lies outside
            the image (its repeated edge, a copy's frame) moves a tight face's embedding, not its
            crop. Only identities holding a tight face are looked at.
        progress: optional callable, given the number of faces grouped as identities finish.

    Returns a DataFrame, one row per input row, same order:
        group (int64): -1 for faces with no near-duplicate; else numbered by identity (sorted
            label order), then by the keep order of the group's kept face.
        is_kept (bool): the group's centre, or a face with no near-duplicate.
        kept_index (int64): row of the kept face of the group (itself when kept).
        similarity (float64): cosine to the kept face; NaN for kept faces.
        signal (str): why a dropped face is a duplicate: "embedding", "phash", "both" or
            "pixels" (re-made from the kept face by one edit); "" for kept faces.
        phash_distance (int64): Hamming distance to the kept face's hash; -1 when not a dropped
            face or no hashes were given.
        group_size (int64): faces in the group (1 for faces with no near-duplicate).
        pixel_residual (float64): the pixel check's score for faces it grouped (to the face that took
            them: the centre, or the closer partner whose group they joined), else NaN.
        partner_index (int64): that closer partner's row, for a dropped face whose score is to it
            rather than to its kept face; else -1.
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

    hp = None if pixel_hashes is None or pixel_hash_bits < 0 else _as_phash(pixel_hashes, n).reshape(n, -1)
    if hp is not None and hp.shape[1] == 1:
        hp = np.repeat(hp, 2, axis=1)
    order = np.lexsort((rank, codes))
    bounds = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1], True])
    centre = np.arange(n, dtype=np.int64)
    pixel_residual = np.full(n, np.nan)
    partner = np.full(n, -1, dtype=np.int64)  # the face a grouped face's crop score is to, where not its kept face
    pending: list[tuple[np.ndarray, set | None, set | None, set | None]] = []
    queued = 0

    def flush() -> None:
        """Group the pending identities; their pixel pairs are prefetched together first (on the
        check's worker processes, when it has them)."""
        band = [_band_pairs(X, ph, idx, pairs, threshold, phash_min_sim, phash_max_bits) for idx, pairs, _, _ in pending]
        prefetch = getattr(pixels, "prefetch", None)
        if prefetch is not None:
            companions = {(int(idx[i]), int(idx[j])) for idx, _, _, extra in pending for i, j in (extra or ())}
            every = [pair for pairs in band for pair in pairs]
            if companions:
                prefetch(every, {p for p in every if p in companions or p[::-1] in companions})
            else:
                prefetch(every)
        for (idx, pairs, low, _), scored in zip(pending, band):
            local, res = _leaders(
                np.ascontiguousarray(X[idx]),
                None if ph is None else ph[idx],
                float(threshold),
                float(phash_min_sim),
                int(phash_max_bits),
                int(block_size),
                None if pixels is None else (lambda p, q, idx=idx: pixels(int(idx[p]), int(idx[q]))),
                float(pixel_min_sim),
                pairs,
                low,
            )
            centre[idx] = idx[local]
            pixel_residual[idx] = res
            if pixels is not None:
                _join_closest(centre, pixel_residual, scored, pixels, partner)
                _join_copies(centre, pixel_residual, scored, pixels, partner, idx)
            if progress is not None:
                progress(len(idx))
        pending.clear()

    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a < 2:
            if progress is not None:
                progress(int(b - a))
            continue
        idx = order[a:b]
        pairs = None if pixels is None else nearest_pairs(X[idx], int(pixel_neighbours), float(pixel_min_sim), int(block_size))
        low = extra = None
        if pairs is not None and hp is not None:
            low = hash_pairs(hp[idx], int(pixel_hash_bits), int(pixel_neighbours), int(block_size)) - pairs
            pairs |= low
        if pairs is not None and pixel_nearest > 0:
            extra = nearest_pairs(X[idx], int(pixel_nearest), -1.0, int(block_size)) - pairs
            pairs |= extra
            low = (low or set()) | extra
        if pairs is not None and pixel_view_nearest > 0:
            tight = np.flatnonzero(pixels.tight(idx))
            if len(tight):
                by_view = nearest_of(pixels.spectra(idx), tight, int(pixel_view_nearest)) - pairs
                pairs |= by_view
                low = (low or set()) | by_view
                extra = (extra or set()) | by_view
        pending.append((idx, pairs, low, extra))
        queued += len(pairs or ()) + 1
        if queued >= _PREFETCH_BATCH:
            flush()
            queued = 0
    flush()

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
    by_pixels = ~np.isnan(pixel_residual[d_rows])
    signal[d_rows[by_pixels]] = "pixels"
    via = np.where(dropped & (partner != centre), partner, -1)  # a closer face of the group the score is to

    reason = np.full(n, "no near-duplicate", dtype=object)
    for r in np.flatnonzero(group_size > 1):
        if not dropped[r]:
            reason[r] = f"kept: best of {group_size[r]} near-duplicates"
            continue
        text = f"near-duplicate of row {centre[r]} (cosine {similarity[r]:.3f}"
        if phash_distance[r] >= 0:
            text += f", phash {phash_distance[r]} bits"
        if not np.isnan(pixel_residual[r]):
            text += f", crop score {pixel_residual[r]:.3f}" + (f" to row {via[r]}" if via[r] >= 0 else "")
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
            "pixel_residual": pixel_residual,
            "partner_index": via,
            "reason": pd.Series(reason, dtype=object),
        }
    )
