"""Calibrate the near-duplicate thresholds of an embedder on ../shared/data (run by hand).

Two distributions, as docs/thresholds.md describes:
- same photo: each sampled real photo against near-copies of itself (JPEG q30-90, resize 0.5-2x,
  5% crop, flip, brightness +-20%, rotation 2-6 degrees), through the real detect/align/embed path;
- distinct photos: pairs of different photos of the same person (deepface13, orl_att40,
  seed_vggface, yaleB_cropped10; essex_faces94_19 is reported apart: its photos are video frames).
For each it prints cosine and perceptual-hash (aligned crop, mirror-invariant) quantiles, then the
recall/false-merge trade-off of candidate thresholds.

    python bench/calibrate_thresholds.py --embedder sface --per-set 60
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

from facesieve.augment import COPY_KINDS, near_copy
from facesieve.faces.align import align
from facesieve.faces.detect import make_detector, pick_face
from facesieve.embed import l2_normalise, make_embedder
from facesieve.imaging import image_hashes, load_rgb
from facesieve.select.neardup import popcount64

SETS = ("deepface13", "orl_att40", "seed_vggface/dataset", "yaleB_cropped10", "essex_faces94_19")


def sample_files(data: Path, per_set: int, rng: np.random.Generator, sets=SETS) -> list[tuple[str, str, Path]]:
    out = []
    for s in sets:
        files = sorted(p for p in (data / s).rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".pgm", ".png"))
        # whole identities, so distinct same-person pairs exist
        ids = sorted({p.parent.name for p in files})
        rng.shuffle(ids)
        chosen = []
        for i in ids:
            mine = [p for p in files if p.parent.name == i][:8]
            chosen += mine
            if len(chosen) >= per_set:
                break
        out += [(s, p.parent.name, p) for p in chosen[:per_set]]
    return out


class Face:
    def __init__(self, detector: str, embedder: str):
        self.det = make_detector(detector)
        self.emb = make_embedder(embedder)

    def __call__(self, rgb: np.ndarray):
        dets = self.det.detect(rgb)
        if not dets:
            return None
        d = dets[pick_face(dets, rgb.shape[:2])]
        crop = align(rgb, d.landmarks)
        x = self.emb.prepare(rgb, d, crop)
        v = l2_normalise(self.emb.embed_batch(np.asarray([x])).astype(np.float64))[0]
        return v, crop


def hashes(rgb: np.ndarray) -> tuple[int, int]:
    """The image's pHash and its mirror image's (a flipped copy matches the second)."""
    ph, _, mirrored = image_hashes(rgb)
    return ph, mirrored


def crop_signature(crop: np.ndarray) -> np.ndarray:
    """32x32 grey of the aligned crop's central face, zero-mean unit-norm (brightness-invariant)."""
    import cv2

    g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[16:112, 8:104].astype(np.float32)
    g = cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA).reshape(-1)
    g -= g.mean()
    return g / (np.linalg.norm(g) + 1e-6)


def ncc(a: np.ndarray, b_crop_sig: tuple[np.ndarray, np.ndarray]) -> float:
    return float(max(a @ b_crop_sig[0], a @ b_crop_sig[1]))


