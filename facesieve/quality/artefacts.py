"""Capture artefacts measured on the ORIGINAL image grid: sensor-like noise and JPEG blockiness.

Both need the pixels as they were stored, before detection resizes and alignment warps them:
JPEG's 8x8 block edges sit at fixed positions of the file's grid, and interpolation onto the
112x112 crop both averages noise away and smears block edges. So the faces stage computes them on
the chosen face's box (`face_region_measures`) and stores them in the faces table; quality methods
read them from there.

- noise_sigma: Immerkaer's fast noise estimator ("Fast Noise Variance Estimation", CVIU 1996),
  sigma = sqrt(pi/2) / 6 * mean |I * M| with M the 3x3 difference-of-Laplacians mask, averaged only
  over the flattest half of the pixels (lowest Sobel gradient), so that a face's own edges (eyes,
  hair, outline) are not read as noise. Grey levels on 0..255, in luminance. Clean photos read
  0.3-1; Gaussian noise of sigma s reads about s when added to the grey image and about 0.67 s when
  added independently to R, G and B (luminance averages the channels: sqrt(.299^2+.587^2+.114^2)).
- blockiness: mean absolute luminance step across 8-pixel block boundaries divided by the mean step
  inside blocks, boundaries at absolute image coordinates that are multiples of 8 (where a JPEG
  encoder puts them). About 1 for unblocked content; web JPEGs 1.0-1.3; quality 30 about 1.6,
  quality 10 about 2.5, quality 5 above 3.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

BLOCK = 8  # JPEG's luma block size
MIN_SIDE = 16  # smaller regions give no estimate (NaN)
MAX_SIDE = 512  # larger regions are measured on a central window of this size (cost bound)

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def luma(rgb: np.ndarray) -> np.ndarray:
    """JPEG's luminance Y (BT.601) as float64, 0..255."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        return a.astype(np.float64)
    return a[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def noise_sigma(grey: np.ndarray) -> float:
    """Noise standard deviation (grey levels) of a single-channel image; NaN if too small."""
    g = np.asarray(grey, np.float64)
    if min(g.shape[:2]) < MIN_SIDE:
        return float("nan")
    resp = np.abs(cv2.filter2D(g, cv2.CV_64F, _IMMERKAER)[1:-1, 1:-1])
    gx = cv2.Sobel(g, cv2.CV_64F, 1, 0)[1:-1, 1:-1]
    gy = cv2.Sobel(g, cv2.CV_64F, 0, 1)[1:-1, 1:-1]
    mag = np.hypot(gx, gy)
    flat = mag <= np.median(mag)
    return float(math.sqrt(math.pi / 2) / 6 * resp[flat].mean())


def blockiness(grey: np.ndarray, x0: int = 0, y0: int = 0) -> float:
    """Step across 8x8 block boundaries / step inside blocks; (x0, y0) is the region's top-left
    corner in the original image, so boundaries are placed where the encoder put them."""
    g = np.asarray(grey, np.float64)
    if min(g.shape[:2]) < MIN_SIDE:
        return float("nan")
    dh = np.abs(np.diff(g, axis=1))  # column c: step between absolute x0+c and x0+c+1
    dv = np.abs(np.diff(g, axis=0))
    on_h = (np.arange(dh.shape[1]) + x0 + 1) % BLOCK == 0
    on_v = (np.arange(dv.shape[0]) + y0 + 1) % BLOCK == 0
    across = dh[:, on_h].mean() + dv[on_v, :].mean()
    inside = dh[:, ~on_h].mean() + dv[~on_v, :].mean()
    if inside <= 1e-9:
        return 1.0 if across <= 1e-9 else float("inf")
    return float(across / inside)


def face_region_measures(rgb: np.ndarray, box: tuple[float, float, float, float]) -> dict[str, float]:
    """noise_sigma and blockiness of the face box (x, y, w, h) of the decoded original image."""
    h, w = rgb.shape[:2]
    x, y, bw, bh = box
    x0, y0 = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
    x1, y1 = min(w, int(math.ceil(x + bw))), min(h, int(math.ceil(y + bh)))
    # a central window bounds the cost for very large faces; it keeps absolute coordinates
    if x1 - x0 > MAX_SIDE:
        x0 += (x1 - x0 - MAX_SIDE) // 2
        x1 = x0 + MAX_SIDE
    if y1 - y0 > MAX_SIDE:
        y0 += (y1 - y0 - MAX_SIDE) // 2
        y1 = y0 + MAX_SIDE
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        return {"noise_sigma": float("nan"), "blockiness": float("nan")}
    g = luma(rgb[y0:y1, x0:x1])
    return {"noise_sigma": noise_sigma(g), "blockiness": blockiness(g, x0, y0)}
