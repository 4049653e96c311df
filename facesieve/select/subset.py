"""Per-identity K-subset selection: FaceDuplicationFilter's objective, exact where feasible, scalable beyond.

For one identity with embeddings ``E`` (N, d) and quality weights ``q`` (N,) >= 0, choose the
K-subset S minimising

    score(S) = sum_{v not in S} q_v * ||mean(S) - e_v||_2  /  sum_{v not in S} q_v

(Euclidean distance, unweighted mean of S). Conventions, chosen so that every subset has a finite
score and comparisons never see NaN:

- the left-out weights all zero: the score uses uniform weights over the left-out faces (so
  ``q == 0`` everywhere behaves exactly like uniform weights);
- nothing left out (N <= K): the score is 0.0 and every face is kept (method ``"all"``);
- metric: the objective is Euclidean on whatever vectors are passed. The pipeline's cosine mode
  passes L2-normalised vectors (Euclidean distance between unit vectors is monotone in cosine);
  FaceDuplicationFilter's golden test passes raw dlib vectors.
- ties: subsets whose scores agree within 1e-12 (relative) are ranked by their sorted list of
  names, lexicographically smallest wins; without names, by their sorted index list.

Methods: ``"exhaustive"`` tries every subset in vectorised chunks (same optimum as
FaceDuplicationFilter); ``"local-search"`` is an iterated local search: best-improvement 1-swap
descent plus a Kernighan-Lin style variable-depth move at each local optimum, from several starts
(near the weighted geometric median, k-means++-like spread, random), then perturbation rounds
(random swaps, or swaps among the best non-improving ones) from the best subset found. When
scoring all K(N-K) swaps exactly would be expensive, a second-order surrogate ranks them and only
the best-ranked are scored. ``"thorough"`` is a slower reference for measuring the search's gap:
the local search plus independent runs that score swaps exactly up to a larger size, confirm
every local optimum against all swaps, and use longer chains and more starts and rounds. Effort (starts, rounds) scales with the cost of one
neighbourhood: more for small identities, whose landscapes are rugged, less for very large ones.

Swap scores come from matrix products on centred data; a move that is better only by less than
their error bound, and every reported score, is recomputed directly from differences, so ties and
near-ties are never decided on the fast, less precise values.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TIE_RTOL = 1e-12
_METHODS = ("auto", "exhaustive", "local-search", "thorough")
_BLOCK = 1 << 22  # elements per temporary block (32 MiB of float64)


@dataclass(frozen=True)
class SubsetResult:
    indices: np.ndarray  # sorted chosen indices (int64)
    score: float
    method: str  # "exhaustive" | "local-search" | "thorough" | "all" (N <= K)
    evaluated: int  # subsets scored (exhaustive) or swap moves scored by matrix products (search)


@dataclass(frozen=True)
class _Params:
    """Search effort. Counts, not time, so results are reproducible for a given seed."""

    n_starts: int
    n_kicks: int
    small_boost: int  # up to this factor more starts and rounds when one descent is cheap
    min_effort: float  # and down to this factor when it is expensive
    exact_budget: float  # K(N-K)*N*d at or below which every swap is scored exactly
    screen: int  # swaps scored exactly per step when screening with the surrogate
    screen_final: int  # ... before declaring a local optimum
    final_exact: bool  # confirm each local optimum against every swap, scored exactly
    chain: int  # longest variable-depth move tried at a local optimum (< 2: none)
    patience: float  # share of the perturbation rounds run without improving before stopping


_LOCAL = _Params(
    n_starts=4, n_kicks=32, small_boost=4, min_effort=0.125,
    exact_budget=3e7, screen=64, screen_final=512, final_exact=False, chain=6, patience=0.25,
)  # fmt: skip
_THOROUGH = _Params(
    n_starts=8, n_kicks=64, small_boost=2, min_effort=1.0,
    exact_budget=3e8, screen=256, screen_final=2048, final_exact=True, chain=12, patience=1.0,
)  # fmt: skip
_THOROUGH_RUNS = 2  # independent runs on top of the plain local search (so never worse than it)


# ----------------------------------------------------------------------------- validation


def _as_inputs(E, q) -> tuple[np.ndarray, np.ndarray]:
    E = np.asarray(E, dtype=np.float64)
    if E.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (N, d), got shape {E.shape}")
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (E.shape[0],):
        raise ValueError(f"weights must have shape ({E.shape[0]},), got {q.shape}")
    if not np.isfinite(E).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if not np.isfinite(q).all() or (q < 0).any():
        raise ValueError("weights must be finite and >= 0")
    return E, q


def _name_ranks(names: Sequence[str] | None, n: int) -> np.ndarray:
    """Rank of each face's name (ties by index): comparing sorted rank lists of two subsets is
    the same as comparing their sorted name lists."""
    if names is None:
        return np.arange(n, dtype=np.int64)
    names = [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"names has {len(names)} entries for {n} embeddings")
    order = sorted(range(n), key=lambda i: (names[i], i))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    return ranks


# ----------------------------------------------------------------------------- exact scores


def _scores_direct(E: np.ndarray, q: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """Scores of B subsets (B, K) from explicit differences: the reference numbers."""
    n, d = E.shape
    subsets = np.sort(np.asarray(subsets, dtype=np.int64), axis=1)
    b_all, k = subsets.shape
    out = np.empty(b_all, dtype=np.float64)
    if n <= k:
        out[:] = 0.0
        return out
    step = max(1, _BLOCK // max(1, n * d))
    pos = q > 0
    for s in range(0, b_all, step):
        sub = subsets[s : s + step]
        rows = np.arange(len(sub))[:, None]
        mean = E[sub].sum(axis=1) / k
        diff = mean[:, None, :] - E[None, :, :]
        dist = np.sqrt(np.einsum("bnd,bnd->bn", diff, diff))
        w = np.broadcast_to(q, dist.shape).copy()
        w[rows, sub] = 0.0
        npos = pos.sum() - pos[sub].sum(axis=1)
        num = (w * dist).sum(axis=1)
        den = w.sum(axis=1)
        u = np.ones_like(dist)
        u[rows, sub] = 0.0
        uni = (u * dist).sum(axis=1) / (n - k)
        out[s : s + step] = np.where(npos > 0, num / np.where(npos > 0, den, 1.0), uni)
    return out


def subset_score(E, q, indices) -> float:
    """score(S) for one subset, computed directly (see the module docstring for conventions)."""
    E, q = _as_inputs(E, q)
    idx = np.asarray(indices, dtype=np.int64).ravel()
    if idx.size == 0:
        raise ValueError("indices must name at least one face")
    if idx.min() < 0 or idx.max() >= len(E):
        raise ValueError(f"indices must lie in [0, {len(E)})")
    if len(np.unique(idx)) != idx.size:
        raise ValueError("indices must be distinct")
    return float(_scores_direct(E, q, idx[None, :])[0])


def _is_tie(a: float, b: float) -> bool:
    return abs(a - b) <= TIE_RTOL * max(abs(a), abs(b))


def _better(s1: float, key1: tuple, s2: float, key2: tuple) -> bool:
    """(s1, key1) beats (s2, key2): lower score, or a tie broken by the smaller name key."""
    if _is_tie(s1, s2):
        return key1 < key2
    return s1 < s2


def _key(ranks: np.ndarray, subset: np.ndarray) -> tuple:
    return tuple(np.sort(ranks[subset]).tolist())


class _Centred:
    """Data centred on its mean (the objective is translation invariant), for matrix-product
    distances with less cancellation."""

    def __init__(self, E: np.ndarray, q: np.ndarray):
        self.E = E
        self.q = q
        self.n, self.d = E.shape
        self.C = E - E.mean(axis=0)
        self.sq = np.einsum("nd,nd->n", self.C, self.C)
        self.pos = q > 0
        self.scale = float(np.sqrt(self.sq.max())) if self.n else 1.0
        self.scale = self.scale if self.scale > 0 else 1.0
        # screening tolerance: bound on matrix-product error in distances (sqrt(eps) * scale)
        self.tol = 2e-7 * self.scale

    def dist_to(self, M: np.ndarray) -> np.ndarray:
        """Euclidean distances (B, N) from rows of M to every point, by one matrix product."""
        d2 = np.einsum("bd,bd->b", M, M)[:, None] - 2.0 * (M @ self.C.T) + self.sq[None, :]
        np.maximum(d2, 0.0, out=d2)
        return np.sqrt(d2, out=d2)


# ----------------------------------------------------------------------------- exhaustive


def _exhaustive(E: np.ndarray, q: np.ndarray, k: int, ranks: np.ndarray) -> SubsetResult:
    """Every subset, in chunks: screening scores by matrix products, the near-best re-scored
    directly, ties broken by name."""
    data = _Centred(E, q)
    n = data.n
    total = math.comb(n, k)
    chunk = int(min(65536, max(256, _BLOCK // max(n, data.d))))
    G = data.C @ data.C.T if n <= 4096 and k < data.d else None
    combos = itertools.combinations(range(n), k)
    npos_all = int(data.pos.sum())
    q_tot = float(q.sum())
    best = math.inf
    keep_idx: list[np.ndarray] = []
    keep_sc: list[np.ndarray] = []
    done = 0
    while done < total:
        b = min(chunk, total - done)
        C = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, b)), dtype=np.int64, count=b * k)
        C = C.reshape(b, k)
        done += b
        rows = np.arange(b)[:, None]
        if G is not None:  # distances from Gram rows: K*N additions per subset, no d
            MC = G[C[:, 0]].copy()
            mm = np.zeros(b)
            for c in range(1, k):
                MC += G[C[:, c]]
            for c in range(k):
                mm += G[C[:, c], C[:, c]]
                for c2 in range(c + 1, k):
                    mm += 2.0 * G[C[:, c], C[:, c2]]
            D = mm[:, None] * (1.0 / k**2) - (2.0 / k) * MC + data.sq[None, :]
            np.maximum(D, 0.0, out=D)
            np.sqrt(D, out=D)
        else:
            M = np.zeros((b, data.d))
            for c in range(k):
                M += data.C[C[:, c]]
            D = data.dist_to(M / k)
        Dm = D[rows, C]
        num = D @ q - (Dm * q[C]).sum(axis=1)
        den = q_tot - q[C].sum(axis=1)
        npos = npos_all - data.pos[C].sum(axis=1)
        uni = (D.sum(axis=1) - Dm.sum(axis=1)) / (n - k)
        approx = np.where(npos > 0, num / np.where(npos > 0, np.maximum(den, 1e-300), 1.0), uni)
        thr = min(float(approx.min()), best) + 2 * data.tol
        sel = np.flatnonzero(approx <= thr)
        if sel.size == 0:
            continue
        exact = _scores_direct(E, q, C[sel])
        best = min(best, float(exact.min()))
        keep_idx.append(C[sel])
        keep_sc.append(exact)
        # prune to what can still tie with the final minimum (which is <= best)
        allsc = np.concatenate(keep_sc)
        allidx = np.concatenate(keep_idx)
        ok = allsc <= best + TIE_RTOL * abs(best)
        keep_sc, keep_idx = [allsc[ok]], [allidx[ok]]
    sc = np.concatenate(keep_sc)
    idx = np.concatenate(keep_idx)
    keys = np.sort(ranks[idx], axis=1)
    order = np.lexsort(keys.T[::-1])
    win = idx[order[0]]
    return SubsetResult(np.sort(win), float(sc[order[0]]), "exhaustive", total)


# ----------------------------------------------------------------------------- local search


def _weiszfeld(C: np.ndarray, sq: np.ndarray, w: np.ndarray, iters: int = 30) -> np.ndarray:
    """Weighted geometric median (approximate): where the optimal subset mean tends to sit."""
    if w.sum() <= 0:
        w = np.ones(len(C))
    y = w @ C / w.sum()
    for _ in range(iters):
        r = np.sqrt(np.maximum(sq - 2.0 * (C @ y) + y @ y, 0.0))
        inv = w / np.maximum(r, 1e-12 * np.sqrt(sq.max() + 1e-300))
        y = inv @ C / inv.sum()
    return y


class _Search:
    """Iterated 1-swap local search for one (E, q, k); see the module docstring."""

    def __init__(self, E, q, k, ranks, params: _Params, seed: int, deadline: float | None):
        self.data = _Centred(E, q)
        self.E, self.q, self.k, self.ranks = E, q, k, ranks
        self.p = params
        self.rng = np.random.default_rng(seed)
        self.deadline = deadline
        n, d = self.data.n, self.data.d
        cost = k * (n - k) * n * d
        self.exact_nbhd = cost <= params.exact_budget
        # effort follows the cost of one full neighbourhood, K(N-K)Nd: more starts and rounds for
        # small identities (rugged landscapes, cheap descents), fewer for very large ones
        # (at most 2x where there are few subsets at all: the search finds them easily)
        cap = params.small_boost if math.comb(n, k) > 100_000 else min(2, params.small_boost)
        f = min(float(cap), max(params.min_effort, math.sqrt(1e9 / max(cost, 1))))
        self.n_starts = max(2, round(params.n_starts * f))
        self.n_kicks = max(4, round(params.n_kicks * f))
        # perturbation rounds stop early after this many without a better subset
        self.patience = max(8, round(self.n_kicks * params.patience))
        self.evaluated = 0
        # typical step of the mean under one swap: floors 1/r in the surrogate (Huber-like)
        self.rho = max(float(np.sqrt(2.0 * self.data.sq.mean())) / k, 1e-12 * self.data.scale)
        self.kappa = 1.0 - 1.0 / d if d > 1 else 0.5

    # -- helpers
    def _timed_out(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def _exact(self, S: np.ndarray) -> float:
        return float(_scores_direct(self.E, self.q, S[None, :])[0])

    def _swap_scores(self, S, inS, m, I, J) -> np.ndarray:
        """Scores (by matrix products) of swapping out I[t] for J[t]; I == J gives the current."""
        dat, q, k, n = self.data, self.q, self.k, self.data.n
        out = ~inS
        wout = np.where(out, q, 0.0)
        q_out = float(wout.sum())
        npos0 = int((dat.pos & out).sum())
        res = np.empty(len(I))
        step = max(1, _BLOCK // max(n, dat.d))
        for s in range(0, len(I), step):
            i, j = I[s : s + step], J[s : s + step]
            rows = np.arange(len(i))
            D = dat.dist_to(m + (dat.C[j] - dat.C[i]) * (1.0 / k))
            di, dj = D[rows, i], D[rows, j]
            num = D @ wout + q[i] * di - q[j] * dj
            val = num / np.maximum(q_out + q[i] - q[j], 1e-300)
            if npos0 <= 1:  # a swap may leave only zero weights out: uniform fallback there
                npos = npos0 + dat.pos[i].astype(int) - dat.pos[j].astype(int)
                uni = (D @ out.astype(np.float64) + di - dj) / (n - k)
                val = np.where(npos > 0, val, uni)
            res[s : s + step] = val
        self.evaluated += len(I)
        return res

    def _surrogate(self, S, inS, m, GS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Second-order estimate of every swap's score in O(K(N-K) + Nd): Taylor expansion of the
        left-out distance sum around the current mean (isotropic curvature), with the face that
        joins S removed and the face that leaves S added exactly. Returns (values, I, J)."""
        dat, q, k = self.data, self.q, self.k
        C, sq = dat.C, dat.sq
        out = ~inS
        a = C @ m
        r = np.sqrt(np.maximum(sq - 2 * a + m @ m, 0.0))
        rr = np.maximum(r, self.rho)
        w = np.where(out, q / rr, 0.0)
        wsum = float(w.sum())
        g = m * wsum - C.T @ w
        ge = C @ g
        n0 = float((q * r)[out].sum())
        q_out = float(q[out].sum())
        npos0 = int((dat.pos & out).sum())

        # (K, N) arrays: rows i in S leave, columns j join (members' columns are masked below)
        G = GS
        si, ai, ri0, qi = sq[S][:, None], a[S][:, None], r[S][:, None], q[S][:, None]
        dd = (sq + si - 2.0 * G) * (1.0 / k**2)  # ||delta||^2, delta = (e_j - e_i) / k
        uj = (a - sq - ai + G) / (k * rr)  # u_j . delta: j's direction from the mean
        ri = np.sqrt(np.maximum(ri0**2 + (2.0 / k) * (a - ai + si - G) + dd, 0.0))  # i's new distance
        wj = q / rr
        num = (n0 - q * r + ge / k - q * uj + 0.5 * wj * uj**2) - ge[S][:, None] / k
        num += dd * (0.5 * self.kappa * (wsum - wj) - 0.5 * wj)
        num += qi * ri
        den = q_out + qi - q
        val = num / np.maximum(den, 1e-300)
        if npos0 <= 1:  # some swaps may leave only zero weights out: keep them neutral
            npos = npos0 + dat.pos[S][:, None].astype(int) - dat.pos.astype(int)
            val = np.where(npos > 0, val, n0 / q_out if npos0 > 0 else 0.0)
        val[:, S] = np.inf
        I = np.repeat(S, len(q))
        J = np.tile(np.arange(len(q)), k)
        return val.ravel(), I, J

    def _pick(self, S, cur, cur_key, cur_approx, vals, I, J):
        """Choose the move among scored swaps. A clear improvement (beyond the matrix-product
        error) is taken as is; near-ties are re-scored directly and ranked by (score, names).
        Returns (move or None, cur) where move = (exact score or None, key, i, j) and cur is the
        current exact score (computed here when needed, else passed through)."""
        tol = self.data.tol
        c0 = int(np.argmin(vals))
        first = vals[c0]
        if first > cur_approx + tol:
            return None, cur
        near = np.flatnonzero(vals <= first + tol)
        if first < cur_approx - tol and near.size == 1:
            T = S.copy()
            T[S == I[c0]] = J[c0]
            return (None, _key(self.ranks, T), int(I[c0]), int(J[c0])), cur
        if cur is None:
            cur = self._exact(S)
        near = near[np.argsort(vals[near], kind="stable")][:16]
        best = None
        for c in near:
            T = S.copy()
            T[S == I[c]] = J[c]
            s = self._exact(T)
            key = _key(self.ranks, T)
            if _better(s, key, cur, cur_key) and (best is None or _better(s, key, best[0], best[1])):
                best = (s, key, int(I[c]), int(J[c]))
        return best, cur

    def _promising(self, S: np.ndarray, count: int) -> list[tuple[int, int]]:
        """The `count` best-looking swaps (out i, in j) from S, by the surrogate or exactly."""
        dat, k, n = self.data, self.k, self.data.n
        inS = np.zeros(n, dtype=bool)
        inS[S] = True
        m = dat.C[S].sum(axis=0) / k
        if self.exact_nbhd:
            out_idx = np.flatnonzero(~inS)
            I, J = np.repeat(S, len(out_idx)), np.tile(out_idx, k)
            vals = self._swap_scores(S, inS, m, I, J)
        else:
            vals, I, J = self._surrogate(S, inS, m, dat.C[S] @ dat.C.T)
        count = min(count, int(np.isfinite(vals).sum()))
        top = np.argpartition(vals, count - 1)[:count]
        return [(int(I[c]), int(J[c])) for c in top]

    def _moves(self, S, inS, m, GS, exact: bool, lo: int = 0, hi: int = 0, frozen=None):
        """Scored swaps (values by matrix products, I out, J in) and the current subset's value:
        every swap when `exact`, else the surrogate's ranks lo..hi. `frozen` faces are left alone."""
        if exact:
            out_idx = np.flatnonzero(~inS if frozen is None else ~(inS | frozen))
            ins = S if frozen is None else S[~frozen[S]]
            I = np.concatenate([S[:1], np.repeat(ins, len(out_idx))])
            J = np.concatenate([S[:1], np.tile(out_idx, len(ins))])
        else:
            est, I, J = self._surrogate(S, inS, m, GS)
            if frozen is not None:
                est[frozen[I] | frozen[J]] = np.inf
            hi = min(hi, int(np.isfinite(est).sum()))
            if hi <= lo:
                return np.empty(0), I[:0], J[:0], math.inf
            part = np.argpartition(est, hi - 1)[:hi]
            sel = part[np.argsort(est[part], kind="stable")][lo:hi]
            I = np.concatenate([S[:1], I[sel]])
            J = np.concatenate([S[:1], J[sel]])
        vals = self._swap_scores(S, inS, m, I, J)
        self.evaluated -= 1
        return vals[1:], I[1:], J[1:], float(vals[0])

    def _chain(self, S, cur, cur_key):
        """Variable-depth move (Kernighan-Lin style): apply the best swap again and again, each face
        moving at most once, even uphill; return the best subset met on the way if it beats S."""
        dat, k, n = self.data, self.k, self.data.n
        depth = min(self.p.chain, k, n - k)
        T = S.copy()
        inS = np.zeros(n, dtype=bool)
        inS[T] = True
        frozen = np.zeros(n, dtype=bool)
        total = dat.C[T].sum(axis=0)
        GS = None if self.exact_nbhd else dat.C[T] @ dat.C.T
        best_val, best_T = math.inf, None
        for step in range(depth):
            vals, I, J, _ = self._moves(T, inS, total / k, GS, self.exact_nbhd, 0, self.p.screen, frozen)
            if vals.size == 0:
                break
            c = int(np.argmin(vals))
            i, j = int(I[c]), int(J[c])
            p = int(np.flatnonzero(T == i)[0])
            T[p] = j
            inS[i], inS[j] = False, True
            frozen[i] = frozen[j] = True
            total += dat.C[j] - dat.C[i]
            if GS is not None:
                GS[p] = dat.C[j] @ dat.C.T
            if step > 0 and vals[c] < best_val:
                best_val, best_T = float(vals[c]), T.copy()
        if cur is None:
            cur = self._exact(S)
        if best_T is None:
            return None, cur
        s = self._exact(best_T)
        key = _key(self.ranks, best_T)
        return ((s, key, best_T) if _better(s, key, cur, cur_key) else None), cur

    def descend(self, S: np.ndarray) -> tuple[float, np.ndarray]:
        """Best-improvement 1-swap descent from S, then variable-depth moves, to a local optimum."""
        dat, k, n = self.data, self.k, self.data.n
        S = np.array(S, dtype=np.int64)
        cur = None  # exact score, computed only when a near-tie needs it
        cur_key = _key(self.ranks, S)
        reset = True
        exact_next = confirmed = False
        for _ in range(20 * k + 200):
            if reset:
                inS = np.zeros(n, dtype=bool)
                inS[S] = True
                total = dat.C[S].sum(axis=0)
                GS = None if self.exact_nbhd else dat.C[S] @ dat.C.T
                reset = False
            m = total / k
            move = None
            if self.exact_nbhd or exact_next:
                exact_next = False
                vals, I, J, cur_approx = self._moves(S, inS, m, GS, True)
                move, cur = self._pick(S, cur, cur_key, cur_approx, vals, I, J)
            else:
                for lo, hi in ((0, self.p.screen), (self.p.screen, self.p.screen_final)):
                    vals, I, J, cur_approx = self._moves(S, inS, m, GS, False, lo, hi)
                    if vals.size:
                        move, cur = self._pick(S, cur, cur_key, cur_approx, vals, I, J)
                    if move is not None:
                        break
            if move is None:
                if not (self.exact_nbhd or not self.p.final_exact or confirmed):
                    exact_next = confirmed = True
                    continue
                chained = None
                if self.p.chain >= 2:
                    chained, cur = self._chain(S, cur, cur_key)
                if chained is None:
                    break
                cur, cur_key, S = chained
                reset = True
                continue
            confirmed = False
            cur, cur_key, i, j = move
            p = int(np.flatnonzero(S == i)[0])
            S[p] = j
            inS[i], inS[j] = False, True
            total += dat.C[j] - dat.C[i]
            if GS is not None:
                GS[p] = dat.C[j] @ dat.C.T
            if self._timed_out():
                break
        return (self._exact(S) if cur is None else cur), np.sort(S)

    # -- starts and the outer loop
    def _starts(self):
        dat, q, k, n = self.data, self.q, self.k, self.data.n
        C, sq = dat.C, dat.sq
        centre = _weiszfeld(C, sq, q)
        r2 = np.maximum(sq - 2.0 * (C @ centre) + centre @ centre, 0.0)
        yield np.argsort(r2, kind="stable")[:k]
        for t in range(1, self.n_starts):
            if t % 2 == 1:  # spread-out start: k-means++-like sampling around the centre
                chosen = np.zeros(n, dtype=bool)
                near = r2.copy()
                for _ in range(k):
                    p = np.where(chosen, 0.0, (q + 1e-12) * near)
                    total = p.sum()
                    if total > 0:
                        c = int(self.rng.choice(n, p=p / total))
                    else:
                        c = int(self.rng.choice(np.flatnonzero(~chosen)))
                    chosen[c] = True
                    near = np.minimum(near, np.maximum(sq - 2.0 * (C @ C[c]) + sq[c], 0.0))
                yield np.flatnonzero(chosen)
            else:
                yield self.rng.choice(n, size=k, replace=False)

    def run(self) -> tuple[float, np.ndarray]:
        best = None
        for S0 in self._starts():
            s, S = self.descend(S0)
            key = _key(self.ranks, S)
            if best is None or _better(s, key, best[0], best[1]):
                best = (s, key, S)
            if self._timed_out():
                return best[0], best[2]
        n, k = self.data.n, self.k
        guide = None  # the best subset's most promising swaps, recomputed when the best changes
        last_gain = 0
        for t in range(self.n_kicks):
            if self._timed_out() or t - last_gain > self.patience:
                break
            S = best[2].copy()
            top = min(3, k, n - k)
            if t % 3 == 0:  # random swaps
                size = int(self.rng.integers(1, top + 1))
                for _ in range(size):
                    inS = np.zeros(n, dtype=bool)
                    inS[S] = True
                    S[self.rng.integers(k)] = self.rng.choice(np.flatnonzero(~inS))
            else:  # near-improving swaps: leave the current basin along its flattest directions
                size = int(self.rng.integers(min(2, top), top + 1))
                if guide is None:
                    guide = self._promising(S, 4 * k + 8)
                picks = self.rng.permutation(len(guide))
                used_i, used_j = set(), set()
                for g in picks:
                    i, j = guide[g]
                    if i in used_i or j in used_j:
                        continue
                    S[S == i] = j
                    used_i.add(i)
                    used_j.add(j)
                    if len(used_i) == size:
                        break
            s, S = self.descend(S)
            key = _key(self.ranks, S)
            if _better(s, key, best[0], best[1]):
                best = (s, key, S)
                guide = None
                last_gain = t
        return best[0], best[2]


