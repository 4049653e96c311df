"""Is one image an edited copy of the other? A pixel check for near-duplicate candidates.

Why: embeddings and perceptual hashes cannot tell a re-encoded, resized, cropped or rotated copy
of a photo from another shot of the same sitting (ORL's ten photos per person are a second apart;
their cosines and hashes overlap those of copies, docs/thresholds.md). Pixels can: a copy is its
source put through one common edit, so re-making it from the source leaves almost nothing, while
another shot, however close, differs by its own noise, focus and expression.

The check tries to re-make image B from image A and A from B, each in the orientation (plain or
mirrored) whose thumbnails agree best, by:

- identity: same size, a gain/offset tone change (brightness, contrast) or nothing;
- jpeg: B is a JPEG file; A re-encoded with B's own quantization tables and chroma sampling;
- crop: B is a window of A (template matching on the grey image);
- resize: A resized to B's size with the usual kernels (Pillow Lanczos, bicubic, bilinear;
  OpenCV area, linear, cubic);
- ecc: the larger image at the smaller one's size, then the affine warp that best aligns the two
  (OpenCV's ECC), re-made bilinear and bicubic, both ways: rotations, small shifts, crops that
  were resized back.

Every candidate re-make gets a least-squares gain/offset (clipped to 0..255) and is scored by its
mean absolute difference from the target in grey levels, over the best 95% of the pixels inside a
3-pixel margin. The residual of the pair is the smallest over the tries; at or below the cut the
pair is one photo.

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
# most 0.26 (0.75 made with other libraries' kernels), distinct shots of one sitting 1.19 or more
# (yaleB: 0.245 against 1.09).
# When a photo was reduced to max_side, re-makes are no longer exact: deepface13's copies leave up
# to 2.0 (3.8 seen once), its distinct photos of one person 19.7 or more; the cut is then REDUCED_FACTOR times wider.
DEFAULT_RESIDUAL = 0.7
REDUCED_FACTOR = 8.0
DEFAULT_MAX_SIDE = 512
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_MARGIN = 3
_MIN_PIXELS = 64
_ECC_SIDE = 128  # ECC aligns larger images at this size first, ...
_ECC_REFINE = 10  # ... then refines in this many iterations at full size
_ECC_CRITERIA = (3, 50, 1e-5)  # cv2.TERM_CRITERIA_EPS | COUNT: 50 iterations or a step below 1e-5
_TRIM = 0.95


@dataclass
class PixelView:
    """One image as the check sees it: RGB (reduced to max_side), its grey, JPEG tables if native."""

    rgb: np.ndarray
    grey: np.ndarray
    native: bool
    jpeg: tuple | None = None  # (quantization tables, chroma subsampling) of a JPEG file at native size
    clipped: np.ndarray | None = None  # a channel at 0..2 or 253..255: the grey there is no longer linear


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


def _ecc_warp(s: np.ndarray, d: np.ndarray) -> np.ndarray | None:
    """Affine warp with s(warp(x)) ~ d(x), by OpenCV's ECC from the identity; None if it does not
    converge. Images larger than _ECC_SIDE are aligned reduced first, then refined in a few
    iterations at full size (the full-size search is what a run spends its time on)."""
    import cv2

    warp = np.eye(2, 3, dtype=np.float32)
    side = max(d.shape)
    try:
        if side > _ECC_SIDE:
            f = _ECC_SIDE / side
            size = (max(8, round(d.shape[1] * f)), max(8, round(d.shape[0] * f)))
            small = [cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (d, s)]
            _, warp = cv2.findTransformECC(small[0], small[1], warp, cv2.MOTION_AFFINE, _ECC_CRITERIA, None, 1)
            warp[:, 2] /= f
            refine = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, _ECC_REFINE, 1e-6)
            _, warp = cv2.findTransformECC(d, s, warp, cv2.MOTION_AFFINE, refine, None, 1)
        else:
            _, warp = cv2.findTransformECC(d, s, warp, cv2.MOTION_AFFINE, _ECC_CRITERIA, None, 1)
    except cv2.error:  # did not converge: no copy
        return None
    return warp


def _ecc_residual(src: PixelView, dst: PixelView) -> float:
    """src at dst's size: one ECC warp, then re-makes both ways (dst from src, src from dst: a
    rotated copy's filled corners re-make nothing, its source re-makes it), bilinear and bicubic
    (the two usual warps), valid pixels only."""
    import cv2

    warp = _ecc_warp(src.grey, dst.grey)
    if warp is None:
        return float("inf")
    h, w = dst.grey.shape
    kernel = np.ones((2 * _MARGIN + 1,) * 2, np.uint8)
    best = float("inf")
    for frm, to, flag in ((src, dst, cv2.WARP_INVERSE_MAP), (dst, src, 0)):
        inside = cv2.warpAffine(np.ones_like(frm.grey), warp, (w, h), flags=cv2.INTER_NEAREST | flag, borderValue=0)
        inside = cv2.erode((inside > 0).astype(np.uint8), kernel) > 0
        for interp in (cv2.INTER_LINEAR, cv2.INTER_CUBIC):
            remade = cv2.warpAffine(frm.grey, warp, (w, h), flags=interp | flag, borderMode=cv2.BORDER_REPLICATE)
            best = min(best, _tone_residual(remade, to, inside))
    return best


def _mirrored(v: PixelView) -> PixelView:
    """The same view left-right mirrored (its JPEG tables no longer describe it)."""
    return PixelView(np.ascontiguousarray(v.rgb[:, ::-1]), np.ascontiguousarray(v.grey[:, ::-1]), v.native, None,
                     np.ascontiguousarray(v.clipped[:, ::-1]))


def _thumb(g: np.ndarray) -> np.ndarray:
    import cv2

    t = cv2.resize(g, (24, 24), interpolation=cv2.INTER_AREA).reshape(-1)
    t = t - t.mean()
    return t / max(float(np.linalg.norm(t)), 1e-6)


def _orientations(src: PixelView, dst: PixelView, tie: float = 0.02) -> tuple[bool, ...]:
    """Whether to try src mirrored: the orientation whose 24x24 thumbnail agrees best with dst's
    first (a mirrored copy's thumbnails agree exactly one way), then the other one when the two
    agree within `tie` (a frontal face is nearly symmetric)."""
    t = _thumb(dst.grey)
    plain, mirror = float(_thumb(src.grey) @ t), float(_thumb(np.ascontiguousarray(src.grey[:, ::-1])) @ t)
    first = mirror > plain
    return (first, not first) if abs(plain - mirror) < tie else (first,)


def copy_residual(a: PixelView, b: PixelView, stop_below: float = 0.0) -> tuple[float, str]:
    """Smallest residual (grey levels) of re-making one image from the other, and the edit that
    did it. Returns as soon as a try reaches `stop_below` (pass the decision threshold)."""
    best, edit = float("inf"), ""
    # cheap tries first, both directions; the ECC try last; each in the orientation (plain or
    # mirrored) whose thumbnails agree best
    for src, dst in ((a, b), (b, a)):
        r = _jpeg_residual(src, dst)
        if r < best:
            best, edit = r, "jpeg"
        if best <= stop_below:
            return best, edit
        hd, wd = dst.grey.shape
        for mirrored in _orientations(src, dst):
            view = _mirrored(src) if mirrored else src
            s_rgb, s = view.rgb, view.grey
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
    # the larger image is brought to the smaller one's size (a shrink loses nothing of the copy)
    src, dst = (a, b) if a.grey.size >= b.grey.size else (b, a)
    if src.grey.shape != dst.grey.shape:
        src = view_of(_resized(src.rgb, dst.grey.shape[1], dst.grey.shape[0]), max(dst.grey.shape))
    for mirrored in _orientations(src, dst, tie=0.1):  # a rotation's corners blur the thumbnails: a wider tie
        r = _ecc_residual(_mirrored(src) if mirrored else src, dst)
        if r < best:
            best, edit = r, "ecc" + (" mirrored" if mirrored else "")
        if best <= stop_below:
            break
    return best, edit


class CopyCheck:
    """Pixel check over the files of a run, with a small cache of decoded images.

    Called as check(i, j) with two row numbers into `files`; returns (is_copy, residual, edit).
    Unreadable files are never copies. `threshold` is the native-size cut; pairs compared reduced
    to max_side use REDUCED_FACTOR times it. `prefetch` computes many pairs on `jobs` processes
    ahead of the (sequential) grouping, which then finds them answered. `pairs` and `copies` count
    the pairs compared and the copies among them.
    """

    def __init__(self, files: list[Path], threshold: float = DEFAULT_RESIDUAL, max_side: int = DEFAULT_MAX_SIDE,
                 cache: int = 128, jobs: int = 1):
        self.files = [str(f) for f in files]
        self.threshold = float(threshold)
        self.max_side = int(max_side)
        self.jobs = int(jobs)
        self._views = _ViewCache(cache, max_side)
        self._answers: dict[tuple[int, int], tuple[bool, float, str]] = {}
        self.pairs = 0
        self.copies = 0

    def _record(self, key: tuple[int, int], answer: tuple[bool, float, str]) -> tuple[bool, float, str]:
        self._answers[key] = answer
        self.pairs += 1
        self.copies += bool(answer[0])
        return answer

    def __call__(self, i: int, j: int) -> tuple[bool, float, str]:
        key = (min(i, j), max(i, j))
        if key in self._answers:
            return self._answers[key]
        return self._record(key, _compare(self._views, self.files[i], self.files[j], self.threshold))

    def prefetch(self, pairs) -> None:
        """Answer `pairs` ((i, j) row numbers) now, on `jobs` worker processes when there are
        enough of them; in pair order, so each worker's image cache keeps being hit."""
        from facesieve.parallel import ordered_map

        todo = sorted({(min(i, j), max(i, j)) for i, j in pairs} - self._answers.keys())
        if self.jobs <= 1 or len(todo) < 64:
            return  # answered on demand, only for the pairs the grouping still asks about
        size = 16
        tasks = ([(self.files[i], self.files[j]) for i, j in todo[k : k + size]] for k in range(0, len(todo), size))
        job = _PairTask(self.threshold, self.max_side)
        for k, answers in zip(range(0, len(todo), size), ordered_map(job, tasks, self.jobs, chunk=1)):
            for key, answer in zip(todo[k : k + size], answers):
                self._record(key, answer)


class _ViewCache:
    """Decoded PixelViews by path, least recently used dropped first."""

    def __init__(self, size: int, max_side: int):
        self.size, self.max_side = size, max_side
        self._items: OrderedDict[str, PixelView | None] = OrderedDict()

    def get(self, path: str) -> PixelView | None:
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        try:
            v = load_view(path, self.max_side)
        except Exception:  # noqa: BLE001 - an unreadable file is simply not a copy
            v = None
        self._items[path] = v
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return v


def _compare(views: _ViewCache, path_a: str, path_b: str, threshold: float) -> tuple[bool, float, str]:
    a, b = views.get(path_a), views.get(path_b)
    if a is None or b is None:
        return False, float("inf"), ""
    cut = threshold if (a.native and b.native) else threshold * REDUCED_FACTOR
    r, edit = copy_residual(a, b, stop_below=cut)
    return r <= cut, r, edit


_WORKER_VIEWS: _ViewCache | None = None


class _PairTask:
    """A worker's job: a list of (path, path) pairs -> their answers (picklable; one image cache
    per worker process)."""

    def __init__(self, threshold: float, max_side: int):
        self.threshold, self.max_side = threshold, max_side

    def __call__(self, pairs: list[tuple[str, str]]) -> list[tuple[bool, float, str]]:
        global _WORKER_VIEWS
        if _WORKER_VIEWS is None or _WORKER_VIEWS.max_side != self.max_side:
            _WORKER_VIEWS = _ViewCache(128, self.max_side)
        return [_compare(_WORKER_VIEWS, a, b, self.threshold) for a, b in pairs]
