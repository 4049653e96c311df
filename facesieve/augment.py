"""Near-copies of a photo, as scraped datasets contain them: re-encoded, resized, cropped, flipped,
recoloured, slightly rotated. Used to calibrate duplicate thresholds, in tests and in benchmarks.

Each transform takes and returns an HxWx3 uint8 RGB array (JPEG returns the decoded re-encoding).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def jpeg_bytes(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()


def resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(8, round(w * factor)), max(8, round(h * factor)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC if factor > 1 else Image.LANCZOS))


def crop(rgb: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Cut `fraction` of the width and of the height, split at random between the two sides."""
    h, w = rgb.shape[:2]
    cw, ch = round(w * fraction), round(h * fraction)
    left, top = int(rng.integers(0, cw + 1)), int(rng.integers(0, ch + 1))
    return np.ascontiguousarray(rgb[top : h - (ch - top), left : w - (cw - left)])


def hflip(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


def brightness(rgb: np.ndarray, factor: float) -> np.ndarray:
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(rgb)).enhance(factor))


def rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre, same size, borders filled by edge pixels (no black wedges)."""
    import cv2

    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# the near-copy kinds of the duplicates issue, each with its random parameter range
COPY_KINDS: dict[str, Transform] = {
    "jpeg": lambda x, r: jpeg(x, int(r.integers(30, 91))),
    "resize": lambda x, r: resize(x, float(np.exp(r.uniform(np.log(0.5), np.log(2.0))))),
    "crop": lambda x, r: crop(x, 0.05, r),
    "flip": lambda x, r: hflip(x),
    "brightness": lambda x, r: brightness(x, float(r.choice([-1, 1]) * r.uniform(0.1, 0.2) + 1.0)),
    "rotate": lambda x, r: rotate(x, float(r.choice([-1, 1]) * r.uniform(2.0, 6.0))),
}


def near_copy(rgb: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind not in COPY_KINDS:
        raise ValueError(f"unknown copy kind {kind!r}; choose from {', '.join(COPY_KINDS)}")
    return COPY_KINDS[kind](rgb, rng)