# ----------------------------------------------------------------------------- entry point


def select_subset(
    E,
    q,
    k: int,
    *,
    names: Sequence[str] | None = None,
    max_exhaustive: int = 2_000_000,
    seed: int = 0,
    time_limit: float | None = None,
    method: str = "auto",
) -> SubsetResult:
    """Choose the K-subset of one identity's faces minimising FaceDuplicationFilter's score.

    ``method``: ``"auto"`` (exhaustive when C(N, K) <= max_exhaustive, else local search),
    ``"exhaustive"``, ``"local-search"`` or ``"thorough"`` (see the module docstring).
    ``names`` (one per face, e.g. file names) break ties; default: index order.
    ``time_limit`` (seconds) stops a local search at the deadline, checked after every move, and
    returns the best subset found so far; exhaustive search ignores it. Without a time limit the
    result depends only on the inputs and ``seed``. N <= K returns every face (method ``"all"``).
    """
    E, q = _as_inputs(E, q)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}; got {method!r}")
    if time_limit is not None and time_limit <= 0:
        raise ValueError("time_limit must be positive seconds or None")
    k = int(k)
    n = len(E)
    ranks = _name_ranks(names, n)
    if n <= k:
        return SubsetResult(np.arange(n, dtype=np.int64), 0.0, "all", 0)
    if method == "auto":
        method = "exhaustive" if math.comb(n, k) <= max_exhaustive else "local-search"
    if method == "exhaustive":
        return _exhaustive(E, q, k, ranks)
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    # all weights zero: every subset falls back to uniform weights anyway
    q_search = q if (q > 0).any() else np.ones(n)
    runs = [(_LOCAL, seed)]
    if method == "thorough":
        runs += [(_THOROUGH, seed + 1 + r) for r in range(_THOROUGH_RUNS)]
    best, evaluated = None, 0
    for params, run_seed in runs:
        search = _Search(E, q_search, k, ranks, params, run_seed, deadline)
        s, S = search.run()
        evaluated += search.evaluated
        key = _key(ranks, S)
        if best is None or _better(s, key, best[0], best[1]):
            best = (s, key, S)
    S = best[2].astype(np.int64)
    return SubsetResult(S, subset_score(E, q, S), method, evaluated)
