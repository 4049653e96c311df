"""The Ray engine against the local engine on the same images (default 10,000, made from
../shared/data by augmentation as bench_100k.py does; deleted afterwards).

    python bench/bench_ray.py                 # 10,000 images
    python bench/bench_ray.py --n 2000

Both runs are `facesieve run` child processes with the same options on a fresh output; the Ray
run starts its own local Ray instance with --jobs CPUs (its start-up is part of its time, and is
also measured alone). Prints both runs' total and per-stage times, their ratio, and checks that
the two manifests are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_100k import make_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

RAY_START = """
import time, ray
t0 = time.perf_counter()
ray.init(num_cpus=int(__import__("sys").argv[1]), include_dashboard=False, log_to_driver=False)
t1 = time.perf_counter()
ray.shutdown()
print(t1 - t0)
"""


def run(data: Path, out: Path, engine: str, jobs: int, extra: list[str]) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "facesieve", "run", str(data), "--out", str(out), "--json", "--no-report", "--engine", engine,
           "--jobs", str(jobs), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{engine} run failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout[proc.stdout.index("{"):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--keep-data", type=Path, default=None, help="generate into (or reuse) this folder and keep it")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("facesieve_args", nargs="*", help="extra `facesieve run` options after --, e.g. -- --keep 10")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="facesieve-ray-"))
    data = args.keep_data or tmp / "data"
    try:
        if not (args.keep_data and data.is_dir() and sum(1 for _ in data.rglob("*.jpg")) >= args.n):
            print(f"generating {args.n} images ...", file=sys.stderr)
            make_dataset(data, args.n)
        extra = args.facesieve_args or ["--keep", "10"]
        start = float(subprocess.run([sys.executable, "-c", RAY_START, str(args.jobs)], capture_output=True, text=True,
                                     check=True).stdout.strip().splitlines()[-1])
        print("local engine ...", file=sys.stderr)
        t_local, s_local = run(data, tmp / "local", "local", args.jobs, extra)
        print("ray engine ...", file=sys.stderr)
        t_ray, s_ray = run(data, tmp / "ray", "ray", args.jobs, extra)
        same = (tmp / "local" / "manifest.csv").read_bytes() == (tmp / "ray" / "manifest.csv").read_bytes()
        n = s_local["images"]
        res = {
            "images": n, "jobs": args.jobs, "ray_start_seconds": round(start, 1),
            "local": {"wall_seconds": round(t_local, 1), "images_per_second": round(n / t_local, 2), "stage_seconds": s_local["stage_seconds"]},
            "ray": {"wall_seconds": round(t_ray, 1), "images_per_second": round(n / t_ray, 2), "stage_seconds": s_ray["stage_seconds"]},
            "ray_time_vs_local": round(t_ray / t_local, 2),
            "ray_time_less_start_vs_local": round((t_ray - start) / t_local, 2),
            "manifests_identical": same,
        }
        print(json.dumps(res, indent=2))
        print(f"\n{n} images on {args.jobs} CPUs: local {t_local:.0f} s, ray {t_ray:.0f} s ({res['ray_time_vs_local']}x; "
              f"{res['ray_time_less_start_vs_local']}x without Ray's {start:.0f} s start); manifests identical: {same}")
        if args.json_out:
            args.json_out.write_text(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
