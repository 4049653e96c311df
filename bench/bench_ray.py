"""The Ray engine against the local engine on the same images (default 10,000, made from
../shared/data by augmentation as bench_100k.py does; deleted afterwards).

    python bench/bench_ray.py                 # 10,000 images
    python bench/bench_ray.py --n 2000 --repeat 2 -- --keep 10

Both runs are `facesieve run` child processes with the same options on a fresh output; the Ray
run starts its own local Ray instance with --jobs CPUs (its start-up is part of its time, and is
also measured alone). The two alternate `--repeat` times (medians are reported), so a machine
shared with other work slows both alike. Prints both runs' total and per-stage times, the CPU
seconds of each run's whole process tree (Ray's raylet, GCS and workers included: on a loaded
machine compare these, not the wall times), their ratios, the load average, and checks that the
manifests are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_100k import make_dataset, run_measured  # noqa: E402

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
    """(wall seconds, summary + "cpu_seconds" of the run's process tree) of one fresh run."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "facesieve", "run", str(data), "--out", str(out), "--json", "--no-report", "--engine", engine,
           "--jobs", str(jobs), *extra]
    stdout, wall, _, cpu = run_measured(cmd, f"{engine} run", cwd=REPO, every=0.2)
    summary = json.loads(stdout[stdout.index("{"):])
    summary["cpu_seconds"] = cpu
    return wall, summary


def _engine_seconds(summary: dict) -> float:
    """Seconds of the stages an engine runs (scan's hashing, the faces pass); the rest is the same
    code on the same tables whichever engine ran."""
    return summary["stage_seconds"]["scan"] + summary["stage_seconds"]["faces"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=1, help="local and Ray runs, alternating (medians reported)")
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
        load = [os.getloadavg()[0]]
        local, rays = [], []
        for r in range(args.repeat):
            print(f"[{r + 1}/{args.repeat}] local engine ...", file=sys.stderr)
            local.append(run(data, tmp / "local", "local", args.jobs, extra))
            print(f"[{r + 1}/{args.repeat}] ray engine ...", file=sys.stderr)
            rays.append(run(data, tmp / "ray", "ray", args.jobs, extra))
            load.append(os.getloadavg()[0])
        same = (tmp / "local" / "manifest.csv").read_bytes() == (tmp / "ray" / "manifest.csv").read_bytes()
        n = local[0][1]["images"]

        def med(runs, f):
            return statistics.median(f(w, s) for w, s in runs)

        t_local, t_ray = med(local, lambda w, s: w), med(rays, lambda w, s: w)
        c_local, c_ray = med(local, lambda w, s: s["cpu_seconds"]), med(rays, lambda w, s: s["cpu_seconds"])
        e_local, e_ray = med(local, lambda w, s: _engine_seconds(s)), med(rays, lambda w, s: _engine_seconds(s))
        res = {
            "images": n, "jobs": args.jobs, "repeat": args.repeat, "ray_start_seconds": round(start, 1),
            "load_average_1min": [round(x, 1) for x in load],
            "local": {"wall_seconds": [round(w, 1) for w, _ in local], "images_per_second": round(n / t_local, 2),
                      "cpu_seconds": [round(s["cpu_seconds"], 1) for _, s in local], "stage_seconds": local[-1][1]["stage_seconds"]},
            "ray": {"wall_seconds": [round(w, 1) for w, _ in rays], "images_per_second": round(n / t_ray, 2),
                    "cpu_seconds": [round(s["cpu_seconds"], 1) for _, s in rays], "stage_seconds": rays[-1][1]["stage_seconds"]},
            "ray_time_vs_local": round(t_ray / t_local, 2),
            "ray_time_less_start_vs_local": round((t_ray - start) / t_local, 2),
            "ray_engine_stages_vs_local": round(e_ray / e_local, 2),
            "ray_cpu_vs_local": round(c_ray / c_local, 2),
            "manifests_identical": same,
        }
        print(json.dumps(res, indent=2))
        print(f"\n{n} images on {args.jobs} CPUs (load average {min(load):.1f}-{max(load):.1f}): local {t_local:.0f} s, "
              f"ray {t_ray:.0f} s ({res['ray_time_vs_local']}x; {res['ray_time_less_start_vs_local']}x without Ray's {start:.0f} s "
              f"start; scan + faces {res['ray_engine_stages_vs_local']}x); CPU of the process tree: local {c_local:.0f} s, "
              f"ray {c_ray:.0f} s ({res['ray_cpu_vs_local']}x); manifests identical: {same}")
        if args.json_out:
            args.json_out.write_text(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
