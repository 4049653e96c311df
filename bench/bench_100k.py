"""A large run: N images (default 100,000) made from ../shared/data by augmentation, cleaned by
`facesieve run`; prints the total time, the time per stage, the peak memory and the run's
decisions (counts per action/reason, pixel-check pairs and copies; the output itself is deleted).

    python bench/bench_100k.py                 # 100,000 images
    python bench/bench_100k.py --n 10000       # a smaller run
    python bench/bench_100k.py --n 10000 --keep-data /tmp/aug10k   # keep the generated set

The images are generated into a temporary folder (deleted afterwards, with the run's output): every
real photo of the shared sets (84 identities) is the seed of many variants (rotation, scale, shift,
flip, brightness and contrast, blur, noise, JPEG quality), spread evenly over the 84 identities, so
identities hold hundreds to thousands of faces with dense near-duplicates, as scraped sets do.

Memory: ru_maxrss of the children (the largest single process of the run) and, sampled every
0.25 s, the sum of the resident memory of the run's whole process tree (main + workers).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SOURCES = ("orl_att40", "essex_faces94_19", "yaleB_cropped10", "seed_vggface/dataset", "deepface13")
MAX_SIDE = 320  # big web photos are scaled down first, to the size of a typical face-set image


def source_images() -> list[tuple[str, list[Path]]]:
    """(identity, image paths) for every identity of the shared sets."""
    out = []
    for name in SOURCES:
        for ident in sorted(p for p in (SHARED / name).iterdir() if p.is_dir()):
            files = sorted(f for f in ident.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".pgm", ".webp", ".bmp"))
            if files:
                out.append((f"{name.split('/')[0]}-{ident.name}", files))
    return out


_cache: dict[str, np.ndarray] = {}


def _load(path: Path) -> np.ndarray:
    key = str(path)
    if key not in _cache:
        from facesieve.imaging import load_rgb

        rgb = load_rgb(path)
        s = MAX_SIDE / max(rgb.shape[:2])
        if s < 1:
            rgb = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)
        _cache[key] = rgb
    return _cache[key]


def augment(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One variant of a photo, and the JPEG quality to save it at."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-12, 12), rng.uniform(0.88, 1.12))
    m[:, 2] += rng.uniform(-0.05, 0.05, 2) * (w, h)
    out = cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        out = np.ascontiguousarray(out[:, ::-1])
    out = cv2.convertScaleAbs(out, alpha=rng.uniform(0.75, 1.25), beta=rng.uniform(-25, 25))
    if rng.random() < 0.2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.8))
    if rng.random() < 0.2:
        out = np.clip(out + rng.normal(0, rng.uniform(3, 10), out.shape), 0, 255).astype(np.uint8)
    return out, int(rng.integers(60, 96))


def _make_block(args: tuple[int, int, str, int]) -> int:
    start, stop, root, seed = args
    ids = source_images()
    for n in range(start, stop):
        rng = np.random.default_rng([seed, n])
        ident, files = ids[n % len(ids)]
        rgb, quality = augment(_load(files[int(rng.integers(len(files)))]), rng)
        folder = Path(root) / ident
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"{n:07d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return stop - start


def make_dataset(root: Path, n: int, seed: int = 0, jobs: int | None = None) -> float:
    """Write n augmented images under root/<identity>/; returns the seconds it took."""
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    blocks = [(s, min(s + 500, n), str(root), seed) for s in range(0, n, 500)]
    with mp.get_context("forkserver").Pool(jobs or os.cpu_count()) as pool:
        done = 0
        for k in pool.imap_unordered(_make_block, blocks):
            done += k
            print(f"\r  generated {done}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return time.perf_counter() - t0


class TreeMemory:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread; also
    their CPU time (the last sample of each process: pool workers are not always reaped by the
    run itself, so getrusage of the children misses them)."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every, self.peak = pid, every, 0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.is_set():
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            cpu: dict[int, float] = {}
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    with open(f"/proc/{d}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    parents[int(d)] = int(fields[1])
                    rss[int(d)] = int(fields[21]) * page
                    cpu[int(d)] = (int(fields[11]) + int(fields[12])) / tick
                except (OSError, IndexError, ValueError):
                    continue
            tree, frontier = {self.pid}, [self.pid]
            while frontier:
                p = frontier.pop()
                kids = [c for c, pp in parents.items() if pp == p and c not in tree]
                tree.update(kids)
                frontier.extend(kids)
            self.peak = max(self.peak, sum(rss.get(p, 0) for p in tree))
            for p in tree:
                if p in cpu:
                    self._cpu[p] = max(self._cpu.get(p, 0.0), cpu[p])
            self._stop.wait(self.every)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_measured(cmd: list[str], what: str, cwd: Path | None = None, every: float = 0.25) -> tuple[str, float, int, float]:
    """Run a child process to the end: (its stdout, wall seconds, peak RSS of its process tree,
    CPU seconds of its process tree, sampled every `every` s); stops the bench with its stderr
    when it fails. bench_ray and bench_throughput time their runs with it too."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mem = TreeMemory(proc.pid, every=every)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    tree_peak = mem.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return stdout, wall, tree_peak, mem.cpu_seconds


