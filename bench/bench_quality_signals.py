"""The `offline` and `offline-full` qualities' figures in docs/quality.md that the test suite does not
print (run by hand):

    python bench/bench_quality_signals.py                        # every part (about 10 minutes on 2 busy cores)
    python bench/bench_quality_signals.py --part degrade --photos 20

- degrade: real photos degraded at five levels (tests/unit/quality/test_quality.py's levels and code), scored by
  the real scan/detect/align/embed/quality path; per degradation, the mean (and min) over photos of
  Spearman(level, loss) for `offline`, the embedding norm, `offline-full`, robustness and each of
  its terms, the noise and blockiness measures and the image measures; blockiness medians per JPEG
  quality.
- sensitivity: `offline` and `offline-full` recomputed from the same components with each reference
  point moved (halved and doubled; the norm's centre moved by 1): the lowest mean Spearman over the
  degradations, and whether every dark Yale B face still scores below every well-lit one of its
  subject.
- yale: Extended Yale B, every subject: the 13 darkest lighting directions against the 7 frontal
  well-lit ones.
- flip: clean faces (essex_faces94_19, orl_att40): Spearman of each perturbation term (flip, noise
  at t = 10, 20, 40) and of two combinations with the face's leave-one-out genuine cosine (cosine
  to the normalised mean of the other faces of its identity).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_quality import IMAGES, LEVELS, degrade, inter_eye_distance, spearman_with_level  # noqa: E402

from facesieve.config import RunConfig  # noqa: E402
from facesieve.imaging import load_rgb  # noqa: E402
from facesieve.quality import offline as C  # noqa: E402
from facesieve.quality.scoring import score_dataset  # noqa: E402

DATA = REPO.parent / "shared" / "data"
# beyond the test's 10 photos: the first photo of 10 more people of the same sets
MORE = [
    "essex_faces94_19/drbost", "essex_faces94_19/ekavaz", "essex_faces94_19/elduns", "essex_faces94_19/kaknig",
    "essex_faces94_19/klclar", "deepface13/person01", "deepface13/person02", "deepface13/person04",
    "deepface13/person05", "deepface13/person06",
]
# columns whose value falls as the face gets worse (quality-like), and raw measures that rise
FALLING = ["offline", "emb_norm", "quality", "robustness", "rob_flip", "rob_t10", "rob_t20", "image_quality"]
LABELS = {"quality": "offline-full"}  # `quality` holds offline-full's score, `offline` the default's
RISING = ["noise_sigma", "blockiness"]


def photos(n: int) -> list[str]:
    out = list(IMAGES)
    for folder in MORE:
        out.append(str(sorted((DATA / folder).glob("*.jpg"))[0].relative_to(DATA)))
    if n > len(out):
        raise SystemExit(f"--photos at most {len(out)}")
    return out[:n]


def degraded_table(rels: list[str], root: Path) -> pd.DataFrame:
    ds = root / "degraded"
    for n, rel in enumerate(rels):
        src = DATA / rel
        rgb, eye = load_rgb(src), inter_eye_distance(src)
        folder = ds / f"img{n:02d}"
        folder.mkdir(parents=True)
        (folder / f"orig0{src.suffix}").symlink_to(src)  # the photo as published (level 0)
        for kind, values in LEVELS.items():
            for level, value in enumerate(values, 1):
                if kind == "jpeg":
                    Image.fromarray(rgb).save(folder / f"{kind}{level}.jpg", quality=int(value))
                else:
                    Image.fromarray(degrade(rgb, kind, value, eye, seed=100 * n + level)).save(folder / f"{kind}{level}.png")
    t = both_methods(ds, root / "out-degraded")
    parts = t["path"].str.extract(r"^(img\d+)/([a-z]+)(\d)\.")
    t["image"], t["kind"], t["level"] = parts[0], parts[1], parts[2].astype(int)
    return t


def yale_table(root: Path, subjects: list[str]) -> pd.DataFrame:
    ds, rows = root / "yale", []
    for subject in subjects:
        (ds / subject).mkdir(parents=True)
        for p in sorted((DATA / "yaleB_cropped10" / subject).glob("*.pgm")):
            m = re.search(r"A([+-]\d+)E([+-]\d+)", p.name)
            az, el = int(m[1]), int(m[2])
            group = "dark" if (abs(az) >= 110 or el >= 90) else "lit" if (abs(az) <= 10 and abs(el) <= 10) else None
            if group:
                (ds / subject / p.name).symlink_to(p)
                rows.append({"path": f"{subject}/{p.name}", "group": group})
    return both_methods(ds, root / "out-yale").merge(pd.DataFrame(rows), on="path")


def both_methods(ds: Path, out: Path) -> pd.DataFrame:
    """offline-full's table (`quality` and its components) with the default's score (`offline`) and
    its norm terms; the second method reuses the first one's faces and embeddings."""
    full = score_dataset(RunConfig(dataset=ds, out=out, quality="offline-full", jobs=2)).table.copy()
    new = score_dataset(RunConfig(dataset=ds, out=out, quality="offline", jobs=2)).table
    return full.merge(new[["path", "quality", "emb_norm", "s_norm"]].rename(columns={"quality": "offline"}), on="path")


