"""Calibrate the pixel copy check (facesieve/select/copycheck.py) on ../shared/data (run by hand).

Two distributions of the check's residual (grey levels), as docs/thresholds.md describes:
- copies: sampled real photos against near-copies of themselves made by facesieve/augment.py
  (saved as the injection test saves them: JPEG for re-encodes, PNG otherwise), and against
  copies made with other libraries' kernels (OpenCV JPEG, OpenCV resize, Pillow bicubic
  rotation), to show what the exact re-makes depend on;
- distinct photos: every pair of different photos of one person in the chosen sets.

    python bench/calibrate_copycheck.py --sets orl_att40,deepface13,yaleB_cropped10 --per-id 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facesieve.augment import COPY_KINDS, jpeg_bytes, near_copy
from facesieve.imaging import load_rgb
from facesieve.select.copycheck import DEFAULT_MAX_SIDE, copy_residual, load_view

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm")


def other_library_copies(rgb: np.ndarray, rng: np.random.Generator) -> dict[str, tuple[np.ndarray | bytes, str]]:
    """Copies made with kernels the check does not re-make exactly."""
    import cv2

    h, w = rgb.shape[:2]
    ok, enc = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
    f = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    resized = cv2.resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_LINEAR)
    angle = float(rng.choice([-1, 1]) * rng.uniform(2.0, 6.0))
    rotated = np.asarray(Image.fromarray(rgb).rotate(angle, resample=Image.BICUBIC))
    cut = rgb[round(0.03 * h) : h - round(0.02 * h), round(0.02 * w) : w - round(0.03 * w)]
    crop_back = cv2.resize(cut, (w, h), interpolation=cv2.INTER_CUBIC)
    return {"cv-jpeg": (enc.tobytes(), ".jpg"), "cv-resize-linear": (resized, ".png"),
            "pil-rotate-bicubic": (rotated, ".png"), "crop-resized-back": (crop_back, ".png")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--sets", default="orl_att40,deepface13,yaleB_cropped10")
    ap.add_argument("--per-id", type=int, default=3, help="photos per identity that get copies (default: 3)")
    ap.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", type=Path, default=None, help="write every pair's residual here")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.sets.split(","):
            folders = sorted(p for p in (args.data / s).iterdir() if p.is_dir())
            for folder in folders:
                files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                views = [load_view(p, args.max_side) for p in files]
                for i, j in combinations(range(len(files)), 2):
                    t = time.perf_counter()
                    r, edit = copy_residual(views[i], views[j])
                    rows.append((s, "distinct", f"{folder.name}/{files[i].name}~{files[j].name}", r, edit, time.perf_counter() - t))
                for i in rng.choice(len(files), size=min(args.per_id, len(files)), replace=False):
                    rgb = load_rgb(files[i])
                    made = {}
                    for kind in COPY_KINDS:
                        if kind == "jpeg":
                            made[kind] = (jpeg_bytes(rgb, int(rng.integers(30, 91))), ".jpg")
                        else:
                            made[kind] = (near_copy(rgb, kind, rng), ".png")
                    made.update(other_library_copies(rgb, rng))
                    for kind, (data, suffix) in made.items():
                        out = Path(tmp) / f"copy{suffix}"
                        if isinstance(data, bytes):
                            out.write_bytes(data)
                        else:
                            Image.fromarray(data).save(out)
                        t = time.perf_counter()
                        r, edit = copy_residual(views[i], load_view(out, args.max_side))
                        group = "copy" if kind in COPY_KINDS else "other-library copy"
                        rows.append((s, f"{group}: {kind}", f"{folder.name}/{files[i].name}", r, edit, time.perf_counter() - t))
    df = pd.DataFrame(rows, columns=["set", "pair", "name", "residual", "edit", "seconds"])
    if args.csv:
        df.to_csv(args.csv, index=False)
    pd.set_option("display.width", 200)
    print(f"{len(df)} pairs in {time.perf_counter() - t0:.0f} s")
    q = df.groupby(["set", "pair"])["residual"].describe(percentiles=[0.01, 0.5, 0.99])[["count", "min", "1%", "50%", "99%", "max"]]
    print(q.round(3).to_string())
    print("ms per pair (median / p99):", df.groupby("set")["seconds"].quantile([0.5, 0.99]).mul(1000).round(1).to_dict())
    dist = df[df["pair"] == "distinct"].nsmallest(8, "residual")
    print("closest distinct pairs:\n" + dist[["set", "name", "residual", "edit"]].to_string(index=False))
    own = df[df["pair"].str.startswith("copy")].nlargest(8, "residual")
    print("farthest copies:\n" + own[["set", "pair", "name", "residual", "edit"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
