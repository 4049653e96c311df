"""Is one image an edited copy of the other? A pixel check for near-duplicate candidates.

Why: embeddings and perceptual hashes cannot tell a re-encoded, resized, cropped or rotated copy
of a photo from another shot of the same sitting (ORL's ten photos per person are a second apart;
their cosines and hashes overlap those of copies, docs/thresholds.md). Pixels can: a copy is its
source put through one common edit, so re-making it from the source leaves almost nothing, while
another shot, however close, differs by its own noise, focus and expression.

The check tries to re-make image B from image A (and A from B; each also mirrored) by:

- identity: same size, a gain/offset tone change (brightness, contrast) or nothing;
- jpeg: B is a JPEG file; A re-encoded with B's own quantization tables and chroma sampling;
- crop: B is a window of A (template matching on the grey image);
- resize: A resized to B's size with the usual kernels (Lanczos, bicubic, bilinear, area);
- ecc: A resized to B's size, then the affine warp that best aligns it (OpenCV's ECC), bilinear:
  rotations, small shifts, crops that were resized back.

Every candidate re-make gets a least-squares gain/offset (clipped to 0..255) and is scored by its
mean absolute difference from the target in grey levels, inside a 3-pixel margin. The residual
of the pair is the smallest over the tries; below `threshold` the pair is one photo.

Large photos are compared at `max_side` pixels (each image reduced with area averaging), which
keeps the cost bounded; exact re-makes then no longer come out exact, and the ECC try does the
work. The check runs only on pairs the embedding already calls similar (see neardup.py).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facesieve.imaging import load_rgb

__all__ = ["PixelView", "load_view", "copy_residual", "CopyCheck", "DEFAULT_RESIDUAL", "DEFAULT_MAX_SIDE"]

# Residual (grey levels) at or below which B is re-made from A, calibrated in docs/thresholds.md
# with bench/calibrate_copycheck.py. At native size, exact re-makes: copies of ORL photos leave at
# most 0.26 (0.75 made with other libraries' kernels), distinct shots of one sitting 1.19 or more.
# When a photo was reduced to max_side, re-makes are no longer exact: deepface13's copies leave up
# to 2.0 (3.8 seen once), its distinct photos of one person 21.1 or more; the cut is then REDUCED_FACTOR times wider.
DEFAULT_RESIDUAL = 0.7
REDUCED_FACTOR = 8.0
DEFAULT_MAX_SIDE = 512
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_MARGIN = 3
_MIN_PIXELS = 64
_TRIM = 0.95


@dataclass
class PixelView:
    """One image as the check sees it: RGB (reduced to max_side), its grey, JPEG tables if native."""

    rgb: np.ndarray
    grey: np.ndarray
    native: bool
    jpeg: tuple | None = None
    clipped: np.ndarray | None = None  # a channel at 0..2 or 253..255: the grey there is no longer linear  # (quantization tables, chroma subsampling) of a JPEG file at native size


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _LUMA


def view_of(rgb: np.ndarray, max_side: int = DEFAULT_MAX_SIDE, jpeg: tuple | None = None) -> PixelView:
    import cv2

    h, w = rgb.shape[:2]
    native = max(h, w) <= max_side
    if not native:
        f = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
        jpeg = None
    clipped = (rgb.max(axis=2) >= 253) | (rgb.min(axis=2) <= 2)
    return PixelView(np.ascontiguousarray(rgb), _grey(rgb), native, jpeg, clipped)


def load_view(path: Path | str, max_side: int = DEFAULT_MAX_SIDE) -> PixelView:
    """Decode `path` (any format load_rgb reads) into a PixelView; JPEG tables kept for the jpeg try."""
    rgb = load_rgb(path)
    jpeg = None
    try:
        with Image.open(path) as im:
            if im.format == "JPEG" and getattr(im, "quantization", None):
                from PIL import JpegImagePlugin

                jpeg = (dict(im.quantization), JpegImagePlugin.get_sampling(im))
    except OSError:
        pass
    return view_of(rgb, max_side, jpeg)


def _tone_residual(pred: np.ndarray, dst: PixelView, mask: np.ndarray | None = None) -> float:
    """Residual of `pred` as a re-make of dst: mean |g*pred + o - target| over the best 95% of the
    pixels inside the mask (the inner margin by default), leaving out pixels clipped in the target
    (a brightened copy clips channels one by one, which bends the grey). g and o are fitted by
    least squares; a gain outside 0.6..1.6 is no copy. The 5% trim forgives the corners a rotation
    fills with black and small overlays."""
    target = dst.grey
    if mask is None:
        mask = np.zeros(target.shape, bool)
        mask[_MARGIN:-_MARGIN, _MARGIN:-_MARGIN] = True
    use = mask & ~dst.clipped
    sel = use & (pred > 2) & (pred < 253)
    if sel.sum() < _MIN_PIXELS:
        return float("inf")
    p = pred[sel].astype(np.float64)
    t = target[sel].astype(np.float64)
    pm, tm = p.mean(), t.mean()
    var = ((p - pm) ** 2).sum()
    if var <= 0:
        return float("inf")
    g = ((p - pm) * (t - tm)).sum() / var
    if not 0.6 < g < 1.6:
        return float("inf")
    diff = np.abs(np.clip(g * pred[use] + (tm - g * pm), 0, 255) - target[use])
    keep = max(1, int(_TRIM * diff.size))
    return float(np.partition(diff, keep - 1)[:keep].mean())


# Pillow's resampling filters (antialiased) and OpenCV's interpolations (area; plain linear and
# cubic sampling, which alias when shrinking): the kernels most resized copies come from
_KERNELS = (("pil", Image.LANCZOS), ("pil", Image.BICUBIC), ("pil", Image.BILINEAR),
            ("cv", 3), ("cv", 1), ("cv", 2))  # cv2.INTER_AREA, INTER_LINEAR, INTER_CUBIC


def _resized(rgb: np.ndarray, w: int, h: int, kernel: tuple[str, int] = ("pil", Image.LANCZOS)) -> np.ndarray:
    import cv2

    lib, k = kernel
    if lib == "cv":
        return cv2.resize(rgb, (w, h), interpolation=k)
    return np.asarray(Image.fromarray(rgb).resize((w, h), k))


def _jpeg_residual(src: PixelView, dst: PixelView) -> float:
    if dst.jpeg is None or not src.native or src.rgb.shape != dst.rgb.shape:
        return float("inf")
    tables, sampling = dst.jpeg
    buf = io.BytesIO()
    try:
        Image.fromarray(src.rgb).save(buf, "JPEG", qtables=tables, subsampling=sampling)
    except (ValueError, OSError):
        return float("inf")
    remade = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    inner = (slice(_MARGIN, -_MARGIN), slice(_MARGIN, -_MARGIN))
    return float(np.abs(_grey(remade)[inner] - dst.grey[inner]).mean())


def _crop_residual(s: np.ndarray, dst: PixelView) -> float:
    import cv2

    d = dst.grey
    (hs, ws), (hd, wd) = s.shape, d.shape
    if not (0.85 * hs <= hd <= hs and 0.85 * ws <= wd <= ws) or (hs, ws) == (hd, wd):
        return float("inf")
    scores = cv2.matchTemplate(s, d, cv2.TM_CCOEFF_NORMED)
    y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return _tone_residual(s[y : y + hd, x : x + wd], dst)


def _ecc_residual(s: np.ndarray, dst: PixelView) -> float:
    """s already at dst's size: affine ECC from the identity, then bilinear and bicubic re-makes
    (the two usual warps), valid pixels only."""
    import cv2

    d = dst.grey
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    try:
        _, warp = cv2.findTransformECC(d, s, warp, cv2.MOTION_AFFINE, criteria, None, 1)
    except cv2.error:  # did not converge: no copy
        return float("inf")
    h, w = d.shape
    inside = cv2.warpAffine(np.ones_like(s), warp, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    inside = cv2.erode((inside > 0).astype(np.uint8), np.ones((2 * _MARGIN + 1,) * 2, np.uint8)) > 0
    return min(
        _tone_residual(cv2.warpAffine(s, warp, (w, h), flags=interp | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE), dst, inside)
        for interp in (cv2.INTER_LINEAR, cv2.INTER_CUBIC)
    )


def _thumb(g: np.ndarray) -> np.ndarray:
    import cv2

    t = cv2.resize(g, (24, 24), interpolation=cv2.INTER_AREA).reshape(-1)
    t = t - t.mean()
    return t / max(float(np.linalg.norm(t)), 1e-6)


def copy_residual(a: PixelView, b: PixelView, stop_below: float = 0.0) -> tuple[float, str]:
    """Smallest residual (grey levels) of re-making one image from the other, and the edit that
    did it. Returns as soon as a try reaches `stop_below` (pass the decision threshold)."""
    best, edit = float("inf"), ""
    # cheap tries first, both directions and mirrored; the ECC try last, in the orientation whose
    # thumbnails agree best
    for src, dst in ((a, b), (b, a)):
        r = _jpeg_residual(src, dst)
        if r < best:
            best, edit = r, "jpeg"
        if best <= stop_below:
            return best, edit
        hd, wd = dst.grey.shape
        for mirrored in (False, True):
            s_rgb = np.ascontiguousarray(src.rgb[:, ::-1]) if mirrored else src.rgb
            s = np.ascontiguousarray(src.grey[:, ::-1]) if mirrored else src.grey
            tries = []
            if s.shape == dst.grey.shape:
                tries.append(("identity", lambda s=s: _tone_residual(s, dst)))
            tries.append(("crop", lambda s=s: _crop_residual(s, dst)))
            hs, ws = s.shape
            if s.shape != dst.grey.shape and abs(hs / ws - hd / wd) <= 0.03 * hd / wd:
                for k in _KERNELS:
                    tries.append(("resize", lambda k=k, s_rgb=s_rgb: _tone_residual(_grey(_resized(s_rgb, wd, hd, k)), dst)))
            for name, run in tries:
                r = run()
                if r < best:
                    best, edit = r, name + (" mirrored" if mirrored else "")
                if best <= stop_below:
                    return best, edit
    for src, dst in ((a, b), (b, a)):  # both ways: a rotated copy's filled corners re-make nothing
        s = src.grey if src.grey.shape == dst.grey.shape else _grey(_resized(src.rgb, dst.grey.shape[1], dst.grey.shape[0]))
        t = _thumb(dst.grey)
        mirrored = float(_thumb(np.ascontiguousarray(s[:, ::-1])) @ t) > float(_thumb(s) @ t)
        r = _ecc_residual(np.ascontiguousarray(s[:, ::-1]) if mirrored else s, dst)
        if r < best:
            best, edit = r, "ecc" + (" mirrored" if mirrored else "")
        if best <= stop_below:
            break
    return best, edit


class CopyCheck:
    """Pixel check over the files of a run, with a small cache of decoded images.

    Called as check(i, j) with two row numbers into `files`; returns (is_copy, residual, edit).
    Unreadable files are never copies. `threshold` is the native-size cut; pairs compared reduced
    to max_side use REDUCED_FACTOR times it. `pairs` and `copies` count the calls and the matches.
    """

    def __init__(self, files: list[Path], threshold: float = DEFAULT_RESIDUAL, max_side: int = DEFAULT_MAX_SIDE, cache: int = 256):
        self.files = files
        self.threshold = float(threshold)
        self.max_side = int(max_side)
        self._cache: OrderedDict[int, PixelView | None] = OrderedDict()
        self._cache_size = cache
        self.pairs = 0
        self.copies = 0

    def view(self, i: int) -> PixelView | None:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        try:
            v = load_view(self.files[i], self.max_side)
        except Exception:  # noqa: BLE001 - an unreadable file is simply not a copy
            v = None
        self._cache[i] = v
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return v

    def __call__(self, i: int, j: int) -> tuple[bool, float, str]:
        self.pairs += 1
        a, b = self.view(i), self.view(j)
        if a is None or b is None:
            return False, float("inf"), ""
        cut = self.threshold if (a.native and b.native) else self.threshold * REDUCED_FACTOR
        r, edit = copy_residual(a, b, stop_below=cut)
        ok = r <= cut
        self.copies += ok
        return ok, r, edit
