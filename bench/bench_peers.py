"""facesieve's default run against the peer a user would pick instead (fastdup) and the plain loop.

    python bench/bench_peers.py                                   # pins_web, celeb5_web+deepface13, 10k
    python bench/bench_peers.py --sets pins_web --repeat 3
    python bench/bench_peers.py --fastdup-python /work/venv-peers/bin/python

On the same photos in the same run, alternating `--repeat` times (so a machine shared with other
work slows every side alike; compare the ratios, not the rates):

- facesieve: `facesieve run SET --out TMP` with every default (detect, align, embed, quality,
  duplicates, cross-identity, outliers, apply; no report), cold (a fresh output and workspace);
- fastdup: its duplicate search on the same folder (`fastdup.create(...).run()` with its own model
  and defaults), in its own virtual environment (fastdup is never a facesieve dependency; install
  it with `python -m venv V && V/bin/pip install fastdup`, pass `--fastdup-python V/bin/python`);
- loop: the one-image-at-a-time YuNet + SFace loop (bench_throughput.loop_sface), in this process.

Printed per set: images per second of each side, facesieve / fastdup and facesieve / loop ratios
(medians over the repeats), peak RSS of each side's whole process tree, facesieve's stage times, CPU
milliseconds per image of each side (its whole process tree; on a machine shared with other work
they are steadier than the rates) and the load average while the set ran.
Sets: `pins_web`, `celeb5_web+deepface13` (both folders side by side), `10k` (bench_100k's augmented
set of 10,000 images made from the shared sets, generated once under --tmp).
Issue 17's target: facesieve >= 1.0x fastdup's images per second on the same web photos.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_100k import make_dataset, run_facesieve, run_measured  # noqa: E402
from bench_throughput import loop_sface  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# fastdup's run, as its users call it; prints one JSON line: images it read
FASTDUP_SCRIPT = """
import json, sys, fastdup
fd = fastdup.create(work_dir=sys.argv[2], input_dir=sys.argv[1])
fd.run(overwrite=True, verbose=False)
print(json.dumps({"images": int(len(fd.annotations()))}))
"""


def build_set(name: str, tmp: Path) -> Path:
    """The folder of one bench set (links to the shared photos; the 10k set is generated once)."""
    if name == "10k":
        root = tmp / "set-10k"
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            make_dataset(root, 10_000)
            (root / ".complete").touch()
        return root
    root = tmp / f"set-{name}"
    if not root.exists():
        root.mkdir(parents=True)
        for part in name.split("+"):
            for ident in sorted(p for p in (SHARED / part).iterdir() if p.is_dir()):
                (root / f"{part}-{ident.name}").symlink_to(ident.resolve())
    return root


def images_in(root: Path) -> list[Path]:
    return sorted(f for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.iterdir()) if f.is_file())


def run_fastdup(python: str, data: Path, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    out, wall, peak, cpu = run_measured([python, "-c", FASTDUP_SCRIPT, str(data), str(work)], "fastdup")
    return {"wall": wall, "peak": peak, "cpu": cpu, "images": json.loads(out.strip().splitlines()[-1])["images"]}


def bench_set(name: str, args, tmp: Path) -> dict:
    data = build_set(name, tmp)
    paths = images_in(data)
    n = len(paths)
    fs, fd, lp, lp_cpu = [], [], [], []
    load = [os.getloadavg()[0]]
    for r in range(args.repeat):
        res = run_facesieve(data, tmp / "out-facesieve", [])
        shutil.rmtree(tmp / "out-facesieve", ignore_errors=True)
        fs.append(res)
        if args.fastdup_python:
            fd.append(run_fastdup(args.fastdup_python, data, tmp / "work-fastdup"))
        if not args.no_loop:
            t0, c0 = time.perf_counter(), time.process_time()
            loop_sface(paths)
            lp.append(time.perf_counter() - t0)
            lp_cpu.append(time.process_time() - c0)  # every thread of this process (OpenCV's too)
        load.append(os.getloadavg()[0])
        print(f"  {name} repeat {r + 1}: facesieve {fs[-1]['wall']:.1f}s"
              + (f", fastdup {fd[-1]['wall']:.1f}s" if fd else "") + (f", loop {lp[-1]:.1f}s" if lp else ""), file=sys.stderr)
    row = {"set": name, "images": n, "facesieve_img_s": n / statistics.median(r["wall"] for r in fs),
           "facesieve_peak_mib": max(r["tree_peak_bytes"] for r in fs) / 2**20,
           "facesieve_stages": fs[-1]["summary"]["stage_seconds"],
           "facesieve_cpu_ms_per_image": 1e3 * statistics.median(r["cpu_seconds"] for r in fs) / n,
           "load_average_1min": [round(x, 1) for x in load]}
    if fd:
        row["fastdup_img_s"] = n / statistics.median(r["wall"] for r in fd)
        row["fastdup_peak_mib"] = max(r["peak"] for r in fd) / 2**20
        row["fastdup_images_read"] = fd[-1]["images"]
        row["ratio_vs_fastdup"] = statistics.median(f["wall"] for f in fd) / statistics.median(r["wall"] for r in fs)
        row["fastdup_cpu_ms_per_image"] = 1e3 * statistics.median(f["cpu"] for f in fd) / n
        row["cpu_ratio_vs_fastdup"] = row["fastdup_cpu_ms_per_image"] / row["facesieve_cpu_ms_per_image"]
    if lp:
        row["loop_img_s"] = n / statistics.median(lp)
        row["ratio_vs_loop"] = statistics.median(lp) / statistics.median(r["wall"] for r in fs)
        row["loop_cpu_ms_per_image"] = 1e3 * statistics.median(lp_cpu) / n
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="pins_web,celeb5_web+deepface13,10k")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--fastdup-python", default=None, help="python of a venv with fastdup (default: none, fastdup not run)")
    ap.add_argument("--no-loop", action="store_true", help="skip the one-image-at-a-time loop")
    ap.add_argument("--tmp", type=Path, default=None, help="where the sets and outputs go (default: a temporary folder)")
    args = ap.parse_args()
    tmp = args.tmp or Path(tempfile.mkdtemp(prefix="bench-peers-"))
    print(f"{'set':24} {'images':>7} {'facesieve img/s':>16} {'fastdup img/s':>14} {'x fastdup':>10} {'loop img/s':>11} "
          f"{'x loop':>7} {'peak MiB fs/fd':>15}")
    rows = []
    for name in args.sets.split(","):  # each set's row as soon as it is measured (a long run may be stopped)
        r = bench_set(name, args, tmp)
        rows.append(r)
        fd_rate = f"{r['fastdup_img_s']:.1f}" if "fastdup_img_s" in r else "-"
        fd_ratio = f"{r['ratio_vs_fastdup']:.2f}" if "ratio_vs_fastdup" in r else "-"
        lp_rate = f"{r['loop_img_s']:.1f}" if "loop_img_s" in r else "-"
        lp_ratio = f"{r['ratio_vs_loop']:.2f}" if "ratio_vs_loop" in r else "-"
        peaks = f"{r['facesieve_peak_mib']:.0f}/" + (f"{r['fastdup_peak_mib']:.0f}" if "fastdup_peak_mib" in r else "-")
        print(f"{r['set']:24} {r['images']:>7} {r['facesieve_img_s']:>16.1f} {fd_rate:>14} {fd_ratio:>10} {lp_rate:>11} "
              f"{lp_ratio:>7} {peaks:>15}")
        print("    facesieve stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["facesieve_stages"].items()))
        cpu = [f"facesieve {r['facesieve_cpu_ms_per_image']:.1f}"]
        if "fastdup_cpu_ms_per_image" in r:
            cpu.append(f"fastdup {r['fastdup_cpu_ms_per_image']:.1f} (fastdup / facesieve {r['cpu_ratio_vs_fastdup']:.2f})")
        if "loop_cpu_ms_per_image" in r:
            cpu.append(f"loop {r['loop_cpu_ms_per_image']:.1f}")
        print("    CPU ms per image (whole process tree): " + ", ".join(cpu)
              + f"; load average (1 min) during the set: {min(r['load_average_1min']):.1f}-{max(r['load_average_1min']):.1f}",
              flush=True)
    print(json.dumps(rows, default=float))


if __name__ == "__main__":
    main()
