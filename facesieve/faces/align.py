"""Warp a face onto the ArcFace 112x112 five-point template with a similarity transform.

Every embedder and quality model trained on ArcFace-style crops expects this exact geometry, so
the transform is a deterministic least-squares fit (Umeyama), not a robust estimator with random
sampling: the same landmarks always give the same crop.
"""

from __future__ import annotations

import cv2
import numpy as np

# right eye (viewer's left), left eye, nose tip, right mouth corner, left mouth corner, in 112x112 pixels
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ARCFACE_SIZE = 112


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the rotation + uniform scale + translation that best maps src onto dst.

    Umeyama (1991) least squares, reflection excluded. src, dst: (n, 2) with n >= 2.
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    if src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"need two matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN or infinity")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(s)
    if var_s <= 1e-12:
        raise ValueError("landmarks are all at one point; cannot fit a transform")
    cov = d.T @ s / len(s)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1.0
    r = u @ e @ vt
    scale = (sig * np.diag(e)).sum() / var_s
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The ArcFace template scaled to a square crop of `size` pixels."""
    return ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)


def align(rgb: np.ndarray, landmarks5: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """Aligned (size, size, 3) uint8 crop; pixels outside the image repeat the border."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {rgb.shape}")
    lm = np.asarray(landmarks5, np.float64).reshape(-1, 2)
    if lm.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks, got {lm.shape[0]}")
    m = similarity_transform(lm, template(size))
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
