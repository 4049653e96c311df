"""Can registered pixels tell a near-copy from another shot of the same sitting? (run by hand)

    python bench/bench_pixel_signals.py --sets orl_att40,deepface13 --copies 150

Injects near-copies (facesieve/augment.py kinds) into whole shared sets, then for every
same-identity pair with SFace cosine >= --floor computes, besides the cosine:

- ecc: OpenCV's ECC correlation after an affine refinement of the landmark registration;
- bandpass: normalised correlation of a difference-of-Gaussians band (sigma 0.7 - 2.0 px);
- linfit: the R^2 of the best 5x5 linear filter (plus offset) predicting one registered image
  from the other, the better of the two directions (a copy is a filtered version of its source);
- flow: mean dense optical-flow magnitude (Farneback, in pixels of a 112-pixel face) left after
  the affine registration: a copy is one global transform, another shot moves locally;
- noise: correlation of the two images' own high-frequency residuals (image minus a 0.8-pixel
  Gaussian, taken on each image's native grid, then registered): a copy carries its source's
  sensor noise, another exposure has its own.

Both images are warped by the similarity transform of their 5 landmarks into a canvas at the
smaller face's native scale (grey, clipped pixels and borders masked), and a flipped pair is
tried mirrored. Printed: each signal's copy and distinct-pair quantiles, the recall at zero
distinct pairs merged, and the pair counts of "cos >= c or (cos >= floor and linfit >= t)".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from facesieve.evaluate.injection import build_injected, set_sources
from facesieve.faces.align import similarity_transform, template
from facesieve.stages import LANDMARK_COLUMNS, FaceTask, embedder, faces_worker

SIGNALS = ("cos", "ecc", "bandpass", "linfit", "flow", "noise")
LOWER_IS_COPY = ("flow",)
NOT_MEASURED = {"ecc": -1.0, "bandpass": -1.0, "linfit": -1.0, "flow": 99.0, "noise": -1.0}  # never reads as a copy


def faces(root: Path, det_name: str, emb_name: str) -> list[dict]:
    """The pipeline's own faces pass (`stages.faces_worker`: detect, pick, tight-crop fallback,
    align) on every image, plus each face's embedding and its grey image."""
    emb, out = embedder(emb_name), []
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        task = FaceTask(str(p), "", str(p), det_name, "central", False, True)
        row, crop, rgb = faces_worker(task, with_image=True)
        if row["status"] != "ok":
            continue
        lm = np.array([row[c] for c in LANDMARK_COLUMNS], np.float32).reshape(5, 2)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        out.append({"path": str(p.relative_to(root)), "identity": p.parent.name, "lm": lm, "grey": grey, "crop": crop})
    vecs = emb.embed_batch([f["crop"] for f in out])
    for f, v in zip(out, vecs):
        f["e"] = v / np.linalg.norm(v)
    return out


def mirrored(grey: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm = lm.copy()
    lm[:, 0] = grey.shape[1] - 1 - lm[:, 0]
    return np.ascontiguousarray(grey[:, ::-1]), lm[[1, 0, 2, 4, 3]]


def ncc(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    a, b = a[m] - a[m].mean(), b[m] - b[m].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-9))


