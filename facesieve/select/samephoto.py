"""Same photo, near-identical shot, or distinct? A cheap test on the aligned face crops.

Why this works: the faces stage already warps every face onto the ArcFace template from its five
landmarks, so two faces of one photo (re-encoded, resized, cropped, flipped, re-toned, rotated,
framed, captioned, stretched) land on nearly the same 112x112 crop; what is left between them is
landmark jitter, blur from resampling, JPEG noise, a tone curve and, where a caption or logo
reaches the face, a patch. Another shot of the same moment differs by small motions of the face
and its own noise; another moment differs by pose, expression or lighting. So:

- compare in grey (grayscale copies), at the resolution the poorer face really has (the crop of a
  small face is upsampled and blurred: comparing finer than that measures blur, not identity);
- the mirrored crop is tried too (a flipped photo's crop is the mirror of the original's crop);
- a small affine refinement (a few Gauss-Newton steps, Lucas-Kanade) absorbs landmark jitter and
  a stretched aspect;
- a monotone tone fit (quadratic in grey level: gain, offset, gamma) absorbs brightness,
  contrast and gamma edits;
- the residual is trimmed (the best TRIM share of the pixels), so a caption or logo over part of
  the face does not decide;
- it is divided by the face's own contrast, so two dark, flat faces (yaleB under different
  lighting) are not one photo merely because both are dark.

The score of a pair is that normalised residual (0: identical); lower cuts decide "same photo",
a higher one "near-identical shot" (docs/thresholds.md). Pure: arrays in, arrays out, no I/O;
the cross-identity pass can call `pair_scores` on any two crops as well.
"""

from __future__ import annotations

import functools

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import cv2
import numpy as np

from facesieve.select.thresholds import ANCHOR_MATCHES, FACE_MATCHES

__all__ = ["FaceViews", "pair_scores", "face_scale", "pair_side", "Cuts", "grouped", "neighbour_ratio", "SCORE_VERSION", "KEYPOINTS_FROM"]

SCORE_VERSION = "samephoto-v6"  # part of the cache key of stored pair scores (v6: sampled in float32)
# the version before: a workspace holding only its pair file has every pair scored again (v5's scores
# differ by ~1e-7, a few ill-posed pairs by more) but keeps its keypoint answers (they read the images)
KEYPOINTS_FROM = "samephoto-v5"
LEVELS = (80, 56, 40, 28)  # comparison grids (pixels a side), finest first
TEMPLATE_EYES = 35.2372  # eye distance of the 112-pixel ArcFace template
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# how far the refinement may move B: landmark jitter and a stretched aspect, not another pose
SHIFT_MAX = 0.15  # of the grid side
LINEAR_MAX = 0.25  # scale / shear / rotation terms
PRE_BLUR = 0.8  # Gaussian sigma (grid pixels) before reducing a crop: evens out aliasing and JPEG noise
TRIM = 0.85  # share of the (best) pixels the residual is taken over
COARSE_STEPS = 4  # Gauss-Newton steps at half size ...
STEPS = 2  # ... then at full size
CACHE_BYTES = 256 << 20  # views and masks kept for reuse (FaceViews)
MARGIN = 0.2  # border of the comparison grid left out (the aligned crop's edge repeats the image border)
SPECTRUM_SIDE = 32  # crop_spectrum: the crop's centre reduced to this many pixels a side ...
SPECTRUM_BAND = 8  # ... and this many of its lowest frequencies kept along each axis
TIGHT_SHARE = 0.5  # FaceViews.tight: this share of the aligned crop outside the face's image


def face_scale(landmarks: np.ndarray) -> np.ndarray:
    """Native pixels per crop pixel of each face, from its (n, 10) landmarks (eye distance)."""
    lm = np.asarray(landmarks, np.float64).reshape(-1, 10)
    eyes = np.hypot(lm[:, 2] - lm[:, 0], lm[:, 3] - lm[:, 1])
    return np.where(np.isfinite(eyes), eyes / TEMPLATE_EYES, 1.0)


COARSE_SIDE = 40  # grids of this side or fewer are "coarse" (Cuts.coarse)


def pair_side(scales: np.ndarray, i, j) -> np.ndarray:
    """The comparison grid of each pair (i[t], j[t]): the poorer face's (level_for)."""
    sc = np.asarray(scales, np.float64)
    return np.array([level_for(min(sc[a], sc[b])) for a, b in zip(np.atleast_1d(i).tolist(), np.atleast_1d(j).tolist())], np.int64)


def level_for(scale: float) -> int:
    """The comparison grid for a pair whose poorer face has `scale` native pixels per crop pixel."""
    for side in LEVELS:
        if scale * 112 >= side * 0.999:
            return side
    return LEVELS[-1]


class FaceViews:
    """Grey, area-reduced views of aligned crops at each comparison level, made on first use.

    `geometry` (optional): each face's (n, 10) landmarks and its image's width and height. With it,
    each view has a mask of the grid pixels that lie inside the face's own image: the aligned crop
    of a tight face image repeats the image's edge beyond it, and a framed or captioned copy has
    other pixels there, which say nothing about whether the face is the same photo."""

    def __init__(self, crops, scales: np.ndarray, geometry: tuple | None = None):
        self.crops, self.scales = crops, np.asarray(scales, np.float64)
        self.geometry = None
        if geometry is not None:
            lm, w, h = geometry
            self.geometry = (np.asarray(lm, np.float64).reshape(-1, 10), np.asarray(w, np.float64), np.asarray(h, np.float64))
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._masks: dict[tuple[int, int], np.ndarray] = {}
        self._bytes = 0
        self._outside = None  # outside_share of every face, made on first use

    def _keep(self, cache: dict, key, value: np.ndarray) -> None:
        """Keep a view or mask for the next pairs; both caches are emptied past CACHE_BYTES (the
        grouping works through one identity at a time, so recent faces are the ones asked again;
        a bound by count let 100,000 faces' views grow the process to 7 GiB)."""
        if self._bytes + value.nbytes > CACHE_BYTES:
            self._cache.clear()
            self._masks.clear()
            self._bytes = 0
        cache[key] = value
        self._bytes += value.nbytes

    def view(self, i: int, side: int) -> np.ndarray:
        key = (i, side)
        v = self._cache.get(key)
        if v is None:
            crop = np.asarray(self.crops[i])
            grey = crop.astype(np.float32) @ _LUMA if crop.ndim == 3 else crop.astype(np.float32)
            grey = cv2.GaussianBlur(grey, (0, 0), PRE_BLUR * 112.0 / side)
            v = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
            self._keep(self._cache, key, v)
        return v

    def mask(self, i: int, side: int) -> np.ndarray:
        """1 where the view's pixel (and the blur around it) comes from inside the face's image."""
        key = (i, side)
        m = self._masks.get(key)
        if m is None:
            m = np.ones((side, side), np.float32)
            if self.geometry is not None:
                lm, w, h = (g[i] for g in self.geometry)
                if np.isfinite(lm).all() and w > 0 and h > 0:
                    m = _inside(lm.reshape(5, 2), float(w), float(h), side)
            self._keep(self._masks, key, m)
        return m

    def tight(self, faces) -> np.ndarray:
        """Whether at least TIGHT_SHARE of each face's aligned crop lies outside its own image (a
        face crop that is the face alone): what lies there, the image's repeated edge or a copy's
        frame, moves the face's embedding, not its crop test. False without geometry."""
        if self.geometry is None:
            return np.zeros(len(faces), bool)
        if self._outside is None:
            self._outside = outside_share(*self.geometry)
        return self._outside[np.asarray(faces, np.int64)] >= TIGHT_SHARE

    def spectrum(self, i: int) -> np.ndarray:
        """crop_spectrum of the face's aligned crop."""
        return crop_spectrum(np.asarray(self.crops[i]))


