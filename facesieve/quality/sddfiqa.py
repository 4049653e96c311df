"""SDD-FIQA (Ou et al., "SDD-FIQA: Unsupervised Face Image Quality Assessment
with Similarity Distribution Distance", CVPR 2021): the pseudo-labels, vectorised and chunked, and the
"sdd-fiqa" quality method over them (`SddFiqa`, at the end).

A face is good when its similarities to other photos of the same person sit far above its
similarities to photos of other people. Per image and per run:

- up to ``n_pos`` (24) same-identity images, sampled without replacement, the image itself excluded;
  identities with fewer than ``n_pos + 1`` images use all their other images (as the official
  ``gen_samepeople_Similarity`` does: ``pick_num = min(fix_num, len(compared_index))``);
- ``n_neg`` (24) images of other identities, sampled uniformly from the whole dataset without
  replacement (the official code rejects same-identity and repeated draws); when fewer than
  ``n_neg`` such images exist, all of them;
- raw = 1-D Wasserstein distance between the two empirical similarity samples (cosine), with
  ``scipy.stats.wasserstein_distance`` semantics (unsigned, sizes may differ);
- raw scores are min-max normalised to [0, 100] over all labelled images *within each run*, and the
  label is the mean of the ``runs`` (12) normalised runs. This is the official order
  (``norm_labels`` runs inside the 12-run loop, the mean is taken afterwards and not re-normalised),
  so the final labels lie inside [0, 100] but need not reach either end.

Differences from the official script, all deliberate: one-image identities get NaN (the official
code asserts and stops) and are listed in the report; a run whose raw scores are all equal
(max == min) normalises to 0 instead of 0/0; the random stream is numpy's, seeded per
(seed, run, block of ``BLOCK`` identity-sorted positions), so labels are reproducible and do not
depend on ``chunk``. Because the Wasserstein distance is unsigned, an image whose same-identity
similarities lie far *below* its impostor similarities would also score high; with real embeddings
impostor similarities sit near 0, so a mislabelled face lands near the bottom, as intended.

Memory: O(N) arrays (about 60 bytes per image: identity codes, order, inverse norms, raw and
summed scores), O(chunk * (n_pos + n_neg)) sampled indices and similarities, the embeddings of
the identities a chunk touches (at most ``_SPAN_ROWS`` rows) and 128 rows' partners at a time;
never an N x N matrix. Embeddings may be a read-only ``np.memmap``: 5 M x 512 float32 (10 GB on
disk) then needs well under 1 GB of the process's own memory, the rest is reclaimable page cache.
Measured (bench/bench_sddfiqa.py, 1 M x 512 in 100 k identities): 112 MB peak anonymous memory.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

BLOCK = 1024
"""Identity-sorted positions per random stream; ``chunk`` is rounded up to a multiple of it."""

_GATHER_ROWS = 128
"""Rows whose partners are gathered at once: about 128 * 48 * 2 KB = 12 MB, cache sized."""

_SPAN_ROWS = 131072
"""Largest identity span (rows) copied per chunk for local same-identity look-ups."""

_DENSE_FACTOR = 4
"""Pools up to ``_DENSE_FACTOR * k`` are sampled by random keys, larger ones by rejection."""


@dataclass(frozen=True)
class _Groups:
    """Images sorted by identity: positions starts[a] .. starts[a] + counts[a] hold identity a."""

    labels: np.ndarray  # (K,) identity values
    order: np.ndarray  # (N,) image index at each sorted position
    sorted_codes: np.ndarray  # (N,) identity code at each sorted position
    starts: np.ndarray  # (K,)
    counts: np.ndarray  # (K,)

    @property
    def n(self) -> int:
        return int(self.order.shape[0])


def _group(identities: np.ndarray) -> _Groups:
    ids = np.asarray(identities)
    if ids.ndim != 1:
        raise ValueError(f"identities must be one-dimensional, got shape {ids.shape}")
    labels, codes = np.unique(ids, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64, copy=False)
    order = np.argsort(codes, kind="stable").astype(np.int64, copy=False)
    counts = np.bincount(codes, minlength=len(labels)).astype(np.int64)
    starts = np.zeros_like(counts)
    np.cumsum(counts[:-1], out=starts[1:])
    return _Groups(labels, order, codes[order], starts, counts)


def _distinct(rng: np.random.Generator, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row r, min(k, pool[r]) distinct values from range(pool[r]), uniformly, no repeats.

    Returns (values (R, k) int64, valid (R, k) bool). Rows whose pool fits in k take the whole pool;
    small pools use random keys; large pools draw k values and redraw duplicates until none are
    left. Every branch treats the pool's items symmetrically, so each k-subset is equally likely.
    """
    pool = np.asarray(pool, dtype=np.int64)
    r = pool.shape[0]
    out = np.zeros((r, k), dtype=np.int64)
    col = np.arange(k)
    valid = col[None, :] < pool[:, None]

    whole = pool <= k
    out[whole] = np.where(valid[whole], col[None, :], 0)

    dense = (~whole) & (pool <= _DENSE_FACTOR * k)
    if dense.any():
        width = _DENSE_FACTOR * k
        keys = rng.random((int(dense.sum()), width))
        keys[np.arange(width)[None, :] >= pool[dense][:, None]] = 2.0  # never among the k smallest
        out[dense] = np.argpartition(keys, k - 1, axis=1)[:, :k]

    sparse = pool > _DENSE_FACTOR * k
    if sparse.any():
        hi = pool[sparse][:, None]
        d = rng.integers(0, hi, size=(hi.shape[0], k))
        d.sort(axis=1)
        while True:
            dup = d[:, 1:] == d[:, :-1]
            rows = dup.any(axis=1)
            if not rows.any():
                break
            sub = d[rows]
            redraw = np.zeros_like(sub, dtype=bool)
            redraw[:, 1:] = dup[rows]
            fresh = rng.integers(0, hi[rows], size=sub.shape)
            sub[redraw] = fresh[redraw]
            sub.sort(axis=1)
            d[rows] = sub
        out[sparse] = d
    return out, valid


