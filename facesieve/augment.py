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


# ---------------------------------------------------------------- copies as the web makes them
# The same-photo kinds of docs/thresholds.md (issue 15): each edit at its full documented range,
# composites of two or three, and the file saved as re-published photos are (mostly JPEG q60-95).

_PIL_KERNELS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
_CV_KERNELS = ("area", "linear", "cubic")
MAX_COPY_SIDE = 3000  # an x3 upscale of a 4000-pixel photo is capped here


def resize_kernel(rgb: np.ndarray, fx: float, fy: float, kernel: str) -> np.ndarray:
    """Resize by (fx, fy) with a named Pillow or OpenCV kernel (capped at MAX_COPY_SIDE)."""
    import cv2

    h, w = rgb.shape[:2]
    cap = min(1.0, MAX_COPY_SIDE / max(w * fx, h * fy))
    size = (max(8, round(w * fx * cap)), max(8, round(h * fy * cap)))
    if kernel in _CV_KERNELS:
        flag = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[kernel]
        return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=flag))
    return np.asarray(Image.fromarray(rgb).resize(size, getattr(Image.Resampling, kernel.upper())))


def tone(rgb: np.ndarray, brightness_f: float = 1.0, contrast_f: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """Brightness and contrast (Pillow's enhancers), then a gamma curve."""
    img = Image.fromarray(rgb)
    img = ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(brightness_f)).enhance(contrast_f)
    x = np.asarray(img).astype(np.float32) / 255.0
    return np.clip(255.0 * x**gamma + 0.5, 0, 255).astype(np.uint8)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(Image.fromarray(rgb).convert("L"))[..., None], 3, axis=2)


def border(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A solid frame or padding, 2-12% of the size on each side (sides drawn independently)."""
    h, w = rgb.shape[:2]
    t, b = (round(h * rng.uniform(0.02, 0.12)) for _ in range(2))
    lft, r = (round(w * rng.uniform(0.02, 0.12)) for _ in range(2))
    colour = rng.choice([0, 255, int(rng.integers(0, 256))], size=1)[0] if rng.random() < 0.6 else rng.integers(0, 256, 3)
    out = np.empty((h + t + b, w + lft + r, 3), np.uint8)
    out[:] = np.asarray(colour, np.uint8)
    out[t : t + h, lft : lft + w] = rgb
    return out


def overlay(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A caption bar (bottom or top) or a logo box in a corner, covering 3-10% of the image."""
    from PIL import ImageDraw

    h, w = rgb.shape[:2]
    img = Image.fromarray(rgb.copy())
    draw = ImageDraw.Draw(img)
    share = rng.uniform(0.03, 0.10)
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    ink = tuple(255 - v for v in fill)
    if rng.random() < 0.5:  # caption bar across the width
        bh = max(2, round(h * share))
        y0 = h - bh if rng.random() < 0.7 else 0
        box = (0, y0, w - 1, y0 + bh - 1)
    else:  # logo in a corner
        side = max(2, round(np.sqrt(share * w * h)))
        bw, bh = min(w, round(side * rng.uniform(1.0, 1.6))), min(h, round(side / rng.uniform(1.0, 1.6)))
        x0 = int(rng.choice([0, w - bw])) + (2 if bw < w - 4 else 0) * (1 if rng.random() < 0.5 else 0)
        y0 = int(rng.choice([0, h - bh]))
        box = (max(0, min(x0, w - bw)), y0, max(0, min(x0, w - bw)) + bw - 1, y0 + bh - 1)
    draw.rectangle(box, fill=fill)
    draw.text((box[0] + 2, box[1] + 1), "© news photo", fill=ink)
    return np.asarray(img)


def aspect(rgb: np.ndarray, stretch: float, rng: np.random.Generator) -> np.ndarray:
    """Stretch one axis by `stretch` (e.g. 1.08 or 0.93), kernel drawn at random."""
    fx, fy = (stretch, 1.0) if rng.random() < 0.5 else (1.0, stretch)
    return resize_kernel(rgb, fx, fy, str(rng.choice(["lanczos", "bicubic", "bilinear", "area"])))


def _sign(r: np.random.Generator) -> float:
    return float(r.choice([-1.0, 1.0]))


def _tone_edit(x: np.ndarray, r: np.random.Generator) -> np.ndarray:
    what = r.choice(["brightness", "contrast", "gamma", "all"])
    b = 1 + _sign(r) * r.uniform(0.05, 0.25) if what in ("brightness", "all") else 1.0
    c = 1 + _sign(r) * r.uniform(0.05, 0.25) if what in ("contrast", "all") else 1.0
    g = 1 + _sign(r) * r.uniform(0.05, 0.25) if what in ("gamma", "all") else 1.0
    return tone(x, b, c, g)


def _resize_edit(x: np.ndarray, r: np.random.Generator) -> np.ndarray:
    f = float(np.exp(r.uniform(np.log(0.3), np.log(3.0))))
    return resize_kernel(x, f, f, str(r.choice(_PIL_KERNELS + _CV_KERNELS)))


# one edit each, at the full range; "reencode" edits nothing (the saving re-encodes)
WEB_EDITS: dict[str, Transform] = {
    "reencode": lambda x, r: x,
    "resize": _resize_edit,
    "crop": lambda x, r: crop(x, float(r.uniform(0.03, 0.15)), r),
    "flip": lambda x, r: hflip(x),
    "tone": _tone_edit,
    "grayscale": lambda x, r: grayscale(x),
    "rotate": lambda x, r: rotate(x, _sign(r) * float(r.uniform(1.0, 10.0))),
    "border": border,
    "overlay": overlay,
    "aspect": lambda x, r: aspect(x, 1 + _sign(r) * float(r.uniform(0.03, 0.10)), r),
}
WEB_COPY_KINDS = (*WEB_EDITS, "composite")


def web_copy(rgb: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """The edited image and the edits applied ("composite": two or three distinct edits)."""
    if kind == "composite":
        edits = list(rng.choice([k for k in WEB_EDITS if k != "reencode"], size=int(rng.integers(2, 4)), replace=False))
    elif kind in WEB_EDITS:
        edits = [kind]
    else:
        raise ValueError(f"unknown copy kind {kind!r}; choose from {', '.join(WEB_COPY_KINDS)}")
    for e in edits:
        rgb = WEB_EDITS[e](rgb, rng)
    return np.ascontiguousarray(rgb), [str(e) for e in edits]


def web_bytes(rgb: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """Encode as the web re-publishes: JPEG q60-95 mostly; a re-encode copy is JPEG q30-95, PNG
    or WebP. Returns (bytes, file suffix)."""
    buf = io.BytesIO()
    img = Image.fromarray(rgb)
    u = rng.random()
    if kind == "reencode" and u < 0.2:
        img.save(buf, "PNG")
        return buf.getvalue(), ".png"
    if (kind == "reencode" and u < 0.4) or (kind != "reencode" and u < 0.05):
        img.save(buf, "WEBP", quality=int(rng.integers(50, 96)))
        return buf.getvalue(), ".webp"
    if kind != "reencode" and u < 0.1:
        img.save(buf, "PNG")
        return buf.getvalue(), ".png"
    q = int(rng.integers(30, 96)) if kind == "reencode" else int(rng.integers(60, 96))
    img.save(buf, "JPEG", quality=q)
    return buf.getvalue(), ".jpg"
