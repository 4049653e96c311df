"""Benchmark the decide passes (near-duplicates, cross-identity pairs, outliers) at scale.

Run by hand, e.g.:

    python bench/bench_decide.py --n 200000 --ids 2000 --dim 128
    python bench/bench_decide.py    # 1,000,000 faces, 10,000 identities, d = 128 and 512

Data: synthetic unit vectors shaped like face embeddings: identities of log-normally spread sizes
(a few hold thousands of faces), each a von-Mises-like cluster around its own centre with its own
spread; 2% of faces are near-copies of another face of their identity, 0.5% are filed under a
random other identity.

Each pass runs in its own subprocess, so its time and peak memory are its own: peak = the highest
resident memory during the pass minus the resident memory after loading the arrays (Linux VmHWM,
reset just before the pass). Each is compared with a brute-force baseline
measured in the same run: the full float32 similarity matrix plus a threshold scan, timed and
measured on a random subsample and extrapolated quadratically to N (printed as such).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PASSES = ("neardup", "crossid", "outliers")


def make_data(n: int, n_ids: int, d: int, seed: int, out: Path) -> dict:
    """Write E.npy (float32 unit rows), ids.npy, quality.npy under out; return a summary."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, n_ids)
    ids = np.sort(rng.choice(n_ids, size=n, p=weights / weights.sum())).astype(np.int64)
    centres = rng.standard_normal((n_ids, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.6, 0.9, n_ids).astype(np.float32)
    E = np.lib.format.open_memmap(out / "E.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 65536):
        c = ids[s : s + 65536]
        noise = rng.standard_normal((c.size, d), dtype=np.float32) / np.sqrt(d)
        x = centres[c] + spread[c, None] * noise
        E[s : s + 65536] = x / np.linalg.norm(x, axis=1, keepdims=True)
    # near-copies: a face becomes a slightly perturbed copy of the previous face of its identity
    copies = rng.choice(np.arange(1, n), size=n // 50, replace=False)
    copies = np.sort(copies[ids[copies] == ids[copies - 1]])
    copies = copies[~np.isin(copies - 1, copies)]  # the source itself stays an original
    x = E[copies - 1] + 0.05 * rng.standard_normal((copies.size, d), dtype=np.float32) / np.sqrt(d)
    E[copies] = x / np.linalg.norm(x, axis=1, keepdims=True)
    E.flush()
    labels = ids.copy()
    moved = rng.choice(n, size=n // 200, replace=False)
    labels[moved] = (labels[moved] + rng.integers(1, n_ids, moved.size)) % n_ids
    np.save(out / "ids.npy", labels)
    np.save(out / "copies.npy", copies)
    np.save(out / "moved.npy", np.sort(moved))
    np.save(out / "quality.npy", rng.random(n))
    sizes = np.bincount(labels, minlength=n_ids)
    return {
        "copies": int(copies.size),
        "moved": int(moved.size),
        "largest_identity": int(sizes.max()),
    }


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> int:
    """Start a new peak-RSS window; return the resident bytes now.

    Linux: writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS, so the peak that
    follows is the pass's own. Elsewhere fall back to ru_maxrss (a lifetime high-water mark).
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kib("VmRSS") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak() -> int:
    try:
        return _status_kib("VmHWM") * 1024
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def score_neardup(r, copies: np.ndarray, ids: np.ndarray) -> dict:
    """A copy is caught when it lands in its own source's group (not merely in some group); a
    false merge is a face dropped for a kept face of another photo (a copy's photo is its source's)."""
    group, kept = r["group"].to_numpy(), r["kept_index"].to_numpy()
    dropped = ~r["is_kept"].to_numpy()
    photo = np.arange(len(ids))
    photo[copies] = copies - 1  # make_data: a copy's source is the face before it, itself an original
    scored = copies[ids[copies] == ids[copies - 1]]  # neither side moved to another identity
    caught = (group[scored] >= 0) & (group[scored] == group[scored - 1])
    return {
        "copies": int(scored.size),
        "copies_caught": int(caught.sum()),
        "copies_in_any_group": int((group[scored] >= 0).sum()),
        "dropped": int(dropped.sum()),
        "false_merges": int((dropped & (photo != photo[kept])).sum()),
        "groups": int(group.max() + 1),
    }


def child(pass_name: str, data: Path, opts: dict) -> None:
    """Run one pass on the arrays in data and print one JSON line."""
    sys.path.insert(0, str(ROOT))
    E = np.load(data / "E.npy")
    ids = np.load(data / "ids.npy")
    quality = np.load(data / "quality.npy")
    n = E.shape[0]
    paths = np.array([f"{i}/{r:08d}.jpg" for r, i in enumerate(ids)], dtype=object)
    from facesieve.select.crossid import cross_identity_pairs
    from facesieve.select.neardup import near_duplicate_groups
    from facesieve.select.outliers import outlier_scores

    base = _reset_peak()  # after loading the data and importing the modules
    t0 = time.perf_counter()
    info: dict = {}
    if pass_name == "neardup":
        r = near_duplicate_groups(E, ids, quality, paths, opts["threshold"])
        info = score_neardup(r, np.load(data / "copies.npy"), ids)
    elif pass_name == "crossid":
        r = cross_identity_pairs(E, ids, opts["threshold"], k=opts["k"], index=opts["index"])
        info = {"pairs": len(r)}
    elif pass_name == "outliers":
        r = outlier_scores(E, ids, k=opts["k"], index=opts["index"])
        flagged = np.flatnonzero(r.is_outlier.to_numpy())
        moved = np.load(data / "moved.npy")
        hit = np.intersect1d(flagged, moved).size
        info = {
            "outliers": int(flagged.size),
            "precision": round(hit / max(flagged.size, 1), 4),
            "recall": round(hit / max(moved.size, 1), 4),
        }
    elif pass_name == "brute":
        m = min(opts["baseline_n"], n)
        pick = np.sort(np.random.default_rng(1).choice(n, size=m, replace=False))
        Es = np.ascontiguousarray(E[pick])
        best, peak = np.inf, 0
        for _ in range(3):  # best of three: the baseline should not suffer from a busy machine
            base = _reset_peak()
            t0 = time.perf_counter()
            S = Es @ Es.T
            i, j = np.nonzero(np.triu(S >= opts["threshold"], 1))
            best = min(best, time.perf_counter() - t0)
            peak = max(peak, _peak() - base)
            del S, i, j
        print(json.dumps({"pass": pass_name, "seconds": best, "peak_bytes": peak, "n": n,
                          "subsample": m}))
        return
    else:
        raise ValueError(f"unknown pass {pass_name}")
    seconds = time.perf_counter() - t0
    peak = max(_peak() - base, 0)
    print(json.dumps({"pass": pass_name, "seconds": seconds, "peak_bytes": peak, "n": n, **info}))


def run_child(pass_name: str, data: Path, opts: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", pass_name, "--data", str(data)]
    cmd += ["--opts", json.dumps(opts)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pass {pass_name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000, help="faces")
    ap.add_argument("--ids", type=int, default=10_000, help="identities")
    ap.add_argument("--dim", type=int, nargs="+", default=[128, 512], help="embedding sizes")
    ap.add_argument("--k", type=int, default=10, help="neighbours for cross-id and outliers")
    ap.add_argument("--threshold", type=float, default=0.95, help="near-dup / cross-id cosine")
    ap.add_argument(
        "--index",
        choices=["auto", "flat", "ivf"],
        default="auto",
        help="FAISS index for cross-id and outliers (auto: flat up to 50,000 faces)",
    )
    ap.add_argument("--baseline-n", type=int, default=10_000, help="brute-force subsample size")
    ap.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--opts", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.data), json.loads(args.opts))
        return

    index = args.index if args.index != "auto" else ("flat" if args.n <= 50_000 else "ivf")
    opts = {"threshold": args.threshold, "k": args.k, "index": index, "baseline_n": args.baseline_n}
    print(
        f"N={args.n:,} identities={args.ids:,} k={args.k} threshold={args.threshold} "
        f"index={index} cores={os.cpu_count()} load={os.getloadavg()[0]:.1f}"
    )
    for d in args.dim:
        with tempfile.TemporaryDirectory(prefix="facesieve-bench-") as tmp:
            t0 = time.perf_counter()
            summary = make_data(args.n, args.ids, d, args.seed, Path(tmp))
            print(f"\n-- d={d}: data {time.perf_counter() - t0:.1f}s {summary}")
            brute = run_child("brute", Path(tmp), opts)
            scale = (args.n / brute["subsample"]) ** 2
            b_sec, b_mem = brute["seconds"] * scale, brute["peak_bytes"] * scale
            print(
                f"brute force (full N x N float32 similarity + threshold scan), measured on "
                f"{brute['subsample']:,} faces ({brute['seconds']:.2f}s, "
                f"{brute['peak_bytes'] / 2**20:.0f} MiB), extrapolated x{scale:,.0f} (quadratic): "
                f"{b_sec:,.0f}s, {b_mem / 2**30:,.1f} GiB"
            )
            print(
                f"{'pass':<10}{'seconds':>10}{'peak MiB':>10}{'time/brute':>12}{'mem/brute':>11}"
                "  result"
            )
            for p in args.passes:
                r = run_child(p, Path(tmp), opts)
                skip = ("pass", "seconds", "peak_bytes", "n")
                extra = {k: v for k, v in r.items() if k not in skip}
                print(
                    f"{p:<10}{r['seconds']:>10.1f}{r['peak_bytes'] / 2**20:>10.0f}"
                    f"{r['seconds'] / b_sec:>12.2e}{r['peak_bytes'] / b_mem:>11.2e}  {extra}"
                )


if __name__ == "__main__":
    main()