def offline_again(t: pd.DataFrame, scale=C.ROBUSTNESS_SCALE, nf=C.NOISE_FLOOR, nr=C.NOISE_REF, bf=C.BLOCK_FLOOR,
                  br=C.BLOCK_REF) -> np.ndarray:
    """`offline-full` from the stored components with other reference points (NaN where no face)."""
    return (np.exp(-(1.0 - t["robustness"].to_numpy(float)) / scale) * C.hinge_score(t["noise_sigma"], nf, nr)
            * C.hinge_score(t["blockiness"], bf, br) * t["image_quality"].to_numpy(float))


def offline_norm_again(t: pd.DataFrame, centre=C.NORM_CENTRE, width=C.NORM_WIDTH, nf=C.NOISE_FLOOR, nr=C.NOISE_REF,
                       bf=C.BLOCK_FLOOR, br=C.BLOCK_REF) -> np.ndarray:
    """`offline` (the default) from the stored components with other reference points."""
    s_norm = 1.0 / (1.0 + np.exp(-(t["emb_norm"].to_numpy(float) - centre) / width))
    return (s_norm * C.hinge_score(t["noise_sigma"], nf, nr) * C.hinge_score(t["blockiness"], bf, br)
            * t["image_quality"].to_numpy(float))


def yale_separation(t: pd.DataFrame, column: str = "quality") -> tuple[bool, float]:
    """(every dark face below every lit one of its subject, the smallest gap lit min - dark max)."""
    gaps = [g.loc[g["group"] == "lit", column].min() - g.loc[g["group"] == "dark", column].max()
            for _, g in t.groupby("identity")]
    return bool(min(gaps) > 0), float(min(gaps))


def part_degrade(t: pd.DataFrame) -> None:
    print(f"\n== degrade: {t['image'].nunique()} photos x 4 degradations x 5 levels "
          f"({int((t['status'] != 'ok').sum())} faces not found); mean (min) over photos of Spearman(level, loss)")
    t = t.copy()
    for col in RISING:
        t[f"-{col}"] = -t[col]
    cols = FALLING + [f"-{c}" for c in RISING]
    rows = {}
    for col in cols:
        rhos = spearman_with_level(t, col)
        rows[LABELS.get(col, col).lstrip("-")] = {k: f"{np.nanmean(v):.2f} ({np.nanmin(v):.2f})" for k, v in rhos.items()}
    print(pd.DataFrame(rows).T.to_string())
    med = t[t["kind"].isin(["orig", "jpeg"])].groupby(["kind", "level"])["blockiness"].median()
    qual = {("orig", 0): "as published", **{("jpeg", i + 1): f"JPEG q{q}" for i, q in enumerate(LEVELS["jpeg"])}}
    print("blockiness, median over photos: " + ", ".join(f"{qual[k]} {med[k]:.2f}" for k in qual if k in med))


def part_sensitivity(t: pd.DataFrame, yale: pd.DataFrame) -> None:
    ok = t["status"] == "ok"
    for column, again in (("quality", offline_again), ("offline", offline_norm_again)):
        assert np.allclose(again(t)[ok], t.loc[ok, column], rtol=1e-9, atol=1e-12), "formula differs from quality/offline.py"
    print("\n== sensitivity: each reference point moved (others unchanged)")
    print(f"{'method':<14}{'reference point':<28}{'factor':>7}{'lowest mean Spearman':>22}{'(degradation)':>15}"
          f"{'Yale: all dark < lit':>22}{'smallest gap':>14}")
    shared = {"noise floor 2": ("nf", C.NOISE_FLOOR), "noise half-point 8": ("nr", C.NOISE_REF),
              "blockiness floor 1.2": ("bf", C.BLOCK_FLOOR), "blockiness half-point 0.8": ("br", C.BLOCK_REF)}
    for method, again, own in (
        ("offline", offline_norm_again, {"norm centre 11": ("centre", C.NORM_CENTRE), "norm width 1": ("width", C.NORM_WIDTH)}),
        ("offline-full", offline_again, {"robustness scale 0.1": ("scale", C.ROBUSTNESS_SCALE)}),
    ):
        for label, point in [("(as shipped)", None)] + list({**own, **shared}.items()):
            key, value = point if point else (None, None)
            factors = (1.0,) if key is None else ((10 / 11, 12 / 11) if key == "centre" else (0.5, 2.0))
            for factor in factors:
                kw = {} if key is None else {key: value * factor}
                tt = t.assign(q=again(t, **kw))
                means = {k: np.mean(v) for k, v in spearman_with_level(tt, "q").items()}
                worst = min(means, key=means.get)
                sep, gap = yale_separation(yale.assign(q=again(yale, **kw)), "q")
                print(f"{method:<14}{label:<28}{factor:>7.3g}{means[worst]:>22.3f}{worst:>15}{str(sep):>22}{gap:>14.3f}")


