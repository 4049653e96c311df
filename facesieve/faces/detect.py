"""What every face detector shares: `detect(rgb) -> list[Detection]` with 5 ArcFace-order landmarks,
the face to keep of several, and the image handling of the detectors' retries.

The detectors themselves are one module each under facesieve/models/detectors/ (YuNet with its
retry cascade, dlib HOG / CNN, RetinaFace), built by name through facesieve.models.zoo.
Coordinates always come back in the original image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from facesieve.faces import POLICIES
from facesieve.faces.align import ARCFACE_SIZE, ARCFACE_TEMPLATE


@dataclass(frozen=True, eq=False)
class Detection:
    """One face. `landmarks` (5, 2) float32 in ArcFace order: image-left eye (the subject's right),
    image-right eye, nose tip, image-left mouth corner, image-right mouth corner.

    `raw` is the detector's own rectangle (left, top, right, bottom) where it has one (dlib), so a
    model that needs it can be fed exactly what the detector produced.
    """

    box: tuple[float, float, float, float]  # x, y, w, h in original image pixels
    score: float
    landmarks: np.ndarray
    raw: tuple[int, int, int, int] | None = None


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces in an HxWx3 uint8 RGB image, in the detector's own order."""
        ...


def pick_face(dets: list[Detection], shape: tuple[int, int], policy: str = "central") -> int | None:
    """Index of the face to keep, or None when there is none.

    "central": the largest, most central face: face side (sqrt of box area) discounted by up to half
    for distance of the box centre from the image centre (0 at the centre, 1 at a corner).
    "first": the detector's first face (FaceDuplicationFilter / face_recognition behaviour).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown face policy {policy!r}; choose one of: {', '.join(POLICIES)}")
    if not dets:
        return None
    if policy == "first":
        return 0
    h, w = shape[:2]
    half_diag = 0.5 * float(np.hypot(w, h)) or 1.0
    best, best_val = 0, -np.inf
    for i, d in enumerate(dets):
        x, y, bw, bh = d.box
        side = float(np.sqrt(max(bw, 0.0) * max(bh, 0.0)))
        off = float(np.hypot(x + bw / 2 - w / 2, y + bh / 2 - h / 2)) / half_diag
        val = side * (1.0 - 0.5 * min(off, 1.0))
        if val > best_val:
            best, best_val = i, val
    return best


def fallback_detection(shape: tuple[int, int]) -> Detection:
    """The whole image taken as the face (score 0): for tight crops where no detector finds one.

    Landmarks are the ArcFace template stretched to the image, i.e. the image is assumed to be an
    aligned-ish face crop. The caller decides when that assumption is allowed and flags it.
    """
    h, w = int(shape[0]), int(shape[1])
    lm = (ARCFACE_TEMPLATE * np.array([w / ARCFACE_SIZE, h / ARCFACE_SIZE], np.float32)).astype(np.float32)
    return Detection(box=(0.0, 0.0, float(w), float(h)), score=0.0, landmarks=lm)


def input_scale(h: int, w: int, min_side: int, max_side: int) -> float:
    """Resize factor for a CNN detector's input: large images shrink to `max_side` (cost grows with
    pixels), small ones grow until their short side reaches `min_side` (faces must reach the
    smallest anchors), never past `max_side`."""
    if max(h, w) > max_side:
        return max_side / max(h, w)
    if min(h, w) < min_side:
        return min(min_side / min(h, w), max_side / max(h, w))
    return 1.0


MIN_IMAGE_SIDE = 2  # pixels: a smaller image is refused by the detectors (and the faces stage calls it no_face)


def as_rgb(rgb: np.ndarray) -> np.ndarray:
    """The image every detector takes: HxWx3 uint8, contiguous (a grey image gets three channels)."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {a.dtype}")
    if a.shape[0] < MIN_IMAGE_SIDE or a.shape[1] < MIN_IMAGE_SIDE:
        raise ValueError(f"image too small to hold a face: {a.shape[1]}x{a.shape[0]}")
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------- retries (YuNet, RetinaFace)


def resize(rgb: np.ndarray, s: float) -> np.ndarray:
    """The image scaled by `s` (area averaging to shrink, bilinear to grow); itself when s is 1."""
    if s == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def pad_border(rgb: np.ndarray, frac: float) -> tuple[np.ndarray, int]:
    """A border of the image's mean colour, `frac` of the long side on every side; and its width.
    A face that fills the frame has no context and may exceed a detector's largest anchors."""
    b = round(frac * max(rgb.shape[:2]))
    fill = [float(v) for v in rgb.reshape(-1, 3).mean(0)]
    return cv2.copyMakeBorder(rgb, b, b, b, b, cv2.BORDER_CONSTANT, value=fill), b


def to_original(d: Detection, border: int, sx: float, sy: float) -> Detection:
    """A detection found on a resized (x `sx`, `sy`), bordered (`border` px) view of an image, in the
    image's own pixels: what every retry of YuNet and RetinaFace hands back."""
    scale = np.array([sx, sy], np.float64)
    x, y, w, h = (float(v) for v in d.box)
    lm = ((np.asarray(d.landmarks, np.float64) - border) / scale).astype(np.float32)
    return Detection(box=((x - border) / sx, (y - border) / sy, w / sx, h / sy), score=float(d.score), landmarks=lm)


def best_of_attempts(attempts: Iterable[list[Detection]], confident: float) -> list[Detection]:
    """The faces of the try whose best face scores highest. `attempts` is consumed lazily (a
    generator runs each try only when asked for it) and stops once a face scores `confident`."""
    best: list[Detection] = []
    best_score = -1.0
    for dets in attempts:
        top = max((d.score for d in dets), default=-1.0)
        if top > best_score:
            best, best_score = dets, top
        if best_score >= confident:
            break
    return best
