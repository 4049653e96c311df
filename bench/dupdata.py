"""Benchmark data for bench_duplicates.py: each shared set with web-style copies injected, the
64-pixel versions of pins_web and celeb5_web, and the natural pairs their READMEs list.

Copies are made by facesieve.augment.web_copy (every kind of the duplicates issue, composites
included) and saved as the web saves them (facesieve.augment.web_bytes: mostly JPEG q60-95).
Every set lives under ROOT/data/<set>/<identity>/..., its copies listed in ROOT/data/<set>.copies.csv.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facesieve.augment import WEB_COPY_KINDS, web_bytes, web_copy
from facesieve.imaging import load_rgb

SETS = ("pins_web", "celeb5_web", "deepface13", "orl_att40", "essex_faces94_19", "yaleB_cropped10", "seed_vggface")
SMALL = {"pins_web_64": "pins_web", "celeb5_web_64": "celeb5_web"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".webp", ".bmp")


def originals(data: Path, name: str) -> list[Path]:
    base = data / name / "dataset" if name == "seed_vggface" else data / name
    return [p for p in sorted(base.glob("*/*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def small_version(rgb: np.ndarray, box: tuple[float, float, float, float] | None, side: int = 64) -> np.ndarray:
    """A `side`-pixel face image: the face box with a margin (when known: uncropped photos), or the
    whole image (face crops), reduced with area averaging so the long side is `side`."""
    import cv2

    if box is not None:
        x, y, w, h = box
        cx, cy, s = x + w / 2, y + h / 2, 1.6 * max(w, h)
        x0, y0 = int(max(0, cx - s / 2)), int(max(0, cy - s / 2))
        rgb = rgb[y0 : int(min(rgb.shape[0], cy + s / 2)), x0 : int(min(rgb.shape[1], cx + s / 2))]
    h, w = rgb.shape[:2]
    f = side / max(h, w)
    return cv2.resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)


def build_set(src_files: list[Path], dst: Path, share: float, seed: int, min_copies: int = 40,
              transform=None) -> pd.DataFrame:
    """Copy the originals into dst (through `transform(path) -> rgb` if given, saved as JPEG q95),
    then inject copies of a share of them, every kind in turn. Returns path, source, kind, edits."""
    rng = np.random.default_rng(seed)
    rels = []
    for p in src_files:
        rel = f"{p.parent.name}/{p.name}"
        (dst / p.parent.name).mkdir(parents=True, exist_ok=True)
        if transform is None:
            shutil.copyfile(p, dst / rel)
        else:
            rel = str(Path(rel).with_suffix(".png"))
            Image.fromarray(transform(p)).save(dst / rel)
        rels.append(rel)
    n = max(min_copies, round(share * len(rels)))
    picks = rng.choice(len(rels), size=n, replace=n > len(rels))
    rows = []
    for t, i in enumerate(picks):
        kind = WEB_COPY_KINDS[t % len(WEB_COPY_KINDS)]
        rel = rels[i]
        rgb, edits = web_copy(load_rgb(dst / rel), kind, rng)
        data, suffix = web_bytes(rgb, kind, rng)
        out = f"{Path(rel).parent}/copy{t:04d}_{kind}_{Path(rel).stem}{suffix}"
        (dst / out).write_bytes(data)
        rows.append((out, rel, kind, "+".join(edits)))
    return pd.DataFrame(rows, columns=["path", "source", "kind", "edits"])


# ---------------------------------------------------------------- natural pairs (READMEs)


def _pins_name(ident: str, short: str) -> str:
    return f"{ident}/{ident.replace('_', ' ')}{short}.jpg"


def natural_pairs(data: Path, name: str) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Same-photo pairs and burst groups the set's README lists (relative paths)."""
    if name not in ("pins_web", "celeb5_web"):
        return [], []
    text = (data / name / "README.txt").read_text()
    if name == "celeb5_web":
        pairs = [("Ben_Affleck/train_6.jpg", "Ben_Affleck/val_3.jpg"),
                 ("Jerry_Seinfeld/train_10.jpg", "Jerry_Seinfeld/train_13.jpg"),
                 ("Jerry_Seinfeld/train_11.jpg", "Jerry_Seinfeld/train_9.jpg")]
        return [p for p in pairs if f"{p[0].split('/')[1][:-4]}" in text], []
    same_block = text.split("Same photo, re-cropped")[1].split("Consecutive frames")[0]
    burst_block = text.split("Consecutive frames of one video or burst")[1].split("The list is what")[0]
    pairs, bursts = [], []
    for ident, body in re.findall(r"([A-Z][A-Za-z_.]+)\s+((?:\d+_\d+~\d+_\d+(?: \([^)]*\))?,?\s*)+)", same_block):
        for a, b in re.findall(r"(\d+_\d+)~(\d+_\d+)", body):
            pairs.append((_pins_name(ident, a), _pins_name(ident, b)))
    for ident, body in re.findall(r"([A-Z][A-Za-z_.]+)\s+((?:\d+_\d+(?:/\d+)+,?\s*)+)", burst_block):
        for grp in re.findall(r"(\d+)_(\d+(?:/\d+)+)", body):
            k, ns = grp
            bursts.append([_pins_name(ident, f"{k}_{n}") for n in ns.split("/")])
    return pairs, bursts