def outside_share(landmarks: np.ndarray, widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Each face's share of its aligned crop that lies outside its image, from its five landmarks
    (n, 10) and its image's size; the crop taken upright (its roll left out), all faces at once.
    NaN landmarks: 0."""
    from facesieve.faces.align import ARCFACE_SIZE, template

    lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    t = template(ARCFACE_SIZE)
    eyes = np.hypot(*(lm[:, 1] - lm[:, 0]).T)
    scale = eyes / np.hypot(*(t[1] - t[0]))  # image pixels per crop pixel
    half = scale * ARCFACE_SIZE / 2.0
    centre = lm.mean(axis=1) + ((ARCFACE_SIZE - 1) / 2.0 - t.mean(axis=0)) * scale[:, None]
    lo, hi = centre - half[:, None], centre + half[:, None]
    size = np.stack([np.asarray(widths, np.float64), np.asarray(heights, np.float64)], axis=1)
    inside = np.prod(np.clip(np.minimum(hi, size) - np.maximum(lo, 0.0), 0.0, None), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = 1.0 - inside / (2.0 * half) ** 2
    return np.where(np.isfinite(share), np.clip(share, 0.0, 1.0), 0.0)


@functools.lru_cache(maxsize=None)
def _hann(side: int) -> np.ndarray:
    return np.outer(np.hanning(side), np.hanning(side)).astype(np.float32)


def crop_spectrum(crop: np.ndarray) -> np.ndarray:
    """The low-frequency Fourier magnitudes of an aligned crop's centre (its inner 80 of 112
    pixels, reduced, windowed), log-scaled, mean removed, unit length. A shift of a few pixels
    (one face detected another way in a framed, cropped or captioned copy) leaves the magnitudes
    where they were; another shot's expression, pose or light does not. Float32, (2 BAND**2,)."""
    grey = crop.astype(np.float32) @ _LUMA if crop.ndim == 3 else crop.astype(np.float32)
    v = cv2.resize(np.ascontiguousarray(grey[16:96, 16:96]), (SPECTRUM_SIDE, SPECTRUM_SIDE), interpolation=cv2.INTER_AREA)
    f = np.abs(np.fft.rfft2((v - v.mean()) * _hann(SPECTRUM_SIDE)))
    d = np.log1p(np.concatenate([f[:SPECTRUM_BAND, :SPECTRUM_BAND].ravel(), f[-SPECTRUM_BAND:, :SPECTRUM_BAND].ravel()]))
    d -= d.mean()
    return (d / max(float(np.linalg.norm(d)), 1e-9)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _view_points(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres of a `side` view's pixels in aligned-crop (112) coordinates, flat. Cached, never written."""
    g = (np.arange(side) + 0.5) * 112.0 / side - 0.5
    X, Y = np.meshgrid(g, g)
    return X.ravel(), Y.ravel()


def _inside(lm: np.ndarray, w: float, h: float, side: int) -> np.ndarray:
    """Mask of the grid pixels of a `side` view whose blurred value holds no repeated image edge."""
    from facesieve.faces.align import similarity_transform, template

    try:
        M = similarity_transform(lm, template(112))
    except ValueError:
        return np.ones((side, side), np.float32)
    A, t = M[:, :2], M[:, 2]
    scale = float(np.sqrt(abs(np.linalg.det(A))))  # crop pixels per image pixel
    X, Y = _view_points(side)
    Ai = np.linalg.inv(A)  # the 2x2 inverse applied directly: half the cost of a solve with side**2 right sides
    u = Ai[0, 0] * (X - t[0]) + Ai[0, 1] * (Y - t[1])
    v = Ai[1, 0] * (X - t[0]) + Ai[1, 1] * (Y - t[1])
    edge = np.minimum.reduce([u, v, w - 1 - u, h - 1 - v]) * scale  # distance to the image edge, crop pixels
    margin = 2.0 * PRE_BLUR * 112.0 / side + 1.0
    return (edge >= margin).reshape(side, side).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _grid(side: int):
    """Inner comparison grid of a level: (margin, x and y offsets from the centre, in pixels).
    Cached: the arrays are shared, never written."""
    m = max(1, round(side * MARGIN))
    ys, xs = np.mgrid[m : side - m, m : side - m].astype(np.float32)
    c = (side - 1) / 2.0
    return m, (xs - c).ravel(), (ys - c).ravel()


def _corners(x: np.ndarray, y: np.ndarray, P: int, L: int, in_place: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where bilinear samples of P images (L, L) at points (P, N) come from, edges repeated: each
    point's top-left neighbour in the images' flat array, and its fractions right and down.
    `in_place`: x and y are the caller's own float32 scratch arrays and are overwritten (the hot path)."""
    x = x.astype(np.float32, copy=not in_place)
    y = y.astype(np.float32, copy=not in_place)
    np.clip(x, 0, L - 1.001, out=x)
    np.clip(y, 0, L - 1.001, out=y)
    x0, y0 = np.floor(x), np.floor(y)
    x -= x0
    y -= y0
    y0 *= L  # whole numbers under 2**24: exact in float32
    y0 += x0
    base = y0.astype(np.int64)
    base += (np.arange(P, dtype=np.int64) * (L * L))[:, None]
    return base, x, y


def _gather(img: np.ndarray, corners, derivatives: bool = True):
    """Bilinear samples of each image (P, L, L) at `corners` (_corners), with the image's x and y
    derivatives there (from the same four neighbours) unless `derivatives` is False."""
    base, fx, fy = corners
    L = img.shape[1]
    flat = img.reshape(-1)  # one flat gather per corner: far cheaper than take_along_axis
    a = flat.take(base)
    b = flat[1:].take(base)  # the neighbours through shifted views: no index array per corner
    c = flat[L:].take(base)
    d = flat[L + 1 :].take(base)
    b -= a  # each difference once, in place: b - a and d - c serve the value and both derivatives
    d -= c
    top = fx * b
    top += a
    bottom = fx * d
    bottom += c
    bottom -= top  # bottom - top: the y derivative
    value = fy * bottom
    value += top
    if not derivatives:
        return value
    d -= b
    d *= fy
    d += b  # the x derivative: (b - a) + fy ((d - c) - (b - a))
    return value, d, bottom


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear samples of each image (P, L, L) at its points (P, N), edges repeated, with the
    image's x and y derivatives there (from the same four neighbours)."""
    P, L, _ = img.shape
    return _gather(img, _corners(x, y, P, L))


def _solve(G: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Batched least squares from normal equations G (P, k, k), right sides r (P, k)."""
    k = G.shape[-1]
    G = G + (1e-6 * (np.trace(G, axis1=1, axis2=2) + 1.0))[:, None, None] * np.eye(k)
    return np.linalg.solve(G.astype(np.float64), r.astype(np.float64)[..., None])[..., 0]


def _kth(r: np.ndarray, valid: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the `share` of the valid values (at least 1) kept, as (k, the k-th smallest valid
    value). A partial sort where every pixel is valid (most faces), a full one otherwise."""
    if valid.all():
        k = max(1, int(share * r.shape[1]))
        return np.full(r.shape[0], k, np.int64), np.partition(r, k - 1, axis=1)[:, k - 1]
    rs = np.sort(np.where(valid, r, np.inf), axis=1)
    k = np.maximum(1, (share * valid.sum(axis=1)).astype(np.int64))
    return k, np.take_along_axis(rs, k[:, None] - 1, axis=1)[:, 0]


def _trimmed_mean(r: np.ndarray, valid: np.ndarray, share: float) -> np.ndarray:
    k, kth = _kth(r, valid, share)
    below = valid & (r < kth[:, None])  # the values under the k-th, then as many ties as make k
    n = below.sum(axis=1)
    return ((r * below).sum(axis=1) + (k - n) * kth) / k


def _tone_residual(target: np.ndarray, moved: np.ndarray, valid: np.ndarray, rounds: int = 2) -> np.ndarray:
    """target - f(moved) with f the best quadratic tone curve, fitted over the valid pixels twice:
    on all, then on the best TRIM share (a caption or logo does not bend the curve)."""
    t = moved / 128.0 - 1.0
    A = np.stack([np.ones_like(t), t, t * t], axis=1)  # (P, 3, N): the curve's rows
    keep = valid
    for _ in range(rounds):
        Ak = A * keep[:, None, :]
        coef = _solve(Ak @ A.transpose(0, 2, 1), (Ak @ target[..., None])[..., 0])
        signed = target - (coef.astype(np.float32)[:, None, :] @ A)[:, 0]
        r = np.abs(signed)
        keep = valid & (r <= _kth(r, valid, TRIM)[1][:, None])
    return signed


def _points(p: np.ndarray, X: np.ndarray, Y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """B's sampling points (float32) for the target grid under the affine parameters p (P, 6),
    centred: c + (1 + p0) X + p1 Y + p2 and c + p3 X + (1 + p4) Y + p5, summed in place."""
    q = p.astype(np.float32)
    xs = (1 + q[:, :1]) * X
    xs += q[:, 2:3] + np.float32(c)
    xs += q[:, 1:2] * Y
    ys = q[:, 3:4] * X
    ys += q[:, 5:6] + np.float32(c)
    ys += (1 + q[:, 4:5]) * Y
    return xs, ys


def _moved_corners(p: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_corners of the grid of side L moved by p (the points are this call's own, so in place)."""
    _, X, Y = _grid(L)
    return _corners(*_points(p, X, Y, (L - 1) / 2.0), p.shape[0], L, in_place=True)


class _Masks:
    """Which comparison-grid pixels lie inside both faces' images, for B moved by the affine
    parameters p: A's mask at its grid, B's at the moved points; all of them where fewer than a
    third would be left (a face that fills its image loses nothing). Computed once per batch:
    whether every mask is full, A's part, and where B's four sampled pixels are all inside."""

    def __init__(self, MA: np.ndarray, MB: np.ndarray):
        P, L, _ = MA.shape
        m, X, _ = _grid(L)
        self.MB, self.shape = MB, (P, X.size)
        self.full = bool(MA.all() and MB.all())
        self.a = None if self.full else MA[:, m : L - m, m : L - m].reshape(P, -1) > 0.5
        if not self.full:  # a point of B is inside where the four pixels it is sampled from are: one lookup
            inside = MB > 0.5
            four = inside.copy()
            four[:, :-1, :-1] &= inside[:, 1:, :-1] & inside[:, :-1, 1:] & inside[:, 1:, 1:]
            self.four = four.reshape(-1)

    def valid(self, corners) -> np.ndarray:
        """At B's moved points, given as their `_corners`."""
        if self.full:
            return np.ones(self.shape, bool)
        base, fx, fy = corners
        v = self.four.take(base)
        near = np.flatnonzero(~v)  # or where the mask's bilinear value is above 0.999 (an outside pixel weighs < 0.001)
        if near.size:
            at = (base.reshape(-1)[near], fx.reshape(-1)[near], fy.reshape(-1)[near])
            v.reshape(-1)[near] = _gather(self.MB, at, derivatives=False) > 0.999
        v &= self.a
        return v | (v.sum(axis=1, keepdims=True) < v.shape[1] / 3)


def _moved(B: np.ndarray, masks: _Masks, p: np.ndarray):
    """B sampled at the grid moved by p (values only), and the valid pixels there."""
    corners = _moved_corners(p, B.shape[1])
    return _gather(B, corners, derivatives=False), masks.valid(corners)


def _refine(A: np.ndarray, B: np.ndarray, MA: np.ndarray, MB: np.ndarray, p: np.ndarray, steps: int,
            masks: _Masks | None = None) -> np.ndarray:
    """Gauss-Newton steps (forward-additive Lucas-Kanade, with a linear tone term) moving B onto A,
    over the pixels inside both images."""
    P, L, _ = A.shape
    m, X, Y = _grid(L)
    masks = masks or _Masks(MA, MB)
    target = A[:, m : L - m, m : L - m].reshape(P, -1)
    J = np.empty((P, 8, X.size), np.float32)  # the Jacobian's rows, zero outside the valid pixels
    for _ in range(steps):
        corners = _moved_corners(p, L)
        w, dx, dy = _gather(B, corners)
        r = target - w
        if masks.full:
            J[:, 7] = 1.0
        else:  # a pixel's weight is 0 or 1: zeroing its row of J weighs both sides of the normal equations
            v = masks.valid(corners)
            J[:, 7] = v
            dx *= J[:, 7]
            dy *= J[:, 7]
            w *= J[:, 7]
        np.multiply(dx, X, out=J[:, 0])
        np.multiply(dx, Y, out=J[:, 1])
        J[:, 2] = dx
        np.multiply(dy, X, out=J[:, 3])
        np.multiply(dy, Y, out=J[:, 4])
        J[:, 5] = dy
        J[:, 6] = w
        dp = _solve(J @ J.transpose(0, 2, 1), (J @ r[..., None])[..., 0])[:, :6]
        dp[:, [2, 5]] = np.clip(dp[:, [2, 5]], -0.1 * L, 0.1 * L)
        dp[:, [0, 1, 3, 4]] = np.clip(dp[:, [0, 1, 3, 4]], -0.1, 0.1)
        p = p + dp
        p[:, [2, 5]] = np.clip(p[:, [2, 5]], -SHIFT_MAX * L, SHIFT_MAX * L)
        p[:, [0, 1, 3, 4]] = np.clip(p[:, [0, 1, 3, 4]], -LINEAR_MAX, LINEAR_MAX)
    return p


def _half(img: np.ndarray) -> np.ndarray:
    """2x2 box average; summed pairwise from strided slices, the same values as a mean over the
    2x2 blocks (bit for bit) at a quarter of its cost."""
    h = img.shape[1] // 2
    a = img[:, : 2 * h, : 2 * h]
    return ((a[:, 0::2, 0::2] + a[:, 0::2, 1::2]) + (a[:, 1::2, 0::2] + a[:, 1::2, 1::2])) * np.float32(0.25)


def _coarse_fit(A, B, MA, MB) -> tuple[np.ndarray, np.ndarray]:
    """Registration at half size (landmark jitter of a few pixels) and its residual, per pair."""
    return _coarse_fit_halves(_half(A), _half(B), _half_mask(MA), _half_mask(MB))


def _half_mask(M: np.ndarray) -> np.ndarray:
    """A mask at half size: a pixel is inside where its four are."""
    return (_half(M) > 0.999).astype(np.float32)


def _coarse_fit_halves(A2, B2, MA2, MB2) -> tuple[np.ndarray, np.ndarray]:
    """_coarse_fit on images and masks already at half size."""
    P, L, _ = A2.shape
    masks = _Masks(MA2, MB2)
    p = _refine(A2, B2, MA2, MB2, np.zeros((P, 6), np.float64), COARSE_STEPS, masks)
    m = _grid(L)[0]
    target = A2[:, m : L - m, m : L - m].reshape(P, -1)
    moved, valid = _moved(B2, masks, p)
    r = np.abs(_tone_residual(target, moved, valid, rounds=1))
    p[:, [2, 5]] *= 2.0
    return p, (r * valid).sum(axis=1) / valid.sum(axis=1)


def _scores(A: np.ndarray, B: np.ndarray, MA: np.ndarray | None = None, MB: np.ndarray | None = None) -> np.ndarray:
    """Normalised residual of B (P, L, L) registered onto A (P, L, L), plain or mirrored: both
    are registered at half size, the better one is refined at full size and scored. MA, MB: the
    faces' masks (FaceViews.mask); None: every pixel counts."""
    P, L, _ = A.shape
    MA = np.ones_like(A) if MA is None else MA
    MB = np.ones_like(B) if MB is None else MB
    Bm = np.ascontiguousarray(B[:, :, ::-1])
    MBm = np.ascontiguousarray(MB[:, :, ::-1])
    # halving commutes with the mirror on the grids' even sides (the same sums, bit for bit), so
    # each face is halved once for both views
    A2, B2, MA2, MB2 = _half(A), _half(B), _half_mask(MA), _half_mask(MB)
    p, r = _coarse_fit_halves(np.concatenate([A2, A2]), np.concatenate([B2, B2[:, :, ::-1]]), np.concatenate([MA2, MA2]),
                              np.concatenate([MB2, MB2[:, :, ::-1]]))
    mirror = r[P:] < r[:P]
    B = np.where(mirror[:, None, None], Bm, B)
    MB = np.where(mirror[:, None, None], MBm, MB)
    masks = _Masks(MA, MB)
    p = _refine(A, B, MA, MB, np.where(mirror[:, None], p[P:], p[:P]), STEPS, masks)
    m = _grid(L)[0]
    target = A[:, m : L - m, m : L - m].reshape(P, -1)
    moved, valid = _moved(B, masks, p)
    trimmed = _trimmed_mean(np.abs(_tone_residual(target, moved, valid)), valid, TRIM)
    lo, hi = _contrast(target, valid)
    return trimmed / np.maximum(hi - lo, 8.0)


def _contrast(target: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 5th and 95th percentiles (lower order statistic) of each row's valid pixels: the face's
    own contrast, over the same pixels as its residual. Decided row by row, so that a pair's score
    does not depend on which other pairs share its batch."""
    n = valid.sum(axis=1)
    lo_at, hi_at = (0.05 * (n - 1)).astype(np.int64), (0.95 * (n - 1)).astype(np.int64)
    if valid.all():  # most batches: a partial sort finds the same order statistics
        ts = np.partition(target, (int(lo_at[0]), int(hi_at[0])), axis=1)
    else:
        ts = np.sort(np.where(valid, target, np.inf), axis=1)
    return np.take_along_axis(ts, lo_at[:, None], axis=1)[:, 0], np.take_along_axis(ts, hi_at[:, None], axis=1)[:, 0]


def pair_scores(views: FaceViews, i: np.ndarray, j: np.ndarray, batch: int = 64) -> np.ndarray:
    """Normalised residual of each pair (i[t], j[t]) of faces, plain or mirrored, whichever is
    lower. Pairs are compared at the grid their poorer face supports, in batches. A pair's score
    does not depend on its batch; 64 pairs keep a batch's working arrays in the CPU's caches
    (bench_pair_cost.py against batches of 256: 0.67-0.70 of the CPU time, the same scores)."""
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    out = np.empty(i.shape[0], np.float64)
    if not i.size:
        return out
    sides = np.array([level_for(min(views.scales[a], views.scales[b])) for a, b in zip(i.tolist(), j.tolist())])
    for side in np.unique(sides):
        at = np.flatnonzero(sides == side)
        for s in range(0, at.size, batch):
            t = at[s : s + batch]
            A = np.stack([views.view(int(a), int(side)) for a in i[t]])
            B = np.stack([views.view(int(b), int(side)) for b in j[t]])
            MA = np.stack([views.mask(int(a), int(side)) for a in i[t]])
            MB = np.stack([views.mask(int(b), int(side)) for b in j[t]])
            out[t] = _scores(A, B, MA, MB)
    return out


@dataclass(frozen=True)
class Cuts:
    """Score cuts: at or below `same_photo` one photo; at or below `shot` a near-identical shot.

    Beside the plain cut, a pair is one photo when it is far closer than its faces' other
    neighbours: score at most `ratio_score` and at most `ratio` times the median score of the two
    faces to their other candidate neighbours (a copy is much closer to its source than to the
    person's other photos; ORL's shots of one sitting, or yaleB's lighting pairs, are about as close
    to each other as to the sitting's other shots). A pair whose faces have no other candidate
    neighbour has no such reference: it is one photo at or below `lone`.

    The second signal, the whole image: a pair whose two images' perceptual hashes (64-bit DCT
    pHash of the whole image, mirror-aware: neardup.hash_distance) differ in at most `hash_bits`
    bits is one photo up to `hash_score` (a re-encoded, re-toned, grey or resized copy keeps the
    whole image's hash; another shot moves the head against its background). -1: off.

    Small faces: a pair compared on a coarse grid (COARSE_SIDE pixels or fewer: the poorer face's
    eyes under about 13 pixels apart in its image) is one photo up to `coarse` (0: no other cut
    than `same_photo`). A face that small is mostly blur and resampling, so a copy of it scores
    higher than a copy of a large face, and other photos of the person stay far (docs/thresholds.md).

    The face in its background (select/anchor.py): a pair up to `anchor_score` whose face moves
    with its background, `anchor.face_motion` at most `anchor_motion` of the face's width with at
    least `anchor_matches` keypoint matches kept on the face and as many on the background, is one
    photo (a recoloured, retouched or re-cropped re-publication). 0: off.

    The face's own keypoints (the same test's face fit, anchor.face_motion): a pair up to
    `face_score` whose face keypoints fit one similarity to within `face_fit` of each keypoint's
    size (the median over at least `face_matches` kept matches) is one photo: a copy's face is the
    source's up to resampling, another shot's moves with its expression and pose. It needs no
    background, so it speaks for tight crops. The crop score's ceiling is what keeps another
    exposure of one still pose (yaleB's lighting) out. A pair within the whole-image hash bits
    (`hash_bits`) needs no ceiling: the whole image and the face's keypoints both say one photo,
    and a crop score above it then comes from the face's landmarks, found differently on the two
    (sunglasses, a hand, a face the detector boxes another way), not from the photo. 0: off.

    Rare hashes: a pair whose images' hashes differ in at most `rare_bits` bits, where both faces'
    identities otherwise spread their photos at least `rare_floor` bits apart (each face's hash
    floor, neardup.hash_floors), is one photo up to `rare_score`. Among web photos of a person,
    which sit 20-30 bits apart, a hash that close is a copy's, whatever its face crop (a face too
    small for the crop test, an overlay across it); in a studio series it is not, and the floor
    keeps the rule off there. On a coarse grid (small faces) the ceiling is raised by the
    small-face cut's own allowance, `rare_score * coarse / same_photo`: a copy of a face that small
    scores higher for the blur, as the small-face cut says. -1 bits: off.

    The face in its background among photos from everywhere: where both faces' identities spread
    their photos at least `web_floor` bits apart (the hash floors of the rare-hash rule), the
    background test takes the looser motion cut `web_motion`, with at least `web_matches` matches
    on the face and as many on the background, up to the same ceiling `anchor_score`. Another web
    photo of a person shares no background with it, so a background that agrees at all is one
    photo re-published (re-cropped, recoloured: its face moves a little against the fit); in a
    fixed camera's series (a sitting, a video: low floors) the head moves that little between
    shots, and the tight cut stays. 0: off.

    The crop score among photos from everywhere: where both faces' hash floors are at least
    `web_score_floor`, a pair is one photo up to `web_score`. Web photos of a person from different
    sources are far apart on the crop test (the shared web sets' closest distinct pairs score 0.03
    and up, at 64 pixels as at full size), while a studio series' shots come as close as a re-save
    and its floors are low. 0: off.

    The whole image among photos from everywhere: where both faces' hash floors are at least
    `web_hash_floor`, a pair whose images' hashes differ in at most `web_hash_bits` bits and whose
    images share keypoints around the face as on it (the background test's matches, at least
    `web_hash_matches` in each region, wherever the face moved) is one photo whatever its crop
    score. A re-published web photo keeps its whole image and its hash while the crop test can fail
    it: a face filling the frame, drawn or covered by a hand, whose landmarks the detector places
    another way on the copy (crop scores up to 0.13 seen, cosines down to 0.39); another web photo
    of the person sits 16-30 bits away and shares no background. A tight studio crop (yaleB, whose
    lighting spreads its hashes as widely as a web set's) has no background to share. -1 bits: off."""

    same_photo: float
    shot: float
    ratio_score: float = 0.0
    ratio: float = 0.0
    lone: float = 0.0
    hash_score: float = 0.0
    hash_bits: int = -1
    coarse: float = 0.0
    anchor_score: float = 0.0
    anchor_motion: float = 0.0
    anchor_matches: int = ANCHOR_MATCHES
    face_score: float = 0.0
    face_fit: float = 0.0
    face_matches: int = FACE_MATCHES
    rare_score: float = 0.0
    rare_bits: int = -1
    rare_floor: float = 64.0
    web_motion: float = 0.0
    web_floor: float = 64.0
    web_matches: int = ANCHOR_MATCHES
    web_score: float = 0.0
    web_score_floor: float = 64.0
    web_hash_bits: int = -1
    web_hash_floor: float = 64.0
    web_hash_matches: int = ANCHOR_MATCHES

    def allowance(self, sides=None):
        """The factor the rare-hash and face-fit ceilings take on each pair's grid (sides: pair_side;
        None: unknown, 1): the small-face cut's own allowance, coarse / same_photo, on a coarse grid,
        1 elsewhere or without the small-face cut."""
        factor = self.most_allowance()
        if sides is None or factor == 1.0:
            return 1.0
        return np.where(np.asarray(sides) <= COARSE_SIDE, factor, 1.0)

    def most_allowance(self) -> float:
        """The largest `allowance` on any grid."""
        return self.coarse / self.same_photo if self.coarse > self.same_photo > 0 else 1.0


# Each rule of Cuts in words, with its fields, in the order SamePhotoCheck.evidence adds them (the
# small-face cut before the rules whose ceilings take its allowance)
RULE_WORDS = (
    ("far closer than the person's other photos", ("ratio_score", "ratio", "lone")),
    ("same whole-image hash", ("hash_score", "hash_bits")),
    ("small face", ("coarse",)),
    ("the face moves with its background", ("anchor_score", "anchor_motion", "anchor_matches", "web_motion", "web_floor", "web_matches")),
    ("the face's keypoints match", ("face_score", "face_fit", "face_matches")),
    ("rare whole-image hash", ("rare_score", "rare_bits", "rare_floor")),
    ("close among web photos", ("web_score", "web_score_floor")),
    ("same whole image among web photos", ("web_hash_bits", "web_hash_floor", "web_hash_matches")),
)


def neighbour_ratio(a, b, scores, reference=None) -> np.ndarray:
    """Each candidate pair's score over the median score of its two faces to their other candidate
    neighbours (a, b: the faces' keys, one entry per pair); NaN where neither face has another.
    `reference` (bool per pair; None: all): which pairs count as a neighbour (SamePhotoCheck's
    companions do not)."""
    others: dict = {}
    counts = np.ones(len(scores), bool) if reference is None else np.asarray(reference, bool)
    for x, y, s, r in zip(a, b, scores, counts):
        if r:
            others.setdefault(x, []).append((y, s))
            others.setdefault(y, []).append((x, s))
    for x, y in zip(a, b):
        others.setdefault(x, [])
        others.setdefault(y, [])
    out = np.full(len(scores), np.nan)
    for t, (x, y, s) in enumerate(zip(a, b, scores)):
        ref = [v for o, v in others[x] if o != y] + [v for o, v in others[y] if o != x]
        if ref:
            out[t] = s / max(float(np.median(ref)), 1e-9)
    return out


def grouped(scores, ratios, cut: float, cuts: Cuts, hash_bits=None, sides=None, motion=None, floors=None) -> np.ndarray:
    """Whether each pair is grouped: at or below `cut` (cuts.same_photo or cuts.shot), or one photo
    by the neighbour ratio (ratios from neighbour_ratio; NaN: a lone pair), by the whole-image
    hash (hash_bits: the pairs' hash distances; None: unknown, the hash rule is off), by the
    small-face cut (sides: each pair's comparison grid, pair_side; None: unknown, off), by the
    face in its background or its face's own fit (motion: (motion, face matches, background
    matches, face fit error) arrays, as anchor.face_motion gives them; None: unknown, off) or by
    a rare hash (floors: the lower of each pair's two hash floors, neardup.hash_floors; None or
    NaN: unknown, off)."""
    s = np.asarray(scores, np.float64)
    r = np.asarray(ratios, np.float64)
    lone = np.isnan(r)
    by_ratio = ~lone & (s <= cuts.ratio_score) & (np.where(lone, np.inf, r) <= cuts.ratio)
    out = (s <= cut) | by_ratio | (lone & (s <= cuts.lone))
    if hash_bits is not None and cuts.hash_bits >= 0:
        out |= (np.asarray(hash_bits) <= cuts.hash_bits) & (s <= cuts.hash_score)
    if sides is not None and cuts.coarse > 0:
        out |= (np.asarray(sides) <= COARSE_SIDE) & (s <= cuts.coarse)
    if motion is not None:
        out |= anchored(s, motion, cuts, hash_bits, sides, floors)
    if floors is not None and cuts.web_score > 0:
        with np.errstate(invalid="ignore"):
            out |= (np.asarray(floors, np.float64) >= cuts.web_score_floor) & (s <= cuts.web_score)
    if hash_bits is not None and floors is not None and cuts.rare_bits >= 0:
        with np.errstate(invalid="ignore"):
            out |= (np.asarray(hash_bits) <= cuts.rare_bits) & (np.asarray(floors, np.float64) >= cuts.rare_floor) & (
                s <= cuts.rare_score * cuts.allowance(sides))
    return out


def _web_hash(hash_bits, floors, cuts: Cuts):
    """Whether each pair is within the whole-image hash rule among web photos (Cuts.web_hash_*: bits
    and floors; its keypoint matches aside), False where the bits or floors are unknown or the rule
    is off."""
    if hash_bits is None or floors is None or cuts.web_hash_bits < 0:
        return False
    with np.errstate(invalid="ignore"):
        return (np.asarray(hash_bits, np.float64) <= cuts.web_hash_bits) & (np.asarray(floors, np.float64) >= cuts.web_hash_floor)


def anchored(scores, motion, cuts: Cuts, hash_bits=None, sides=None, floors=None) -> np.ndarray:
    """Pairs one photo by the face in its background (Cuts.anchor_*; Cuts.web_* where both faces'
    hash floors are high), by their face's own fit (Cuts.face_*: up to the face score cut, with
    the small-face allowance on a coarse grid, or at any score within the hash bits) or by their
    whole images among web photos (Cuts.web_hash_*: at any score); motion, hash_bits, sides and
    floors as in `grouped`. A rule whose cut is 0 (bits -1) is off."""
    move, n_face, n_back, err = (np.asarray(m, np.float64) for m in motion)
    s = np.asarray(scores, np.float64)
    with np.errstate(invalid="ignore"):
        back = (s <= cuts.anchor_score) & (move <= cuts.anchor_motion) & (n_face >= cuts.anchor_matches) & (n_back >= cuts.anchor_matches)
        back &= cuts.anchor_motion > 0
        if floors is not None and cuts.web_motion > 0:
            back |= (s <= cuts.anchor_score) & (move <= cuts.web_motion) & (n_face >= cuts.web_matches) & (
                n_back >= cuts.web_matches) & (np.asarray(floors, np.float64) >= cuts.web_floor)
        face = ((s <= cuts.face_score * cuts.allowance(sides)) | _hash_close(hash_bits, cuts)) & (err <= cuts.face_fit) & (
            n_face >= cuts.face_matches)
        whole = _web_hash(hash_bits, floors, cuts) & (n_face >= cuts.web_hash_matches) & (n_back >= cuts.web_hash_matches)
    return back | (face & (cuts.face_fit > 0)) | whole


def _hash_close(hash_bits, cuts: Cuts):
    """Whether each pair is within the hash rule's bits (False where the bits are unknown or the
    rule is off)."""
    if hash_bits is None or cuts.hash_bits < 0:
        return False
    return np.asarray(hash_bits) <= cuts.hash_bits


class SamePhotoCheck:
    """The pair test for neardup.near_duplicate_groups: check(i, j) -> (grouped, score), for file
    rows i and j; `prefetch(pairs)` scores many pairs in one batch.

    Scores are kept in `cache`, keyed by the two faces' keys (their image bytes and face settings)
    in sorted order, so a re-run scores no pair again and the score of a pair does not depend on
    which face is the group's centre. `cut`: the highest score grouped (Cuts.same_photo for
    copies only, Cuts.shot for copies and near-identical shots); `cuts`, when given, adds the
    neighbour-ratio rule (Cuts), over the pairs prefetched for the faces (the grouping prefetches
    each identity's candidate pairs before it asks about any). `hashes`: (n, 2) or (n, 4) uint64 per file
    row, each image's pHash and its mirror image's (then its picture's inside a frame and that
    one's mirror: neardup.hash_distance; the whole-image signal of Cuts); the grouping
    also pairs faces whose hashes are close (neardup.hash_pairs), whatever their cosine.
    `anchor` (anchor.ImageKeypoints over the file rows): the face-in-its-background test of Cuts,
    asked only about a pair nothing else groups and whose score is within Cuts.anchor_score; its
    answers are kept in `motions` (same keys as `cache`). `set_floors` gives it each face's hash
    floor over its identity (the rare-hash rule of Cuts; the grouping sets them before it asks)."""

    def __init__(self, views: FaceViews, crop_row: np.ndarray, keys: np.ndarray, cut: float, cache: dict | None = None,
                 progress=None, cuts: Cuts | None = None, hashes: np.ndarray | None = None, threads: int = 1,
                 anchor=None, motions: dict | None = None):
        self.views, self.crop_row, self.keys, self.cut = views, np.asarray(crop_row), np.asarray(keys, dtype=object), float(cut)
        self.hashes = None if hashes is None else np.asarray(hashes, np.uint64).reshape(len(hashes), -1)
        self.cache = {} if cache is None else cache
        self.progress = progress
        self.threads = int(threads)  # batches scored side by side
        self.batch = 256  # pairs a thread scores at a time (pair_scores splits them further)
        self.cuts = cuts
        self.neighbours: dict[str, set] = {}  # face key -> keys of its candidate neighbours seen by prefetch
        self.anchor = anchor
        self.motions = {} if motions is None else motions
        self.floors = None  # each file row's hash floor (neardup.hash_floors), set by set_floors; None: the rare-hash rule is off
        self.scored = 0  # pairs scored by this check (not found in the cache)
        self.anchored = 0  # pairs whose face-in-background test this check ran (not found in `motions`)
        self.grouped = 0  # pairs it grouped

    def _key(self, i: int, j: int) -> tuple[str, str, bool]:
        a, b = self.keys[i], self.keys[j]
        return (a, b, False) if a <= b else (b, a, True)

    def prefetch(self, pairs, companions=()) -> None:
        """Score `pairs` (file rows) in batches; each becomes its faces' neighbour (the
        neighbour-ratio rule's references) unless it is among `companions`."""
        every = {}
        for i, j in pairs:
            a, b, swap = self._key(int(i), int(j))
            if (i, j) not in companions:
                self.neighbours.setdefault(a, set()).add(b)
                self.neighbours.setdefault(b, set()).add(a)
            every[(a, b)] = (j, i) if swap else (i, j)
        self._prefetch_scores({k: v for k, v in every.items() if k not in self.cache})
        # every pair's background test, not only the newly scored ones': a workspace whose scores
        # were kept without those answers gets them side by side too
        self._prefetch_motions(list(every), list(every.values()))

    def _prefetch_scores(self, todo: dict) -> None:
        """Score the pairs (key -> rows, the smaller key's row first) in batches on the threads."""
        if not todo:
            return
        keys = list(todo)
        ij = np.array([todo[k] for k in keys], np.int64)
        spans = [(s, min(s + self.batch, len(keys))) for s in range(0, len(keys), self.batch)]

        def score_span(span):
            part = ij[span[0] : span[1]]
            return span, pair_scores(self.views, self.crop_row[part[:, 0]], self.crop_row[part[:, 1]])

        # numpy releases the GIL in the heavy array work, so threads score batches side by side
        # (the faces pass is over when this runs; a pair's score does not depend on its batch)
        with ThreadPoolExecutor(max_workers=max(1, min(self.threads, len(spans)))) as pool:
            for (a, b), scores in pool.map(score_span, spans):
                self.cache.update(zip(keys[a:b], scores.tolist()))
                self.scored += b - a
                if self.progress is not None:
                    self.progress(b - a)

    def _prefetch_motions(self, keys: list, ij: list) -> None:
        """The keypoint test of the pairs, not yet answered, that it may be asked about (score above
        the grouping cut, within Cuts.anchor_score or face_score, or any score where the images'
        hashes are within Cuts.hash_bits and the face fit is on, or within Cuts.web_hash_bits among web
        photos), run by the threads side by side
        instead of one pair at a time when asked. A pair another rule groups is looked at too: a
        few more tests (about 1% on the 10k bench) for a stage that then runs on every core."""
        bits = [None] * len(ij)
        if self.hashes is not None and len(ij):
            from facesieve.select.neardup import hash_distance

            pairs = np.asarray(ij, np.int64).reshape(-1, 2)
            bits = hash_distance(self.hashes, pairs[:, 0], pairs[:, 1]).tolist()
        self._answer({k: rows for k, rows, b in zip(keys, ij, bits)
                      if self.cut < self.cache[k] and self._may_anchor(self.cache[k], b, self.side(*rows), floor=self.floor(*rows))})

    def answer_motions(self, pairs) -> None:
        """The keypoint test of every (i, j) in `pairs` (file rows) not answered yet, on the threads,
        whatever its score (the benchmark asks more pairs than a run does)."""
        todo = {}
        for i, j in pairs:
            a, b, swap = self._key(int(i), int(j))
            todo[(a, b)] = (int(j), int(i)) if swap else (int(i), int(j))
        self._answer(todo)

    def _answer(self, todo: dict) -> None:
        """Run the keypoint test for the pairs (key -> rows, the smaller key's row first) without an answer."""
        todo = {k: rows for k, rows in todo.items() if k not in self.motions}
        if not todo:
            return
        self.motions.update(zip(todo, self.anchor.motions(list(todo.values()), self.threads)))
        self.anchored += len(todo)

    def score(self, i: int, j: int) -> float:
        a, b, _ = self._key(i, j)
        if (a, b) not in self.cache:
            self.prefetch([(i, j)])
        return self.cache[(a, b)]

    def ratio(self, i: int, j: int) -> float:
        """The pair's score over the median score of its faces to their other neighbours (NaN: none)."""
        a, b, _ = self._key(i, j)
        ref = [self.cache[min(x, o), max(x, o)] for x, y in ((a, b), (b, a)) for o in self.neighbours.get(x, ()) if o != y]
        return self.cache[(a, b)] / max(float(np.median(ref)), 1e-9) if ref else float("nan")

    def hash_bits(self, i: int, j: int):
        """Bits between the two images' whole-image hashes, mirror-aware (None: no hashes)."""
        if self.hashes is None:
            return None
        from facesieve.select.neardup import hash_distance

        return int(hash_distance(self.hashes, np.array([i]), np.array([j]))[0])

    def set_floors(self, rows, labels) -> None:
        """The hash floors of file rows `rows` (the faces the grouping sees), over their identity
        `labels` (neardup.hash_floors); the rare-hash rule of Cuts asks them."""
        from facesieve.select.neardup import hash_floors

        if self.hashes is None:
            return
        rows = np.asarray(rows, np.int64)
        self.floors = np.full(len(self.hashes), np.nan)
        self.floors[rows] = hash_floors(self.hashes[rows], labels)

    def tight(self, rows) -> np.ndarray:
        """FaceViews.tight of file rows (False where a row has no crop)."""
        at = self.crop_row[np.asarray(rows, np.int64)]
        return (at >= 0) & self.views.tight(np.maximum(at, 0))

    def spectra(self, rows) -> np.ndarray:
        """FaceViews.spectrum of file rows, (n, d) float32 (zeros where a row has no crop)."""
        out = np.zeros((len(rows), 2 * SPECTRUM_BAND**2), np.float32)
        for k, r in enumerate(rows):
            if int(self.crop_row[r]) >= 0:
                out[k] = self.views.spectrum(int(self.crop_row[r]))
        return out

    def floor(self, i: int, j: int) -> float:
        """The lower of the two faces' hash floors (NaN where either is unknown)."""
        return float("nan") if self.floors is None else float(np.minimum(self.floors[i], self.floors[j]))

    def side(self, i: int, j: int) -> int:
        """The pair's comparison grid (pair_side)."""
        return int(pair_side(self.views.scales, [self.crop_row[i]], [self.crop_row[j]])[0])

    def motion(self, i: int, j: int) -> tuple[float, int, int, float]:
        """anchor.face_motion of the pair (the face of the row with the smaller key against its
        background), from `motions` or run now."""
        a, b, swap = self._key(i, j)
        m = self.motions.get((a, b))
        if m is None:
            from facesieve.select.anchor import NO_EVIDENCE

            m = NO_EVIDENCE if self.anchor is None else self.anchor.motion(*((j, i) if swap else (i, j)))
            self.motions[(a, b)] = m
            self.anchored += 1
        return m

    def _may_anchor(self, s: float, bits=None, side=None, cuts: Cuts | None = None, floor: float = float("nan")) -> bool:
        """Whether the keypoint rules (the face in its background, its face's own fit, the whole
        image among web photos) are on and one could decide a pair of score s whose images' hashes
        are `bits` apart, compared on a grid of `side` (None: unknown), its faces' lower hash floor
        `floor`, under `cuts` (None: the check's)."""
        cuts = self.cuts if cuts is None else cuts
        if self.anchor is None or cuts is None:
            return False
        allowance = cuts.most_allowance() if side is None or side <= COARSE_SIDE else 1.0
        return bool(((cuts.anchor_motion > 0 or cuts.web_motion > 0) and s <= cuts.anchor_score)
                    or (cuts.face_fit > 0 and (s <= cuts.face_score * allowance or bool(_hash_close(bits, cuts))))
                    or bool(_web_hash(bits, floor, cuts)))

    def _anchored(self, i: int, j: int, s: float, bits, cuts: Cuts | None = None) -> bool:
        """The keypoint rules, asked only where one could decide (bits: the pair's hash_bits;
        cuts: None, the check's)."""
        cuts = self.cuts if cuts is None else cuts
        side, floor = self.side(i, j), self.floor(i, j)
        if not self._may_anchor(s, bits, side, cuts, floor):
            return False
        m = self.motion(i, j)
        return bool(anchored([s], tuple([v] for v in m), cuts, None if bits is None else [bits], [side], [floor])[0])

    def same_photo(self, i: int, j: int, outright: bool = False) -> bool:
        """Whether a grouped pair is one photo (rather than a near-identical shot): at or below the
        same-photo cut, or by the neighbour-ratio, the whole-image hash, the small-face, the rare-hash
        or a keypoint rule. `outright`: by the pair's own evidence only, without the rules that
        judge it against its faces' other photos (the neighbour ratio, the lone cut, rare hashes and
        the looser background motion among web photos: their errors are a studio series' close
        shots, which a chain of them would compound)."""
        s = self.score(int(i), int(j))
        cuts = self.cuts or Cuts(self.cut, self.cut)
        if outright:
            cuts = replace(cuts, ratio_score=0.0, lone=0.0, rare_bits=-1, web_motion=0.0, web_score=0.0, web_hash_bits=-1)
        bits = self.hash_bits(int(i), int(j))
        return bool(s <= cuts.same_photo or grouped([s], [self.ratio(int(i), int(j))], cuts.same_photo, cuts,
                                                    bits, [self.side(int(i), int(j))], floors=[self.floor(int(i), int(j))])[0]
                    or self._anchored(int(i), int(j), s, bits, cuts))

    def evidence(self, pairs) -> list[str]:
        """Which rule calls each pair (i, j) above the same-photo cut one photo, in a few words for
        the decision's detail ('' at or under the cut, where the crop score speaks for itself, or
        where no rule does): the rules are added one at a time (RULE_WORDS' order) and the first
        that groups the pair names it. A crop score far above the cut is otherwise a puzzle to the
        person reviewing it. Keypoint answers are read only where the check has them (a pair a
        keypoint rule grouped was asked); nothing is computed that the grouping did not."""
        pairs = [(int(i), int(j)) for i, j in pairs]
        out = [""] * len(pairs)
        if self.cuts is None:
            return out
        at = [k for k, (i, j) in enumerate(pairs) if self.score(i, j) > self.cuts.same_photo]
        if not at:
            return out
        from facesieve.select.anchor import NO_EVIDENCE

        above = [pairs[k] for k in at]
        motion = tuple(np.array(m, np.float64) for m in zip(*(self.motions.get(self._key(i, j)[:2], NO_EVIDENCE) for i, j in above)))
        args = (np.array([self.score(i, j) for i, j in above]), np.array([self.ratio(i, j) for i, j in above]), 0.0)
        rest = (None if self.hashes is None else np.array([self.hash_bits(i, j) for i, j in above]),
                np.array([self.side(i, j) for i, j in above]), motion, np.array([self.floor(i, j) for i, j in above]))
        left = np.ones(len(above), bool)
        cuts = Cuts(self.cuts.same_photo, self.cuts.shot)
        for words, fields in RULE_WORDS:
            cuts = replace(cuts, **{f: getattr(self.cuts, f) for f in fields})
            hit = left & grouped(*args, cuts, *rest)
            for k in np.flatnonzero(hit):
                out[at[k]] = words
            left &= ~hit
        return out

    def __call__(self, i: int, j: int) -> tuple[bool, float]:
        ok, s = self.peek(i, j)
        self.grouped += int(ok)
        return ok, s

    def _ceiling(self) -> float:
        """The highest crop score any rule of the cuts may group at (the face fit within the hash
        bits aside: it has no ceiling)."""
        c = self.cuts
        keypoints = self.anchor is not None
        return max(self.cut, c.ratio_score, c.lone, c.hash_score if c.hash_bits >= 0 else 0.0, c.coarse,
                   c.anchor_score if keypoints and (c.anchor_motion > 0 or c.web_motion > 0) else 0.0, c.face_score * c.most_allowance() if keypoints and c.face_fit > 0 else 0.0,
                   c.rare_score * c.most_allowance() if c.rare_bits >= 0 else 0.0, c.web_score)

    def peek(self, i: int, j: int) -> tuple[bool, float]:
        """(grouped, score) of a pair, not counted in `grouped`. A pair above every rule's ceiling
        and outside the hash bits is answered without the rules (most pairs: the cheap way out)."""
        s = self.score(int(i), int(j))
        ok = s <= self.cut
        if not ok and self.cuts is not None:
            bits = self.hash_bits(int(i), int(j))
            no_ceiling = self.anchor is not None and self.cuts.face_fit > 0 and bits is not None and 0 <= bits <= self.cuts.hash_bits
            no_ceiling = no_ceiling or (self.anchor is not None and bool(_web_hash(bits, self.floor(int(i), int(j)), self.cuts)))
            if s > self._ceiling() and not no_ceiling:
                return False, s
            ok = bool(grouped([s], [self.ratio(int(i), int(j))], self.cut, self.cuts, bits,
                              [self.side(int(i), int(j))], floors=[self.floor(int(i), int(j))])[0]) or self._anchored(int(i), int(j), s, bits)
        return ok, s