def linfit(a: np.ndarray, b: np.ndarray, m: np.ndarray, r: int = 2) -> float:
    ok = m.copy()
    ok[:r], ok[-r:], ok[:, :r], ok[:, -r:] = False, False, False, False
    ok &= (a > 3) & (a < 252) & (b > 3) & (b < 252)
    ys, xs = np.nonzero(ok)
    if len(ys) < 200:
        return -1.0
    pick = np.random.default_rng(0).permutation(len(ys))[:6000]
    ys, xs = ys[pick], xs[pick]
    best = -1.0
    for x, y in ((a, b), (b, a)):
        cols = [x[ys + dy, xs + dx] for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
        design = np.stack(cols + [np.ones(len(ys), np.float32)], 1).astype(np.float64)
        target = y[ys, xs].astype(np.float64)
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        best = max(best, 1.0 - (target - design @ coef).var() / max(target.var(), 1e-9))
    return best


def pixel_signals(ga, la, gb, lb) -> dict:
    tpl = template(112)
    k = min(np.linalg.norm(la[0] - la[1]), np.linalg.norm(lb[0] - lb[1])) / np.linalg.norm(tpl[0] - tpl[1])
    size = int(round(112 * k * 1.1))
    target = tpl * k + (size - 112 * k) / 2
    warped, transforms = [], []
    for g, lm in ((ga, la), (gb, lb)):
        M = similarity_transform(lm, target)
        transforms.append(M)
        scale = np.sqrt(abs(np.linalg.det(M[:, :2])))
        if scale < 0.8:
            g = cv2.GaussianBlur(g, (0, 0), 0.45 / scale)
        warped.append((cv2.warpAffine(g, M, (size, size)), cv2.warpAffine(np.ones_like(g), M, (size, size), flags=cv2.INTER_NEAREST)))
    (A, MA), (B, MB) = warped
    mask = cv2.erode(((MA > 0) & (MB > 0)).astype(np.uint8), np.ones((5, 5), np.uint8))
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 80, 1e-6)
    try:
        ecc, warp = cv2.findTransformECC(cv2.GaussianBlur(A, (0, 0), 1.0), cv2.GaussianBlur(B, (0, 0), 1.0), warp, cv2.MOTION_AFFINE, criteria, mask, 1)
    except cv2.error:
        return dict(NOT_MEASURED)
    inverse = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    Bw = cv2.warpAffine(B, warp, (size, size), flags=inverse)
    MBw = cv2.warpAffine(MB, warp, (size, size), flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP)
    m = cv2.erode(((MA > 0) & (MBw > 0)).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    if m.sum() < 50:
        return {**NOT_MEASURED, "ecc": float(ecc)}

    def band(x):
        return cv2.GaussianBlur(x, (0, 0), 0.7) - cv2.GaussianBlur(x, (0, 0), 2.0)

    def residual(g):
        return g - cv2.GaussianBlur(g, (0, 0), 0.8)

    nA = cv2.warpAffine(residual(ga), transforms[0], (size, size))
    nB = cv2.warpAffine(cv2.warpAffine(residual(gb), transforms[1], (size, size)), warp, (size, size), flags=inverse)
    a8, b8 = (cv2.equalizeHist(np.clip(x, 0, 255).astype(np.uint8)) for x in (A, Bw))
    flow = cv2.calcOpticalFlowFarneback(a8, b8, None, 0.5, 3, max(9, int(15 * k)), 3, 5, 1.1, 0)
    inner = cv2.erode(m.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    moved = float(np.sqrt((flow[inner] ** 2).sum(-1)).mean() / k) if inner.any() else 99.0  # k: canvas pixels per 112-face pixel
    return {"ecc": float(ecc), "bandpass": ncc(band(A), band(Bw), m), "linfit": linfit(A, Bw, m), "flow": moved,
            "noise": ncc(nA, nB, m)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--sets", default="orl_att40,deepface13")
    ap.add_argument("--copies", type=int, default=150)
    ap.add_argument("--floor", type=float, default=0.80, help="pairs below this cosine are not compared")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sources = set_sources(args.data, args.sets.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        injected = build_injected(sources, root, args.copies, args.seed)
        recs = faces(root, "yunet", "sface")
    source = dict(zip(injected["path"], injected["source"]))
    kind = dict(zip(injected["path"], injected["kind"]))
    by_id: dict[str, list[dict]] = {}
    for r in recs:
        by_id.setdefault(r["identity"], []).append(r)
    rows = []
    t0 = time.process_time()
    for members in by_id.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                cos = float(a["e"] @ b["e"])
                if cos < args.floor:
                    continue
                direct = pixel_signals(a["grey"], a["lm"], b["grey"], b["lm"])
                flipped = pixel_signals(*mirrored(a["grey"], a["lm"]), b["grey"], b["lm"])
                sig = direct if direct["linfit"] >= flipped["linfit"] else flipped
                same = source.get(a["path"], a["path"]) == source.get(b["path"], b["path"])
                rows.append({"a": a["path"], "b": b["path"], "cos": cos, **sig, "same": same,
                             "kind": (kind.get(a["path"]) or kind.get(b["path"]) or "") if same else ""})
    cpu = time.process_time() - t0
    df = pd.DataFrame(rows)
    print(f"CPU per pair (both orientations, all signals): {1000 * cpu / max(len(df), 1):.1f} ms")
    copies, distinct = df[df["same"]], df[~df["same"]]
    print(f"pairs compared: {len(copies)} copy/source, {len(distinct)} distinct same-identity (cosine >= {args.floor})")
    for s in SIGNALS:
        if s in LOWER_IS_COPY:
            low = distinct[s].min()
            print(f"{s:9s} copies max {copies[s].max():.4f} p95 {copies[s].quantile(.95):.4f} | distinct p1 {distinct[s].quantile(.01):.4f} "
                  f"min {low:.4f} | recall at 0 distinct merged {(copies[s] < low).mean():.3f}")
            continue
        top = distinct[s].max()
        print(f"{s:9s} copies min {copies[s].min():.4f} p5 {copies[s].quantile(.05):.4f} | distinct p99 {distinct[s].quantile(.99):.4f} "
              f"max {top:.4f} | recall at 0 distinct merged {(copies[s] > top).mean():.3f}")
    print("closest distinct pairs by linfit:")
    print(distinct.sort_values("linfit", ascending=False).head(6)[["a", "b", *SIGNALS]].round(4).to_string(index=False))
    worst = {s: ("max" if s in LOWER_IS_COPY else "min") for s in SIGNALS}
    print("worst copy of each kind (max for flow, min for the others):")
    print(copies.groupby("kind")[list(SIGNALS)].agg(worst).round(4).to_string())
    print("rule: cos >= c or (cos >= 0.85 and linfit >= t): copies / distinct pairs merged")
    for c in (0.97, 0.98, 0.99):
        for t in (0.995, 0.997, 0.998):
            hit = (df["cos"] >= c) | ((df["cos"] >= 0.85) & (df["linfit"] >= t))
            print(f"  c={c} t={t}: {int((hit & df['same']).sum())} / {int((hit & ~df['same']).sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
