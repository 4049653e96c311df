"""Per-face cost of the quality methods (run by hand): image, robustness, offline, and the run's
own embedding for comparison, on real faces from ../shared/data.

    python bench/bench_quality.py --embedder sface --faces 128 [--student]

Reports wall time and this process's CPU time per face (one thread, as the local engine's workers
run models), after a warm-up. The faces stage's extra artefact measures (noise, blockiness on the
original grid) are timed on their own. `--student` (needs torch) also times a student of
`facesieve train-quality` (eDifFIQA(T): MobileFaceNet + head, exported to ONNX, run by ONNX Runtime
on one thread as `--quality onnx:PATH` runs it); its weights are random, which does not change
its speed (docs/train-quality.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.imaging import load_rgb
from facesieve.parallel import one_thread
from facesieve.quality.artefacts import face_region_measures
from facesieve.quality.base import QualityInput, make_quality
from facesieve.stages import FaceTask, embedder, faces_worker

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("seed_vggface/dataset", "essex_faces94_19", "orl_att40", "deepface13")


def faces(n: int) -> tuple[np.ndarray, pd.DataFrame, list[Path]]:
    paths = []
    for s in SETS:
        paths += sorted(p for p in (DATA / s).rglob("*") if p.suffix.lower() in (".jpg", ".pgm", ".png"))[: n // len(SETS) + 1]
    rows, crops, kept = [], [], []
    for p in paths:
        row, crop = faces_worker(FaceTask("x", "x", str(p), "yunet", "central", False, True))
        if row["status"] == "ok":
            rows.append(row)
            crops.append(crop)
            kept.append(p)
        if len(rows) == n:
            break
    return np.stack(crops), pd.DataFrame(rows), kept


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def time_student(crops: np.ndarray) -> dict:
    """Per-face time of an eDifFIQA(T)-shaped student through ONNX Runtime, one thread."""
    import tempfile

    from facesieve.models.archs import build_ediffiqa
    from facesieve.quality.ediffiqa import EDifFIQA, export_onnx

    with tempfile.TemporaryDirectory(prefix="facesieve-student-") as tmp:
        onnx = export_onnx(build_ediffiqa("T").eval(), Path(tmp) / "student.onnx")
        scorer = EDifFIQA("T", weights=onnx, device="cpu", threads=1)
        scorer.score_batch(crops[:8])
        w, c = timed(lambda: scorer.score_batch(crops))
    return {"wall": 1000 * w / len(crops), "cpu": 1000 * c / len(crops)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="sface")
    ap.add_argument("--faces", type=int, default=128)
    ap.add_argument("--student", action="store_true", help="also time a train-quality student (needs torch)")
    args = ap.parse_args()
    crops, table, paths = faces(args.faces)
    n = len(crops)
    emb = embedder(args.embedder)
    out = {"embedder": args.embedder, "faces": n}
    with one_thread():
        images = [load_rgb(p) for p in paths]
        boxes = [tuple(r[k] for k in ("box_x", "box_y", "box_w", "box_h")) for _, r in table.iterrows()]
        w, c = timed(lambda: [face_region_measures(im, b) for im, b in zip(images, boxes)])
        out["artefacts_ms"] = {"wall": 1000 * w / n, "cpu": 1000 * c / n}
        if not emb.needs_original:
            emb.embed_batch(crops[:4])
            w, c = timed(lambda: emb.embed_batch(crops))
            out["one_embedding_ms"] = {"wall": 1000 * w / n, "cpu": 1000 * c / n}
        for name in ("image", "robustness", "offline"):
            scorer = make_quality(name)
            data = QualityInput(crops, table, emb)
            scorer.score(QualityInput(crops[:4], table.iloc[:4].reset_index(drop=True), emb))
            w, c = timed(lambda scorer=scorer, data=data: scorer.score(data))
            out[f"{name}_ms"] = {"wall": 1000 * w / n, "cpu": 1000 * c / n}
        if args.student:
            out["student_ms"] = time_student(crops)
    print(json.dumps({k: ({kk: round(vv, 2) for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
