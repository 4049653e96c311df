"""Image measures on the aligned face crop: sharpness, exposure, contrast, face size, yaw.

Each measure is mapped to [0,1] (1 = good) with a smooth curve whose reference point is stated
next to it; `quality` is their geometric mean, so one very poor measure pulls the face down.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from facesieve.quality.base import QualityInput

# reference points: where each measure's score reaches 0.5
SHARPNESS_REF = 60.0  # variance of the Laplacian of the grey 112x112 crop's central region
CONTRAST_REF = 0.10  # std of grey values in [0,1]
SIZE_REF = 48.0  # inter-ocular-scaled face size in original pixels (short side of the box)
YAW_LIMIT = 0.6  # |nose offset| / inter-eye distance at which the pose score reaches 0

# the central region of the ArcFace crop that is skin and features, not background
_CENTRE = (slice(24, 104), slice(20, 92))


def grey_centre(crops: np.ndarray) -> np.ndarray:
    """(n,80,72) float32 grey in [0,1] of the face's central region."""
    c = crops[:, _CENTRE[0], _CENTRE[1]].astype(np.float32) / 255.0
    return c @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def sharpness(crops: np.ndarray) -> np.ndarray:
    out = np.empty(len(crops))
    for i, c in enumerate(crops):
        g = cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2GRAY)[_CENTRE]
        out[i] = cv2.Laplacian(g, cv2.CV_64F, ksize=3).var()
    return out


def measures(crops: np.ndarray, faces: pd.DataFrame) -> pd.DataFrame:
    """Raw measures and their [0,1] scores, one row per crop."""
    g = grey_centre(crops)
    mean = g.reshape(len(g), -1).mean(axis=1) if len(g) else np.zeros(0)
    std = g.reshape(len(g), -1).std(axis=1) if len(g) else np.zeros(0)
    clipped = ((g < 0.02) | (g > 0.98)).reshape(len(g), -1).mean(axis=1) if len(g) else np.zeros(0)
    sharp = sharpness(crops)

    size = np.minimum(faces["box_w"].to_numpy(float), faces["box_h"].to_numpy(float)) if len(faces) else np.zeros(0)
    yaw = estimate_yaw(faces)

    s_sharp = sharp / (sharp + SHARPNESS_REF)
    # exposure: best at mid-grey, falls to 0 at black/white, and with many clipped pixels
    s_expo = np.clip(1.0 - np.abs(mean - 0.5) * 2.0, 0.0, 1.0) * (1.0 - np.clip(clipped * 2.0, 0.0, 1.0))
    s_contrast = std / (std + CONTRAST_REF)
    s_size = size / (size + SIZE_REF)
    s_pose = np.clip(1.0 - np.abs(yaw) / YAW_LIMIT, 0.0, 1.0)
    s_pose = np.where(np.isnan(yaw), 1.0, s_pose)
    parts = np.stack([s_sharp, s_expo, s_contrast, s_size, 0.25 + 0.75 * s_pose], axis=1)
    quality = np.exp(np.mean(np.log(np.clip(parts, 1e-3, 1.0)), axis=1)) if len(parts) else np.zeros(0)
    return pd.DataFrame(
        {
            "quality": quality,
            "sharpness": sharp,
            "brightness": mean,
            "contrast": std,
            "clipped": clipped,
            "face_size": size,
            "yaw": yaw,
            "s_sharpness": s_sharp,
            "s_exposure": s_expo,
            "s_contrast": s_contrast,
            "s_size": s_size,
            "s_pose": s_pose,
        }
    )


def estimate_yaw(faces: pd.DataFrame) -> np.ndarray:
    """Signed horizontal offset of the nose from the eyes' midpoint, in inter-eye distances.

    0 for a frontal face; about +-0.5 near profile. NaN when landmarks are placeholders.
    """
    if not len(faces):
        return np.zeros(0)
    lm = faces[[f"lm{i}" for i in range(10)]].to_numpy(float).reshape(-1, 5, 2)
    eyes_mid = (lm[:, 0] + lm[:, 1]) / 2
    eye_vec = lm[:, 1] - lm[:, 0]
    dist = np.linalg.norm(eye_vec, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = eye_vec / dist[:, None]
        offset = ((lm[:, 2] - eyes_mid) * unit).sum(axis=1) / dist
    if "fallback" in faces:
        offset = np.where(faces["fallback"].to_numpy(bool), np.nan, offset)
    return offset


class ImageQuality:
    """Offline, model-free measures of the aligned crop; cheap (well under 1 ms per face)."""

    name = "image"
    key = "image-v1"
    uses_embedder = False

    def score(self, data: QualityInput) -> pd.DataFrame:
        return measures(data.crops, data.faces)