def part_yale(yale: pd.DataFrame) -> None:
    for method, column in (("offline", "offline"), ("offline-full", "quality")):
        print(f"\n== yale: {yale['identity'].nunique()} subjects, darkest lighting vs frontal well-lit ({method} quality)")
        for subject, g in yale.groupby("identity"):
            dark, lit = g.loc[g["group"] == "dark", column], g.loc[g["group"] == "lit", column]
            print(f"  {subject}: dark {len(dark)} mean {dark.mean():.3f} (max {dark.max():.3f}) | lit {len(lit)} "
                  f"mean {lit.mean():.3f} (min {lit.min():.3f}) | every dark below every lit: {dark.max() < lit.min()}")
        sep, gap = yale_separation(yale, column)
        print(f"  all subjects separated: {sep} (smallest gap {gap:.3f}); faces not found: {int((yale['status'] != 'ok').sum())}")


def part_flip() -> None:
    from facesieve.quality.robustness import model_inputs, perturbation_similarities
    from facesieve.stages import FaceTask, embedder, faces_worker

    emb = embedder("sface")
    print("\n== flip: Spearman of each term with the leave-one-out genuine cosine (SFace)")
    for name in ("essex_faces94_19", "orl_att40"):
        crops, ids = [], []
        for p in sorted(f for f in (DATA / name).rglob("*") if f.suffix.lower() in (".jpg", ".pgm")):
            row, crop = faces_worker(FaceTask("x", "x", str(p), "yunet", "central", False, True))
            if row["status"] == "ok":
                crops.append(crop)
                ids.append(p.parent.name)
        ids = np.array(ids)
        inputs = model_inputs(emb, np.stack(crops))
        clean = np.asarray(emb.embed_batch(inputs), np.float64)
        clean /= np.linalg.norm(clean, axis=1, keepdims=True)
        sims = perturbation_similarities(emb, inputs, clean, steps=(10, 20, 40))
        genuine = np.empty(len(ids))
        for i in np.unique(ids):
            rows = np.flatnonzero(ids == i)
            total = clean[rows].sum(axis=0)
            for r in rows:
                others = total - clean[r]
                genuine[r] = clean[r] @ others / max(np.linalg.norm(others), 1e-12)
        terms = {**sims, "mean(flip, t10, t20, t40)": np.mean([sims[k] for k in ("flip", "t10", "t20", "t40")], axis=0),
                 "shipped: 1/2 flip + 1/2 mean(t10, t20)": 0.5 * sims["flip"] + 0.25 * (sims["t10"] + sims["t20"])}
        print(f"  {name} ({len(ids)} faces, {len(np.unique(ids))} identities): "
              + ", ".join(f"{k} {spearmanr(v, genuine).statistic:.2f}" for k, v in terms.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", action="append", choices=("degrade", "sensitivity", "yale", "flip"),
                    help="parts to run (repeatable; default all)")
    ap.add_argument("--photos", type=int, default=20, help="degraded photos: the test's 10, then 10 more (default 20)")
    args = ap.parse_args()
    parts = set(args.part or ("degrade", "sensitivity", "yale", "flip"))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facesieve-quality-") as tmp:
        root = Path(tmp)
        t = degraded_table(photos(args.photos), root) if parts & {"degrade", "sensitivity"} else None
        subjects = sorted(p.name for p in (DATA / "yaleB_cropped10").iterdir() if p.is_dir())
        yale = yale_table(root, subjects) if parts & {"sensitivity", "yale"} else None
        if "degrade" in parts:
            part_degrade(t)
        if "sensitivity" in parts:
            part_sensitivity(t, yale)
        if "yale" in parts:
            part_yale(yale)
        if "flip" in parts:
            part_flip()
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