def signatures(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return crop_signature(crop), crop_signature(np.ascontiguousarray(crop[:, ::-1]))


def ham(a: int, b: int) -> int:
    return int(popcount64(np.array([a ^ b], dtype=np.uint64))[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--embedder", default="sface")
    ap.add_argument("--detector", default="yunet")
    ap.add_argument("--per-set", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated sets under --data")
    ap.add_argument("--json", type=Path, default=None, help="write the raw distributions here")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    face = Face(args.detector, args.embedder)
    t0 = time.perf_counter()
    records = []  # (set, identity, path, vec, phash, phash_mirror)
    copies = []  # (set, kind, cos, hamming(mirror-invariant))
    for s, ident, path in sample_files(args.data, args.per_set, rng, args.sets.split(",")):
        rgb = load_rgb(path)
        f = face(rgb)
        if f is None:
            continue
        v, crop = f
        h, hm = hashes(rgb)  # whole image, as the faces stage stores them
        sig = signatures(crop)
        records.append((s, ident, str(path), v, h, hm, sig))
        for kind in COPY_KINDS:
            copy = near_copy(rgb, kind, rng)
            c = face(copy)
            if c is None:
                copies.append((s, kind, np.nan, 64, np.nan))
                continue
            cv, ccrop = c
            ch, _ = hashes(copy)
            copies.append((s, kind, float(v @ cv), min(ham(h, ch), ham(hm, ch)), ncc(crop_signature(ccrop), sig)))
    distinct = []  # (set, cos, hamming)
    by_id: dict[tuple[str, str], list[int]] = {}
    for n, r in enumerate(records):
        by_id.setdefault((r[0], r[1]), []).append(n)
    for (s, _), idx in by_id.items():
        for a, b in combinations(idx, 2):
            ra, rb = records[a], records[b]
            distinct.append((s, float(ra[3] @ rb[3]), min(ham(ra[4], rb[4]), ham(ra[5], rb[4])), ncc(ra[6][0], rb[6])))

    cc = np.array([c[2] for c in copies], float)
    ch = np.array([c[3] for c in copies], float)
    frames = np.array([d[0] == "essex_faces94_19" for d in distinct])
    dc = np.array([d[1] for d in distinct], float)[~frames]
    dh = np.array([d[2] for d in distinct], float)[~frames]
    print(f"{args.detector}+{args.embedder}: {len(records)} photos, {len(copies)} near-copies, "
          f"{len(dc)} distinct same-person pairs (+{frames.sum()} essex frame pairs), {time.perf_counter() - t0:.0f} s")
    q = [0.01, 0.05, 0.5]
    print("same photo cosine   p1 %.3f  p5 %.3f  median %.3f  (not found: %d)" % (*np.nanquantile(cc, q), np.isnan(cc).sum()))
    for kind in COPY_KINDS:
        k = np.array([c[2] for c in copies if c[1] == kind], float)
        kh = np.array([c[3] for c in copies if c[1] == kind], float)
        print(f"  {kind:<10} cosine min {np.nanmin(k):.3f} p5 {np.nanquantile(k, .05):.3f}   phash median {np.median(kh):.0f} p95 {np.quantile(kh, .95):.0f}")
    print("distinct cosine     max %.3f  p99.9 %.3f  p99 %.3f  median %.3f" % (dc.max(), *np.quantile(dc, [0.999, 0.99, 0.5])))
    ec = np.array([d[1] for d in distinct], float)[frames]
    if len(ec):
        print("essex frames cosine median %.3f  p10 %.3f" % (np.median(ec), np.quantile(ec, 0.1)))
    print("distinct phash      min %d  p0.1 %.0f  p1 %.0f" % (dh.min(), *np.quantile(dh, [0.001, 0.01])))
    print("\nthreshold  bits  floor   copies found   distinct pairs merged")
    for t in np.arange(0.80, 0.99, 0.01):
        for bits, floor in ((0, 1.1), (6, 0.6), (8, 0.6), (10, 0.6), (8, 0.7), (10, 0.7), (12, 0.7)):
            found = (cc >= t) | ((ch <= bits) & (cc >= floor))
            merged = (dc >= t) | ((dh <= bits) & (dc >= floor))
            print(f"  {t:.2f}    {bits:>3}   {floor:.2f}   {np.nanmean(found):.3f}          {merged.mean():.4f} ({merged.sum()})")
    if args.json:
        args.json.write_text(json.dumps({"copies": copies, "distinct": distinct}, default=float))
    cn = np.array([c[4] for c in copies], float)
    dn = np.array([d[3] for d in distinct], float)[~frames]
    print("crop NCC: copies p1 %.3f p5 %.3f; distinct max %.3f p99 %.3f p95 %.3f" % (
        *np.nanquantile(cn, [0.01, 0.05]), dn.max(), *np.quantile(dn, [0.99, 0.95])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
