"""Benchmark facesieve.select.subset by hand: speed at scale, objective gap, vectorisation gain.

    python bench/bench_subset.py            # everything (several minutes: the reference is slow)
    python bench/bench_subset.py --quick    # smaller gap instances

Prints wall and CPU seconds. On a shared machine set OPENBLAS_NUM_THREADS=1: with other jobs
running, multi-threaded BLAS spin-waits and wall times inflate many-fold.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time

import numpy as np

from facesieve.select.subset import select_subset


def identity(n: int, d: int, rng: np.random.Generator, outliers: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic identity: unit vectors around a centre, a few near-copies and outliers
    (mislabelled faces), quality weights in [0.2, 1] with some zeros (unknown quality)."""
    c = rng.normal(size=d)
    c /= np.linalg.norm(c)
    E = c + rng.normal(size=(n, d)) * rng.uniform(0.4, 0.9) / np.sqrt(d)
    copies = rng.uniform(size=n) < 0.1
    src = rng.integers(n, size=copies.sum())
    E[copies] = E[src] + rng.normal(size=(copies.sum(), d)) * 0.02 / np.sqrt(d)
    out = rng.uniform(size=n) < outliers
    E[out] = rng.normal(size=(out.sum(), d)) / np.sqrt(d)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    q = rng.uniform(0.2, 1.0, n) * (rng.uniform(size=n) > 0.05)
    return E, q


def timed(fn, *args, **kwargs):
    w, c = time.perf_counter(), time.process_time()
    res = fn(*args, **kwargs)
    return res, time.perf_counter() - w, time.process_time() - c


def naive_exhaustive(E: np.ndarray, q: np.ndarray, k: int) -> tuple[tuple, float]:
    """FaceDuplicationFilter-style baseline: a Python loop over every subset."""
    best, best_s = None, math.inf
    n = len(E)
    for S in itertools.combinations(range(n), k):
        m = E[list(S)].mean(axis=0)
        rest = np.setdiff1d(np.arange(n), S)
        dist = np.linalg.norm(E[rest] - m, axis=1)
        w = q[rest]
        s = float((w * dist).sum() / w.sum()) if w.sum() > 0 else float(dist.mean())
        if s < best_s:
            best, best_s = S, s
    return best, best_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller objective-gap instances")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}  cpus={os.cpu_count()}")

    print("\n== speed (method=auto -> local-search) ==")
    for n, k, d in [(1000, 10, 128), (5000, 50, 128), (5000, 50, 512)]:
        E, q = identity(n, d, rng)
        r, wall, cpu = timed(select_subset, E, q, k)
        print(
            f"N={n:5d} K={k:3d} d={d:3d}: {wall:6.2f} s wall {cpu:6.2f} s cpu  "
            f"score {r.score:.6f}  method {r.method}  moves scored {r.evaluated}"
        )

    print("\n== objective gap: local-search vs thorough (relative, lower is better) ==")
    cases = [(200, 5), (200, 10), (500, 10)] if args.quick else [(200, 5), (200, 10), (500, 10), (1000, 10), (1000, 20)]
    gaps = []
    for n, k in cases:
        for rep in range(2):
            E, q = identity(n, 128, rng)
            a, wa, _ = timed(select_subset, E, q, k, method="local-search", seed=rep)
            b, wb, _ = timed(select_subset, E, q, k, method="thorough", seed=rep)
            gap = (a.score - b.score) / b.score
            gaps.append(gap)
            same = np.array_equal(a.indices, b.indices)
            print(
                f"N={n:5d} K={k:3d} rep {rep}: local {a.score:.6f} ({wa:5.2f} s)  thorough {b.score:.6f} "
                f"({wb:6.1f} s)  gap {gap:+.2e}  same subset {same}"
            )
    g = np.array(gaps)
    print(f"gap: mean {g.mean():+.2e}  max {g.max():+.2e}  local better in {(g < 0).sum()}/{len(g)}")

    print("\n== local-search vs the true optimum (exhaustive) where C(N,K) > 2M, small K ==")
    exact_cases = [(100, 4)] if args.quick else [(100, 4), (100, 4), (60, 5), (60, 5), (300, 3)]
    hits = 0
    for n, k in exact_cases:
        E, q = identity(n, 128, rng)
        a, wa, _ = timed(select_subset, E, q, k, method="local-search")
        b, wb, _ = timed(select_subset, E, q, k, method="exhaustive")
        hits += np.array_equal(a.indices, b.indices)
        print(
            f"N={n:4d} K={k}: local {a.score:.6f} ({wa:5.2f} s)  exhaustive {b.score:.6f} over "
            f"{b.evaluated} subsets ({wb:5.1f} s)  gap {(a.score - b.score) / b.score:+.2e}"
        )
    print(f"optimum found in {hits}/{len(exact_cases)}")

    print("\n== vectorised exhaustive vs naive per-subset Python loop ==")
    n, k, d = 24, 4, 128
    E, q = identity(n, d, rng)
    (S_naive, s_naive), w_naive, _ = timed(naive_exhaustive, E, q, k)
    r, w_vec, _ = timed(select_subset, E, q, k, method="exhaustive")
    agree = tuple(r.indices.tolist()) == tuple(S_naive)
    print(
        f"N={n} K={k} d={d} ({math.comb(n, k)} subsets): naive {w_naive:.3f} s, vectorised {w_vec:.4f} s, "
        f"ratio {w_naive / w_vec:.0f}x, same subset {agree} (score {r.score:.6f} vs {s_naive:.6f})"
    )
    n, k = 60, 4
    E, q = identity(n, d, rng)
    r, w_vec, _ = timed(select_subset, E, q, k, method="exhaustive")
    print(
        f"N={n} K={k} d={d}: exhaustive over {r.evaluated} subsets in {w_vec:.2f} s "
        f"({r.evaluated / w_vec / 1e6:.2f} M subsets/s)"
    )


if __name__ == "__main__":
    main()