def run_facesieve(data: Path, out: Path, extra: list[str]) -> dict:
    """`facesieve run` as a child process: its summary, wall time and memory peaks."""
    cmd = [sys.executable, "-m", "facesieve", "run", str(data), "--out", str(out), "--json", "--no-report", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    stdout, wall, tree_peak, cpu = run_measured(cmd, "facesieve run", cwd=REPO)
    summary = json.loads(stdout[stdout.index("{"):])
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"summary": summary, "wall": wall, "ru_maxrss_kib": maxrss, "ru_maxrss_before_kib": before, "tree_peak_bytes": tree_peak,
            "cpu_seconds": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="images to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-data", type=Path, default=None, help="generate into (or reuse) this folder and keep it")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the figures here")
    ap.add_argument("facesieve_args", nargs="*", help="extra `facesieve run` options, after --, e.g. -- --keep 10")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="facesieve-100k-"))
    data = args.keep_data or tmp / "data"
    try:
        if args.keep_data and data.is_dir() and sum(1 for _ in data.rglob("*.jpg")) >= args.n:
            gen = 0.0
        else:
            print(f"generating {args.n} images into {data} ...", file=sys.stderr)
            gen = make_dataset(data, args.n, args.seed)
        extra = args.facesieve_args or ["--keep", "10"]
        print(f"facesieve run {' '.join(extra)} ...", file=sys.stderr)
        r = run_facesieve(data, tmp / "out", extra)
        s = r["summary"]
        n_img = s["images"]
        stages = s["stage_seconds"]
        figures = {
            "images": n_img, "identities": s["identities"], "faces": s["faces"], "generate_seconds": round(gen, 1),
            "wall_seconds": round(r["wall"], 1), "run_seconds": s["seconds"], "images_per_second": round(n_img / r["wall"], 2),
            "stage_seconds": stages, "stage_images_per_second": {k: round(n_img / v, 1) for k, v in stages.items() if v > 0},
            # the decisions, printed here because the output is deleted below: removals per reason
            # (near_duplicate, exact_duplicate, ...) and the pixel check's pairs and copies
            "decisions": s["by_reason"], "duplicate_check": s.get("duplicate_check"),
            "peak_rss_largest_process_gib": round(r["ru_maxrss_kib"] / 2**20, 3),
            "peak_rss_process_tree_gib": round(r["tree_peak_bytes"] / 2**30, 3),
            "rss_target_gib": 4.0,
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_at_end": os.getloadavg(),
        }
        print(json.dumps(figures, indent=2))
        print(f"\n{n_img} images in {r['wall']:.0f} s ({n_img / r['wall']:.1f} images/s); peak RSS: largest process "
              f"{figures['peak_rss_largest_process_gib']:.2f} GiB, whole tree {figures['peak_rss_process_tree_gib']:.2f} GiB "
              f"(target < 4 GiB: {'met' if max(figures['peak_rss_largest_process_gib'], figures['peak_rss_process_tree_gib']) < 4 else 'NOT met'})")
        if args.json_out:
            args.json_out.write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