def _block_rng(seed: int, run: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, run, block]))


def _sample_block(
    g: _Groups, p0: int, p1: int, rng: np.random.Generator, n_pos: int, n_neg: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Samples for sorted positions p0..p1 as sorted positions: (pos, pos_valid, neg, neg_valid)."""
    p = np.arange(p0, p1, dtype=np.int64)
    a = g.sorted_codes[p0:p1]
    n_a = g.counts[a]
    s_a = g.starts[a]
    rank = p - s_a
    jp, vp = _distinct(rng, n_a - 1, n_pos)
    pos = s_a[:, None] + jp + (jp >= rank[:, None])  # skip the image itself
    jn, vn = _distinct(rng, g.n - n_a, n_neg)
    neg = jn + np.where(jn >= s_a[:, None], n_a[:, None], 0)  # skip the identity's block
    pos[~vp] = -1
    neg[~vn] = -1
    return pos, vp, neg, vn


def _sample_range(
    g: _Groups, c0: int, c1: int, *, run: int, seed: int, n_pos: int, n_neg: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Samples for sorted positions c0..c1 (c0 a multiple of BLOCK), block by block."""
    parts = [
        _sample_block(g, b0, min(b0 + BLOCK, c1), _block_rng(seed, run, b0 // BLOCK), n_pos, n_neg)
        for b0 in range(c0, c1, BLOCK)
    ]
    return tuple(np.concatenate(x) for x in zip(*parts))  # type: ignore[return-value]


def _check_counts(n_pos: int, n_neg: int, runs: int, seed: int) -> None:
    for name, v in (("n_pos", n_pos), ("n_neg", n_neg), ("runs", runs)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def sample_comparisons(
    identities: np.ndarray, *, run: int, n_pos: int = 24, n_neg: int = 24, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The exact comparison partners ``sdd_fiqa_labels`` uses in run ``run``, per image.

    Returns (pos (N, n_pos), neg (N, n_neg)) image indices, -1 where fewer were available.
    O(N * (n_pos + n_neg)) memory: meant for checking and for reference implementations.
    """
    _check_counts(n_pos, n_neg, 1, seed)
    g = _group(identities)
    pos_s, _, neg_s, _ = _sample_range(g, 0, g.n, run=run, seed=seed, n_pos=n_pos, n_neg=n_neg)
    pos = np.full((g.n, n_pos), -1, dtype=np.int64)
    neg = np.full((g.n, n_neg), -1, dtype=np.int64)
    pos[g.order] = np.where(pos_s >= 0, g.order[np.maximum(pos_s, 0)], -1)
    neg[g.order] = np.where(neg_s >= 0, g.order[np.maximum(neg_s, 0)], -1)
    return pos, neg


def wasserstein_rows(
    u: np.ndarray, u_valid: np.ndarray, v: np.ndarray, v_valid: np.ndarray
) -> np.ndarray:
    """Row-wise 1-D Wasserstein distance between the valid entries of u[r] and v[r].

    Same value as ``scipy.stats.wasserstein_distance(u[r][u_valid[r]], v[r][v_valid[r]])``: the
    integral of |U - V| over the merged sorted values, with U, V the empirical CDFs. Rows with no
    valid entry on either side give NaN.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u_valid = np.asarray(u_valid, dtype=bool)
    v_valid = np.asarray(v_valid, dtype=bool)
    vals = np.concatenate([np.where(u_valid, u, np.nan), np.where(v_valid, v, np.nan)], axis=1)
    srt = np.argsort(vals, axis=1, kind="stable")  # NaN padding sorts last
    x = np.take_along_axis(vals, srt, axis=1)
    from_u = np.concatenate([u_valid, np.zeros_like(v_valid)], axis=1)
    from_v = np.concatenate([np.zeros_like(u_valid), v_valid], axis=1)
    cu = np.cumsum(np.take_along_axis(from_u, srt, axis=1), axis=1)
    cv = np.cumsum(np.take_along_axis(from_v, srt, axis=1), axis=1)
    m = u_valid.sum(axis=1)
    n = v_valid.sum(axis=1)
    cu = cu[:, :-1] / np.maximum(m, 1)[:, None]
    cv = cv[:, :-1] / np.maximum(n, 1)[:, None]
    cdf_gap = np.abs(cu - cv)
    dx = np.nan_to_num(np.diff(x, axis=1), nan=0.0)
    w = np.sum(cdf_gap * dx, axis=1)
    w[(m == 0) | (n == 0)] = np.nan
    return w


def _inverse_norms(e: np.ndarray, rows_per_pass: int = 2048) -> np.ndarray:
    """1/||e_i|| in float64 in one streaming pass (memmap friendly); rejects zero or non-finite
    rows."""
    inv = np.empty(e.shape[0], dtype=np.float64)
    for r0 in range(0, e.shape[0], rows_per_pass):
        blk = np.asarray(e[r0 : r0 + rows_per_pass], dtype=np.float64)  # cache-sized copy
        nrm = np.sqrt(np.einsum("ij,ij->i", blk, blk))
        bad = ~np.isfinite(nrm) | (nrm == 0)
        if bad.any():
            i = r0 + int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"embedding row {i} is zero or not finite; pass only faces that were embedded"
            )
        inv[r0 : r0 + rows_per_pass] = 1.0 / nrm
    return inv


def _gather(e: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows of e at idx as float32/float64 ndarray (a plain slice when idx is a run)."""
    if idx.size and idx[-1] - idx[0] == idx.size - 1 and np.all(np.diff(idx) == 1):
        out = np.asarray(e[int(idx[0]) : int(idx[-1]) + 1])
    else:
        out = np.take(e, idx, axis=0)
    if out.dtype not in (np.float32, np.float64):
        out = out.astype(np.float32)
    return out


def _take_rows(e: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.take(e, idx, axis=0)
    return out if out.dtype in (np.float32, np.float64) else out.astype(np.float32)


def _row_dots(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """x (R, d) against g (R, k, d) -> (R, k) dot products, batched BLAS."""
    if g.dtype != x.dtype:
        dt = np.promote_types(g.dtype, x.dtype)
        g, x = g.astype(dt, copy=False), x.astype(dt, copy=False)
    return np.matmul(g, x[:, :, None])[:, :, 0]


def sdd_fiqa_labels(
    embeddings: np.ndarray,
    identities: np.ndarray,
    *,
    n_pos: int = 24,
    n_neg: int = 24,
    runs: int = 12,
    seed: int = 0,
    chunk: int = 8192,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """SDD-FIQA pseudo-labels in [0, 100] (higher is better) and a report.

    embeddings: (N, d) float array (may be a memmap; need not be unit length, cosine is used).
    identities: (N,) identity label per row (any sortable values).
    chunk: identity-sorted positions sampled at once (rounded up to a multiple of BLOCK); memory per
    chunk is about chunk * (n_pos + n_neg) * 24 bytes of indices and similarities plus the
    embeddings of the identities it touches; partners are gathered 128 rows at a time.
    workers: threads working on chunks at once (numpy's gathers, products and sorts release the
    GIL); results do not depend on it.
    progress: called with (done, total) steps, one step per chunk per run.

    Returns (scores (N,) float64, NaN for images without a label, report dict).
    """
    _check_counts(n_pos, n_neg, runs, seed)
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    e = embeddings
    if getattr(e, "ndim", 0) != 2:
        raise ValueError(f"embeddings must be two-dimensional (N, d), got shape {np.shape(e)}")
    g = _group(identities)
    if g.n != e.shape[0]:
        raise ValueError(f"{e.shape[0]} embeddings but {g.n} identities")
    chunk = -(-int(chunk) // BLOCK) * BLOCK
    n = g.n

    single = g.counts == 1
    report: dict = {
        "method": "SDD-FIQA",
        "n_images": n,
        "n_identities": int(len(g.labels)),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "runs": runs,
        "seed": seed,
        "single_image_identities": [_plain(x) for x in g.labels[single]],
        "n_pos_short": int(g.counts[(g.counts > 1) & (g.counts <= n_pos)].sum()),
        "n_neg_short": int(np.sum(g.counts[(n - g.counts) < n_neg])),
        "normalisation": "per run min-max to [0, 100] over labelled images, then mean of runs",
        "raw_range_per_run": [],
        "degenerate_runs": 0,
    }
    scores = np.full(n, np.nan)
    if n == 0:
        report.update(n_labelled=0, n_unlabelled=0)
        return scores, report

    inv = _inverse_norms(e)
    total = runs * (-(-n // chunk))
    done = 0
    acc = np.zeros(n)
    raw = np.empty(n)
    starts = range(0, n, chunk)

    def one(c0: int, run: int) -> tuple[int, np.ndarray]:
        c1 = min(n, c0 + chunk)
        return c0, _chunk_scores(e, inv, g, c0, c1, run, seed, n_pos, n_neg)

    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        for run in range(runs):
            if pool is None:
                results = (one(c0, run) for c0 in starts)
            else:
                results = pool.map(one, starts, [run] * len(starts))
            for c0, wd in results:
                raw[g.order[c0 : c0 + len(wd)]] = wd
                done += 1
                if progress is not None:
                    progress(done, total)
            _accumulate(raw, acc, report)
    finally:
        if pool is not None:
            pool.shutdown()
    scores = acc / runs
    labelled = int(np.isfinite(scores).sum())
    report.update(n_labelled=labelled, n_unlabelled=n - labelled)
    return scores, report


def _accumulate(raw: np.ndarray, acc: np.ndarray, report: dict) -> None:
    """Add one run's raw scores, min-max normalised to [0, 100] over labelled images, to acc."""
    ok = np.isfinite(raw)
    if not ok.any():
        acc[:] = np.nan
        report["raw_range_per_run"].append((float("nan"), float("nan")))
        return
    lo, hi = float(raw[ok].min()), float(raw[ok].max())
    report["raw_range_per_run"].append((lo, hi))
    if hi > lo:
        acc += (raw - lo) / (hi - lo) * 100.0
    else:
        report["degenerate_runs"] += 1
        acc += np.where(ok, 0.0, np.nan)


def _chunk_scores(
    e: np.ndarray,
    inv: np.ndarray,
    g: _Groups,
    c0: int,
    c1: int,
    run: int,
    seed: int,
    n_pos: int,
    n_neg: int,
) -> np.ndarray:
    """Raw Wasserstein scores for identity-sorted positions c0..c1 of one run."""
    pos, vp, neg, vn = _sample_range(g, c0, c1, run=run, seed=seed, n_pos=n_pos, n_neg=n_neg)
    # Same-identity partners live in the identities touched by the chunk: gather that span once
    # (a plain slice when the dataset is stored identity by identity) and index it locally,
    # unless a huge identity makes the span too big; then partners come from the full array.
    a0, a1 = g.sorted_codes[c0], g.sorted_codes[c1 - 1]
    x0, x1 = int(g.starts[a0]), int(g.starts[a1] + g.counts[a1])
    if x1 - x0 <= _SPAN_ROWS:
        span_idx = g.order[x0:x1]
        span = _gather(e, span_idx)
        span_inv = inv[span_idx]
        lp = np.where(vp, pos - x0, c0 - x0)
    else:
        span_idx = g.order[c0:c1]
        span = _gather(e, span_idx)
        span_inv = inv[span_idx]
        x0 = c0
        lp = None
    x = span[c0 - x0 : c1 - x0]
    x_inv = span_inv[c0 - x0 : c1 - x0]
    ni = g.order[np.where(vn, neg, c0)]
    if lp is None:
        pi = g.order[np.where(vp, pos, c0)]
        pos_src, pos_idx, pos_inv = e, pi, inv[pi]
    else:
        pos_src, pos_idx, pos_inv = span, lp, span_inv[lp]
    sp = np.empty(pos.shape)
    sn = np.empty(neg.shape)
    d = e.shape[1]
    # Small gathers stay in cache; one 100 MB gather per chunk runs several times slower.
    for s in range(0, x.shape[0], _GATHER_ROWS):
        rows = slice(s, s + _GATHER_ROWS)
        xs = x[rows]
        sp[rows] = _row_dots(xs, _take_rows(pos_src, pos_idx[rows].ravel()).reshape(-1, n_pos, d))
        sn[rows] = _row_dots(xs, _take_rows(e, ni[rows].ravel()).reshape(-1, n_neg, d))
    sp *= x_inv[:, None] * pos_inv
    sn *= x_inv[:, None] * inv[ni]
    return wasserstein_rows(sp, vp, sn, vn)


def _plain(x: object) -> object:
    """numpy scalar -> Python scalar, so the report serialises as JSON."""
    return x.item() if isinstance(x, np.generic) else x


# ---------------------------------------------------------------- the "sdd-fiqa" quality method
# As a `--quality` it is dataset-level (`fit`): every face's label depends on the whole dataset, so
# all faces are relabelled when the set of faces changes. Faces of one-image identities get no label
# (NaN): the selection treats them as unknown quality, the label file leaves them out and the report
# lists them.


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
