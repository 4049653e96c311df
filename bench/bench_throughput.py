"""Throughput of `facesieve run` against a one-image-at-a-time loop and against decoding alone.

    python bench/bench_throughput.py                     # YuNet + SFace and dlib, 240 / 120 images
    python bench/bench_throughput.py --stack sface --n 400 --repeat 2

For each model stack, on the same real images from ../shared/data (a mix of all sets), measured
in one run and interleaved (the machine may be shared, so compare the ratios, not the rates):

- loop: what FaceDuplicationFilter did, one image at a time in one process: decode, detect, take
  a face, embed it (dlib: face_recognition's calls, HOG with one upsample, 5-point landmarks,
  ResNet descriptor; yunet+sface: the same loop with those models), the models' default threads;
- decode: decoding alone, in one process and on the pool (the floor: no engine is faster);
- run: `facesieve run --quality uniform` (the same work: faces + embeddings; plus scan, hashes,
  decide and apply), its per-stage rates, and the faces pass (detect + embed) alone;
- staged: the same run with the stages one after the other (RunConfig(overlap=False)); the sum
  of its stage times is the sum of per-stage costs the overlapped engine is compared with.

Targets (issue 7): run >= 1.8x the loop on 2 cores; run time <= 1.5x the sum of per-stage costs.
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
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SETS = ("seed_vggface/dataset", "essex_faces94_19", "orl_att40", "yaleB_cropped10", "deepface13")
STACKS = {
    "sface": ["--detector", "yunet", "--embedder", "sface"],
    "dlib": ["--detector", "dlib-hog", "--embedder", "dlib", "--face-policy", "first"],
}


def make_set(root: Path, n: int) -> list[Path]:
    """n images taken round-robin from the shared sets, copied as root/<set-identity>/<file>."""
    pools = []
    for name in SETS:
        files = sorted(f for d in sorted((SHARED / name).iterdir()) if d.is_dir() for f in sorted(d.iterdir()) if f.is_file())
        pools.append([(f"{name.split('/')[0]}-{f.parent.name}", f) for f in files])
    out: list[Path] = []
    i = 0
    while len(out) < n and any(pools):
        pool = pools[i % len(pools)]
        if pool:
            ident, f = pool.pop(0)
            dst = root / ident / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst)
            out.append(dst)
        i += 1
    return out


# ---------------------------------------------------------------- the one-image-at-a-time loops


def loop_dlib(paths: list[Path]) -> float:
    """face_recognition's calls, per image: load_image_file, face_locations(upsample 1), face_encodings."""
    import dlib
    from PIL import Image

    from facesieve.models.bundled import dlib_resnet_path, dlib_shape5_path

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_shape5_path()))
    net = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    t0 = time.perf_counter()
    for p in paths:
        img = np.array(Image.open(p).convert("RGB"))
        rects = det(img, 1)
        if len(rects):
            np.array(net.compute_face_descriptor(img, sp(img, rects[0]), 1))
    return time.perf_counter() - t0


def loop_sface(paths: list[Path]) -> float:
    """The same loop with YuNet + SFace: decode, detect, pick the face, align, embed one crop."""
    from facesieve.embed import SFaceEmbedder
    from facesieve.faces.align import align
    from facesieve.faces.detect import YuNetDetector, pick_face
    from facesieve.imaging import load_rgb

    det, emb = YuNetDetector(), SFaceEmbedder()
    t0 = time.perf_counter()
    for p in paths:
        rgb = load_rgb(p)
        faces = det.detect(rgb)
        if faces:
            f = faces[pick_face(faces, rgb.shape)]
            emb.embed_batch(align(rgb, np.asarray(f.landmarks, np.float32), 112)[None])
    return time.perf_counter() - t0


def _decode(p: str) -> int:
    from facesieve.imaging import load_rgb

    return load_rgb(p).shape[0]


def decode_rates(paths: list[Path], jobs: int) -> tuple[float, float]:
    """Seconds to decode every image in one process, and on a pool of `jobs`."""
    from facesieve.parallel import ordered_map

    t0 = time.perf_counter()
    for p in paths:
        _decode(str(p))
    one = time.perf_counter() - t0
    list(ordered_map(_decode, [str(p) for p in paths[:4]], jobs))  # pool start-up outside the timing
    t0 = time.perf_counter()
    list(ordered_map(_decode, [str(p) for p in paths], jobs, chunk=16))
    return one, time.perf_counter() - t0


# ---------------------------------------------------------------- facesieve


def run_cli(data: Path, out: Path, stack: str, jobs: int) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "facesieve", "run", str(data), "--out", str(out), "--json", "--no-report", "--quality", "uniform",
           "--jobs", str(jobs), *STACKS[stack]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return wall, json.loads(proc.stdout[proc.stdout.index("{"):])


