"""Benchmark SDD-FIQA pseudo-labels: vectorised facesieve vs a per-image loop written like the
official gen_pseudo_labels.py (run on a subsample, extrapolated). Run by hand:

    python bench/bench_sddfiqa.py                      # 1,000,000 x 512-d in 100,000 identities
    python bench/bench_sddfiqa.py --n 200000 --ids 20000 --runs 2

Embeddings are written to a float32 .npy in a temporary folder and memory-mapped, as the pipeline
stores them. Each measurement runs in its own subprocess; peak memory is its peak RSS (VmHWM,
the same quantity as ru_maxrss without what exec inherits from the parent; it counts the
memory-mapped embedding pages touched) and, sampled every 0.2 s, its peak anonymous memory
(what the code itself allocates). Wall and CPU seconds are both given: on a busy machine the
CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_data(folder: Path, n: int, n_ids: int, dim: int, seed: int, shuffle: bool) -> None:
    """Unit vectors around per-identity centres, stored identity by identity (as a folder scan
    would) unless shuffle."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_ids, n)  # multinomial sizes, mean n / n_ids
    ids[:n_ids] = np.arange(n_ids)  # every identity present
    if not shuffle:
        ids.sort()
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = np.lib.format.open_memmap(folder / "emb.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    step = 100_000
    for s in range(0, n, step):
        c = ids[s : s + step]
        spread = rng.uniform(0.03, 0.08, size=(len(c), 1)).astype(np.float32)  # per-image quality
        x = centres[c] + spread * rng.standard_normal((len(c), dim), dtype=np.float32)
        emb[s : s + step] = x / np.linalg.norm(x, axis=1, keepdims=True)
    emb.flush()
    del emb
    np.save(folder / "ids.npy", ids)


def worker_vectorised(folder: Path, runs: int, workers: int) -> dict:
    sys.path.insert(0, str(REPO))
    from facesieve.quality.sddfiqa import sdd_fiqa_labels

    emb = np.load(folder / "emb.npy", mmap_mode="r")
    ids = np.load(folder / "ids.npy")
    t, c = time.perf_counter(), time.process_time()
    scores, report = sdd_fiqa_labels(emb, ids, runs=runs, workers=workers)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    np.save(folder / "scores.npy", scores)
    return {"seconds": seconds, "cpu_s": cpu, "n_labelled": report["n_labelled"]}


def worker_reference(folder: Path, sample: int, seed: int) -> dict:
    """One run, per image: cosine by np.dot / norms and scipy's wasserstein_distance, on the very
    partners the vectorised code samples. Generous to the loop: sampling and the official script's
    O(N) identity look-up per identity are not timed."""
    sys.path.insert(0, str(REPO))
    from scipy.stats import wasserstein_distance

    from facesieve.quality.sddfiqa import sample_comparisons

    emb = np.load(folder / "emb.npy", mmap_mode="r")
    ids = np.load(folder / "ids.npy")
    pos, neg = sample_comparisons(ids, run=0)
    rows = np.random.default_rng(seed).choice(len(ids), size=min(sample, len(ids)), replace=False)

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))

    t, c = time.perf_counter(), time.process_time()
    for i in rows:
        same = [cos(emb[i], emb[j]) for j in pos[i] if j >= 0]
        diff = [cos(emb[i], emb[j]) for j in neg[i] if j >= 0]
        if same:  # one-image identities get no label
            wasserstein_distance(same, diff)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    return {"seconds": seconds, "cpu_s": cpu, "images": int(len(rows))}


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(args: list[str]) -> dict:
    """Run this script as a worker; return its JSON plus peak memory."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    peak_anon = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak_anon
        while not done.is_set():
            peak_anon = max(peak_anon, _status_kb(proc.pid, "RssAnon"))
            time.sleep(0.2)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed with exit code {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_anon_mb"] = peak_anon / 1024
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="images")
    ap.add_argument("--ids", type=int, default=100_000, help="identities")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--workers", type=int, default=1, help="threads for the vectorised code")
    ap.add_argument("--ref-sample", type=int, default=5000, help="images timed in the loop")
    ap.add_argument("--shuffle", action="store_true", help="interleave identities on disk")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    folder = a.workdir or Path(tempfile.mkdtemp(prefix="bench_sddfiqa_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        make_data(folder, a.n, a.ids, a.dim, a.seed, a.shuffle)
        size = (folder / "emb.npy").stat().st_size / 2**30
        print(f"data: {a.n:,} x {a.dim} float32 in {a.ids:,} identities "
              f"({size:.2f} GiB, {time.perf_counter() - t:.0f} s)")  # fmt: skip
        vec = run_measured(["_vec", str(folder), str(a.runs), str(a.workers)])
        ref = run_measured(["_ref", str(folder), str(a.ref_sample), str(a.seed)])
        per_image_run = ref["seconds"] / ref["images"]
        ref_total = per_image_run * a.n * a.runs
        ref_cpu = ref["cpu_s"] / ref["images"] * a.n * a.runs
        print(f"vectorised: {vec['seconds']:.1f} s wall, {vec['cpu_s']:.1f} s CPU, {a.runs} runs "
              f"({vec['seconds'] / a.runs / a.n * 1e6:.1f} us per image per run), "
              f"peak RSS {vec['maxrss_mb']:.0f} MB (incl. mapped embeddings), "
              f"peak anonymous {vec['peak_anon_mb']:.0f} MB")  # fmt: skip
        print(f"per-image loop: {per_image_run * 1e6:.0f} us per image per run "
              f"(timed on {ref['images']:,} images), extrapolated {ref_total:.0f} s "
              f"= {ref_total / 3600:.2f} h for {a.n:,} x {a.runs} runs")  # fmt: skip
        wall_x, cpu_x = ref_total / vec["seconds"], ref_cpu / vec["cpu_s"]
        print(f"speed-up: {wall_x:.1f}x wall, {cpu_x:.1f}x CPU")
        summary = {"vectorised": vec, "reference": ref, "reference_extrapolated_s": ref_total,
                   "reference_extrapolated_cpu_s": ref_cpu}  # fmt: skip
        print(json.dumps(summary))
    finally:
        if a.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)


def _worker() -> None:
    kind, folder = sys.argv[1], Path(sys.argv[2])
    if kind == "_vec":
        res = worker_vectorised(folder, int(sys.argv[3]), int(sys.argv[4]))
    else:
        res = worker_reference(folder, int(sys.argv[3]), int(sys.argv[4]))
    # VmHWM: this process image's peak RSS. ru_maxrss would also count the parent's RSS at fork.
    res["maxrss_mb"] = _status_kb(os.getpid(), "VmHWM") / 1024
    use = resource.getrusage(resource.RUSAGE_SELF)
    res["ru_maxrss_mb"] = use.ru_maxrss / 1024
    res["cpu_s_process"] = use.ru_utime + use.ru_stime  # includes loading; robust to a busy machine
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_vec", "_ref"):
        _worker()
    else:
        main()
