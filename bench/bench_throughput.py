"""Throughput of `facesieve run` against a one-image-at-a-time loop and against decoding alone.

    python bench/bench_throughput.py                     # YuNet + SFace and dlib
    python bench/bench_throughput.py --stack sface --n 400 --repeat 2

For each model stack, on the same real images from ../shared/data (a mix of all sets), measured
in one run: the loop and the run alternate `--repeat` times and the ratios are medians of the
pairs, so that a machine shared with other work slows both sides alike (compare the ratios, not
the rates). CPU time per image (all threads and processes) is printed too: it is the work each
side does, whatever the machine's load.

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
import functools
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_100k import run_measured  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SETS = ("seed_vggface/dataset", "essex_faces94_19", "orl_att40", "yaleB_cropped10", "deepface13")
STACKS = {
    "sface": ["--detector", "yunet", "--embedder", "sface"],
    "dlib": ["--detector", "dlib-hog", "--embedder", "dlib", "--face-policy", "first"],
}


def make_set(root: Path, n: int, sets: tuple[str, ...] = SETS) -> list[Path]:
    """n images taken round-robin from the shared sets, copied as root/<set-identity>/<file>."""
    pools = []
    for name in sets:
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


def loop_dlib(paths: list[Path], same_fallback: bool = False) -> float:
    """face_recognition's calls, per image: load_image_file, face_locations(upsample 1), face_encodings.

    `same_fallback`: where HOG finds nothing in a small image (a tight crop), embed the whole image
    as the engine does (its fallback face), so that both sides embed the same faces;
    FaceDuplicationFilter itself skipped such images."""
    import dlib
    from PIL import Image

    from facesieve.faces.detect import fallback_detection
    from facesieve.models.bundled import dlib_resnet_path, dlib_shape5_path
    from facesieve.models.embedders.dlib import dlib_rect_from_landmarks
    from facesieve.stages import TIGHT_CROP_MAX_SIDE

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_shape5_path()))
    net = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    t0 = time.perf_counter()
    for p in paths:
        img = np.array(Image.open(p).convert("RGB"))
        rects = det(img, 1)
        if len(rects):
            np.array(net.compute_face_descriptor(img, sp(img, rects[0]), 1))
        elif same_fallback and max(img.shape[:2]) <= TIGHT_CROP_MAX_SIDE:
            rect = dlib.rectangle(*dlib_rect_from_landmarks(fallback_detection(img.shape[:2]).landmarks))
            np.array(net.compute_face_descriptor(img, sp(img, rect), 1))
    return time.perf_counter() - t0


def loop_sface(paths: list[Path]) -> float:
    """The same loop with YuNet + SFace: decode, detect, pick the face, align, embed one crop."""
    from facesieve.faces.align import align
    from facesieve.faces.detect import pick_face
    from facesieve.imaging import load_rgb
    from facesieve.models.detectors.yunet import YuNetDetector
    from facesieve.models.embedders.sface_int8 import SFaceEmbedder

    det, emb = YuNetDetector(), SFaceEmbedder()
    t0 = time.perf_counter()
    for p in paths:
        rgb = load_rgb(p)
        faces = det.detect(rgb)
        if faces:
            f = faces[pick_face(faces, rgb.shape)]
            emb.embed_batch(align(rgb, np.asarray(f.landmarks, np.float32), 112)[None])
    return time.perf_counter() - t0


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of fn(*args)."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0


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


def run_cli(data: Path, out: Path, stack: str, jobs: int, fresh: bool = True) -> tuple[float, dict]:
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "facesieve", "run", str(data), "--out", str(out), "--json", "--no-report", "--quality", "uniform",
           "--jobs", str(jobs), *STACKS[stack]]
    stdout, wall, _, cpu = run_measured(cmd, "facesieve run", cwd=REPO, every=0.1)
    summary = json.loads(stdout[stdout.index("{"):])
    summary["cpu_seconds"] = cpu  # main, forkserver and workers, sampled from /proc
    return wall, summary


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


def bench(stack: str, n: int, jobs: int, repeat: int, tmp: Path, sets: tuple[str, ...] = SETS, same_fallback: bool = False) -> dict:
    data = tmp / f"data-{stack}"
    paths = make_set(data, n, sets)
    loop = functools.partial(loop_dlib, same_fallback=same_fallback) if stack == "dlib" else loop_sface
    keys = ("loop", "loop_cpu", "decode1", "decode_pool", "run", "run_cpu", "faces_pass", "faces_pass_cpu", "run_seconds", "staged_sum")
    rec: dict[str, list[float]] = {k: [] for k in keys}
    pairs: dict[str, list[float]] = {"faces_pass_vs_loop": [], "run_total_vs_loop": [], "run_vs_sum_of_stage_costs": []}
    stage_runs, staged_runs = [], []
    for r in range(repeat):
        print(f"  [{stack} {r + 1}/{repeat}] loop, run, decode, staged run ...", file=sys.stderr)
        wall, cpu = timed(loop, paths)
        rec["loop"].append(wall)
        rec["loop_cpu"].append(cpu)
        wall, summary = run_cli(data, tmp / "out", stack, jobs)
        rec["run"].append(wall)
        rec["run_cpu"].append(summary["cpu_seconds"])
        rec["faces_pass"].append(summary["stage_seconds"]["faces"])
        rec["run_seconds"].append(summary["seconds"])
        stage_runs.append(summary["stage_seconds"])
        _, again = run_cli(data, tmp / "out", stack, jobs, fresh=False)  # nothing to compute: the fixed costs
        rec["faces_pass_cpu"].append(summary["cpu_seconds"] - again["cpu_seconds"])
        one, pool = decode_rates(paths, jobs)
        rec["decode1"].append(one)
        rec["decode_pool"].append(pool)
        _, staged = run_staged(data, tmp / "staged", stack, jobs)
        rec["staged_sum"].append(sum(staged["stage_seconds"].values()))
        staged_runs.append(staged["stage_seconds"])
        pairs["faces_pass_vs_loop"].append(rec["loop"][-1] / rec["faces_pass"][-1])
        pairs["run_total_vs_loop"].append(rec["loop"][-1] / rec["run"][-1])
        pairs["run_vs_sum_of_stage_costs"].append(rec["run_seconds"][-1] / rec["staged_sum"][-1])
    med = {k: statistics.median(v) for k, v in rec.items()}
    return {
        "stack": stack, "images": n, "jobs": jobs, "repeat": repeat, "loop_embeds_fallback_faces": same_fallback and stack == "dlib",
        "images_per_second": {
            "loop_one_at_a_time": round(n / med["loop"], 2),
            "facesieve_run_total": round(n / med["run"], 2),
            "facesieve_faces_pass": round(n / med["faces_pass"], 2),
            "decode_only_one_process": round(n / med["decode1"], 1),
            "decode_only_pool": round(n / med["decode_pool"], 1),
        },
        "cpu_ms_per_image": {"loop": round(1e3 * med["loop_cpu"] / n, 1), "facesieve_run": round(1e3 * med["run_cpu"] / n, 1),
                             "facesieve_faces_pass": round(1e3 * med["faces_pass_cpu"] / n, 1)},
        "ratios": {
            **{k: round(statistics.median(v), 2) for k, v in pairs.items()},
            # on an idle machine every process gets its core: jobs x loop CPU / run CPU (the loop's
            # own threads, where its libraries use several, make this an upper bound)
            "cpu_bound_faces_pass_vs_loop": round(jobs * med["loop_cpu"] / med["faces_pass_cpu"], 2),
            "faces_pass_vs_decode_pool_floor": round(med["faces_pass"] / med["decode_pool"], 2),
        },
        "stage_images_per_second_overlapped": {k: round(n / v, 1) for k, v in stage_runs[-1].items() if v > 0},
        "stage_images_per_second_staged": {k: round(n / v, 1) for k, v in staged_runs[-1].items() if v > 0},
        "seconds": {k: [round(x, 2) for x in v] for k, v in rec.items()},
        "pairs": {k: [round(x, 2) for x in v] for k, v in pairs.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", choices=("sface", "dlib", "both"), default="both")
    ap.add_argument("--n", type=int, default=None, help="images per repetition (default: 80 for sface, 40 for dlib)")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--sets", default=",".join(SETS),
                    help="shared sets to take images from, comma-separated (e.g. only sets of uncropped photos, "
                    "where the loop finds a face in every image and both sides embed the same faces)")
    ap.add_argument("--same-fallback", action="store_true",
                    help="dlib loop: embed the whole image where HOG finds no face in a tight crop, as the engine does "
                    "(FaceDuplicationFilter skipped those images)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="facesieve-throughput-"))
    results = []
    try:
        for stack in (("sface", "dlib") if args.stack == "both" else (args.stack,)):
            n = args.n or (80 if stack == "sface" else 40)
            res = bench(stack, n, args.jobs, args.repeat, tmp, tuple(args.sets.split(",")), args.same_fallback)
            results.append(res)
            print(json.dumps(res, indent=2))
            r, s = res["ratios"], res["images_per_second"]
            c = res["cpu_ms_per_image"]
            print(f"\n{stack}: loop {s['loop_one_at_a_time']} img/s, facesieve faces pass {s['facesieve_faces_pass']} img/s "
                  f"({r['faces_pass_vs_loop']}x the loop, target >= 1.8), whole run {s['facesieve_run_total']} img/s "
                  f"({r['run_total_vs_loop']}x); CPU per image: loop {c['loop']} ms, run {c['facesieve_run']} ms "
                  f"faces pass {c['facesieve_faces_pass']} ms (CPU-bound ratio {r['cpu_bound_faces_pass_vs_loop']}x); decode floor {s['decode_only_pool']} img/s on the pool; "
                  f"run time / sum of stage costs {r['run_vs_sum_of_stage_costs']} (target <= 1.5)\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