STAGED = """
import json, sys
from facesieve.config import RunConfig
from facesieve.pipeline import run
args = json.loads(sys.argv[1])
r = run(RunConfig(args["data"], args["out"], jobs=args["jobs"], quality="uniform", overlap=False, report=False, **args["models"]))
print(json.dumps(r.summary))
"""


def run_staged(data: Path, out: Path, stack: str, jobs: int) -> tuple[float, dict]:
    """The same run with the stages one after the other (no overlap)."""
    shutil.rmtree(out, ignore_errors=True)
    flags = STACKS[stack]
    models = {"detector": flags[1], "embedder": flags[3]}
    if "--face-policy" in flags:
        models["face_policy"] = flags[5]
    arg = json.dumps({"data": str(data), "out": str(out), "jobs": jobs, "models": models})
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", STAGED, arg], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def bench(stack: str, n: int, jobs: int, repeat: int, tmp: Path) -> dict:
    data = tmp / f"data-{stack}"
    paths = make_set(data, n)
    loop = loop_dlib if stack == "dlib" else loop_sface
    rec: dict[str, list[float]] = {k: [] for k in ("loop", "decode1", "decode_pool", "run", "faces_pass", "staged_sum", "staged_wall")}
    stage_runs = []
    for r in range(repeat):
        print(f"  [{stack} {r + 1}/{repeat}] loop ...", file=sys.stderr)
        rec["loop"].append(loop(paths))
        print(f"  [{stack} {r + 1}/{repeat}] facesieve run ...", file=sys.stderr)
        wall, summary = run_cli(data, tmp / "out", stack, jobs)
        rec["run"].append(wall)
        rec["faces_pass"].append(summary["stage_seconds"]["faces"])
        stage_runs.append(summary["stage_seconds"])
        print(f"  [{stack} {r + 1}/{repeat}] decode ...", file=sys.stderr)
        one, pool = decode_rates(paths, jobs)
        rec["decode1"].append(one)
        rec["decode_pool"].append(pool)
        print(f"  [{stack} {r + 1}/{repeat}] staged run ...", file=sys.stderr)
        swall, ssum = run_staged(data, tmp / "staged", stack, jobs)
        rec["staged_wall"].append(swall)
        rec["staged_sum"].append(sum(ssum["stage_seconds"].values()))
        rec.setdefault("staged_stages", []).append(ssum["stage_seconds"])
        rec.setdefault("run_seconds", []).append(summary["seconds"])
    med = {k: statistics.median(v) for k, v in rec.items() if v and isinstance(v[0], float)}
    per_stage = {k: round(n / v, 1) for k, v in stage_runs[-1].items() if v > 0}
    staged_rates = {k: round(n / v, 1) for k, v in rec["staged_stages"][-1].items() if v > 0}
    return {
        "stack": stack, "images": n, "jobs": jobs, "repeat": repeat,
        "images_per_second": {
            "loop_one_at_a_time": round(n / med["loop"], 2),
            "facesieve_run_total": round(n / med["run"], 2),
            "facesieve_faces_pass": round(n / med["faces_pass"], 2),
            "decode_only_one_process": round(n / med["decode1"], 1),
            "decode_only_pool": round(n / med["decode_pool"], 1),
        },
        "ratios": {
            "faces_pass_vs_loop": round(med["loop"] / med["faces_pass"], 2),
            "run_total_vs_loop": round(med["loop"] / med["run"], 2),
            "faces_pass_vs_decode_pool_floor": round(med["faces_pass"] / med["decode_pool"], 2),
            "run_seconds_vs_sum_of_stage_costs": round(statistics.median(rec["run_seconds"]) / med["staged_sum"], 2),
        },
        "stage_images_per_second_overlapped": per_stage,
        "stage_images_per_second_staged": staged_rates,
        "seconds": {k: [round(x, 2) for x in v] for k, v in rec.items() if v and isinstance(v[0], float)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", choices=("sface", "dlib", "both"), default="both")
    ap.add_argument("--n", type=int, default=None, help="images (default: 240 for sface, 120 for dlib)")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="facesieve-throughput-"))
    results = []
    try:
        for stack in (("sface", "dlib") if args.stack == "both" else (args.stack,)):
            n = args.n or (240 if stack == "sface" else 120)
            res = bench(stack, n, args.jobs, args.repeat, tmp)
            results.append(res)
            print(json.dumps(res, indent=2))
            r, s = res["ratios"], res["images_per_second"]
            print(f"\n{stack}: loop {s['loop_one_at_a_time']} img/s, facesieve faces pass {s['facesieve_faces_pass']} img/s "
                  f"({r['faces_pass_vs_loop']}x the loop, target >= 1.8), whole run {s['facesieve_run_total']} img/s "
                  f"({r['run_total_vs_loop']}x); decode floor {s['decode_only_pool']} img/s on the pool; run time / sum of "
                  f"stage costs {r['run_seconds_vs_sum_of_stage_costs']} (target <= 1.5)\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
