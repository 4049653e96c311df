"""Per-face cost of the quality methods (run by hand): image, robustness, offline-full, offline,
and the run's own embedding for comparison, on real faces from ../shared/data.

    python bench/bench_quality.py --embedder sface --faces 128 [--student]

Reports wall time and this process's CPU time per face (one thread, as the local engine's workers
run models), after a warm-up, and each method's CPU time as a ratio to one embedding measured in
the same run (`ratio_to_embedding`). Methods get what the pipeline gives them: the stored unit
embeddings, and for `offline` the embeddings' raw norms (`offline`), or not (`offline_no_norms`:
the norms are recomputed by embedding the crops once more). The faces stage's artefact measures
(noise, blockiness on the original grid; computed for every method) are timed on their own, and
`offline_with_artefacts` adds them to `offline`. `--student` (needs torch) also times a student of
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
from facesieve.quality.base import QualityInput
from facesieve.quality.registry import make_quality
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
        unit = norms = None
        if not emb.needs_original:
            emb.embed_batch(crops[:4])
            raw = []
            w, c = timed(lambda: raw.append(emb.embed_batch(crops)))
            out["one_embedding_ms"] = {"wall": 1000 * w / n, "cpu": 1000 * c / n}
            norms = np.linalg.norm(raw[0], axis=1)
            unit = raw[0] / norms[:, None]
        runs = [("image", "image", norms), ("robustness", "robustness", norms), ("offline-full", "offline-full", norms),
                ("offline", "offline", norms), ("offline_no_norms", "offline", None)]
        for label, name, given in runs:
            scorer = make_quality(name)
            data = QualityInput(crops, table, emb, embeddings=unit, norms=given)
            scorer.score(QualityInput(crops[:4], table.iloc[:4].reset_index(drop=True), emb))
            w, c = timed(lambda scorer=scorer, data=data: scorer.score(data))
            out[f"{label}_ms"] = {"wall": 1000 * w / n, "cpu": 1000 * c / n}
        out["offline_with_artefacts_ms"] = {k: out["offline_ms"][k] + out["artefacts_ms"][k] for k in ("wall", "cpu")}
        if args.student:
            out["student_ms"] = time_student(crops)
        if "one_embedding_ms" in out:
            base = out["one_embedding_ms"]["cpu"]
            out["ratio_to_embedding"] = {k[:-3]: v["cpu"] / base for k, v in out.items() if k.endswith("_ms")}
    print(json.dumps({k: ({kk: round(vv, 3 if k == "ratio_to_embedding" else 2) for kk, vv in v.items()} if isinstance(v, dict) else v)
                      for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
