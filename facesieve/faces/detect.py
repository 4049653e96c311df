"""Face detectors behind one verb, `detect(rgb) -> list[Detection]`, with 5 ArcFace-order landmarks.

YuNet (the default) is wrapped in a small cascade because face datasets are often tight or dark
crops. The image is resized into the detector's comfortable range; when no face scores as
confident, it is retried shrunk and bordered (a face that fills the frame has no context and may
exceed YuNet's largest anchors), then with equalised contrast (extreme lighting, as in Extended
Yale B), then also smoothed (striped or noisy near-black frames). The best-scoring try wins.
Measured: every image of orl_att40, yaleB_cropped10, essex_faces94_19, deepface13 and seed_vggface
gets a face. Coordinates always come back in the original image's pixels.

dlib HOG / CNN run on the original image with one upsample, exactly as face_recognition does, so
FaceDuplicationFilter's golden selection is reproduced; dlib's order of faces is kept and the raw
dlib rectangle travels with the detection (`Detection.raw`) for the dlib embedder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from facesieve.faces.align import ARCFACE_SIZE, ARCFACE_TEMPLATE, similarity_transform
from facesieve.models.bundled import dlib_cnn_path, dlib_shape5_path, yunet_path

POLICIES = ("central", "first")


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


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
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


# ---------------------------------------------------------------- YuNet


def _equalise(rgb: np.ndarray) -> np.ndarray:
    """Histogram-equalised luminance, colour kept: rescues very dark or half-shadowed faces."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def _smooth(rgb: np.ndarray) -> np.ndarray:
    """Gaussian blur sized to the image: removes scan-line stripes and sensor noise that hide a face."""
    k = max(3, (min(rgb.shape[:2]) // 40) | 1)
    return cv2.GaussianBlur(rgb, (k, k), 0)


def _pad(rgb: np.ndarray, frac: float) -> tuple[np.ndarray, int]:
    """Add a border of the image's mean colour, `frac` of the long side on every side."""
    b = round(frac * max(rgb.shape[:2]))
    fill = [float(v) for v in rgb.reshape(-1, 3).mean(0)]
    return cv2.copyMakeBorder(rgb, b, b, b, b, cv2.BORDER_CONSTANT, value=fill), b


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's own log at errors only while the block runs: its warnings are printed from C++
    straight onto stderr, in the middle of the progress bars, and say nothing a user can act on."""
    try:
        from cv2.utils import logging as cvlog
    except ImportError:  # pragma: no cover - a build without the logging module
        yield
        return
    before = cvlog.getLogLevel()
    cvlog.setLogLevel(cvlog.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cvlog.setLogLevel(before)


class YuNetDetector:
    """YuNet 2023mar int8 (bundled), with border and contrast retries for hard crops."""

    name = "yunet"
    # the image is resized so its long side is at most MAX_SIDE (speed: cost grows with pixels) and
    # its short side at least MIN_SIDE (faces smaller than YuNet's smallest anchors are missed)
    MAX_SIDE = 1280
    MIN_SIDE = 160
    # a bordered retry looks for a face that fills the frame: the image is first fitted to
    # PAD_SIDE (YuNet's anchors reach ~256 px faces), then given a border of PAD_FRACTION
    PAD_SIDE = 256
    PAD_FRACTION = 0.25
    CONFIDENT = 0.9  # a face scoring this high ends the retries
    # (contrast, border) per try: as is, bordered, equalised, equalised + bordered, then
    # equalised + smoothed (striped or noisy near-black frames), plain and bordered
    ATTEMPTS = ((None, False), (None, True), ("equalise", False), ("equalise", True), ("smooth", False), ("smooth", True))

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000, model_path: str | None = None):
        path = str(model_path or yunet_path())
        self.score_threshold = score_threshold
        with quiet_opencv():  # it warns that the new graph engine ignores the (default) target, on every load
            self._net = cv2.FaceDetectorYN.create(path, "", (320, 320), score_threshold, nms_threshold, top_k)

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(bgr)
        return np.zeros((0, 15), np.float32) if faces is None else np.asarray(faces, np.float32).reshape(-1, 15)

    def _scale(self, h: int, w: int) -> float:
        return input_scale(h, w, self.MIN_SIDE, self.MAX_SIDE)

    @staticmethod
    def _resize(rgb: np.ndarray, s: float) -> np.ndarray:
        if s == 1.0:
            return rgb
        h, w = rgb.shape[:2]
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)

    def view(self, rgb: np.ndarray, pad: bool) -> np.ndarray:
        """The image resized for a plain pass or for a bordered one (before contrast and border)."""
        h, w = rgb.shape[:2]
        return self._resize(rgb, self.PAD_SIDE / max(h, w) if pad else self._scale(h, w))

    def attempt(self, rgb: np.ndarray, contrast: str | None, pad: bool, resized: np.ndarray | None = None) -> list[Detection]:
        """One detector pass on one view of the image; coordinates mapped back to `rgb`'s pixels.
        `resized`: view(rgb, pad) when the caller has it already (a retry reuses it)."""
        h, w = rgb.shape[:2]
        img = self.view(rgb, pad) if resized is None else resized
        sx, sy = img.shape[1] / w, img.shape[0] / h
        if contrast is not None:
            img = _equalise(img)
        if contrast == "smooth":
            img = _smooth(img)
        border = 0
        if pad:
            img, border = _pad(img, self.PAD_FRACTION)
        return [self._to_detection(f, border, sx, sy) for f in self._run(img)]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = _as_rgb(rgb)
        # Retries run only while nothing confident has been found; the try whose best face scores
        # highest wins (a half-lit face is found as a lit half-face at ~0.75, whole once equalised).
        # Each view is resized once: the retries differ only in contrast and border, which are
        # applied to a copy of it (resizing a large photo again per retry decided nothing).
        best: list[Detection] = []
        best_score = -1.0
        views: dict[bool, np.ndarray] = {}
        for contrast, pad in self.ATTEMPTS:
            if pad not in views:
                views[pad] = self.view(rgb, pad)
            dets = self.attempt(rgb, contrast, pad, views[pad])
            top = max((d.score for d in dets), default=-1.0)
            if top > best_score:
                best, best_score = dets, top
            if best_score >= self.CONFIDENT:
                break
        return best

    @staticmethod
    def _to_detection(f: np.ndarray, border: int, sx: float, sy: float) -> Detection:
        scale = np.array([sx, sy], np.float64)
        xy = (np.asarray(f[0:2], np.float64) - border) / scale
        wh = np.asarray(f[2:4], np.float64) / scale
        lm = ((f[4:14].reshape(5, 2).astype(np.float64) - border) / scale).astype(np.float32)
        return Detection(box=(float(xy[0]), float(xy[1]), float(wh[0]), float(wh[1])), score=float(f[14]), landmarks=lm)


# ---------------------------------------------------------------- dlib

# Where dlib's 5-point landmarks fall on the ArcFace 112x112 template: image-left eye centre,
# image-right eye centre (each the mean of that eye's two corners) and the base of the nose.
# Measured here: 415 faces (seed_vggface, essex_faces94_19, deepface13, orl_att40) aligned with
# YuNet's 5 points, dlib's points mapped into that frame, per-coordinate median (sd 2-2.6 px).
# dlib's eye centres sit ~3 px below YuNet's eye points and its nose base ~8 px below the tip.
DLIB5_IN_ARCFACE = np.array([[37.24, 54.62], [73.71, 53.38], [55.85, 79.83]], dtype=np.float32)


def dlib5_to_arcface(points: np.ndarray) -> np.ndarray:
    """ArcFace-order 5 points (the YuNet / ArcFace meaning) from dlib's 5-point model.

    dlib gives, in order: image-right eye outer and inner corner, image-left eye outer and inner
    corner, base of the nose. It has no mouth, and its eye and nose points are not the ones the
    ArcFace template means, so all five are estimated: a similarity transform fitted from the
    three measured points (two eye centres, nose base) to where they sit on the template
    (DLIB5_IN_ARCFACE) carries the template's five points into the image. Aligning with these
    gives the same crop as aligning dlib's own points onto their measured template positions.
    """
    p = np.asarray(points, np.float64).reshape(5, 2)
    measured = np.stack([(p[2] + p[3]) / 2, (p[0] + p[1]) / 2, p[4]])
    m = similarity_transform(DLIB5_IN_ARCFACE, measured)  # template frame -> image
    return (ARCFACE_TEMPLATE.astype(np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)


class DlibDetector:
    """dlib HOG (`dlib-hog`) or MMOD CNN (`dlib-cnn`), one upsample, on the original image."""

    UPSAMPLE = 1  # face_recognition.face_locations default

    def __init__(self, cnn: bool = False):
        import dlib

        self.name = "dlib-cnn" if cnn else "dlib-hog"
        self._cnn = cnn
        self._det = dlib.cnn_face_detection_model_v1(str(dlib_cnn_path())) if cnn else dlib.get_frontal_face_detector()
        self._sp = dlib.shape_predictor(str(dlib_shape5_path()))
        self._rect = dlib.rectangle

    def rects(self, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """dlib's raw rectangles (left, top, right, bottom) and scores, in dlib's order."""
        rgb = _as_rgb(rgb)
        if self._cnn:
            found = self._det(rgb, self.UPSAMPLE)
            return [((r.rect.left(), r.rect.top(), r.rect.right(), r.rect.bottom()), float(r.confidence)) for r in found]
        # run() returns the same rectangles, in the same order, as __call__ (what face_recognition uses)
        found, scores, _ = self._det.run(rgb, self.UPSAMPLE)
        return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(found, scores)]

    def landmarks(self, rgb: np.ndarray, raw: tuple[int, int, int, int]) -> np.ndarray:
        """dlib's own 5 points (5, 2) for a raw rectangle, in dlib's order."""
        shape = self._sp(rgb, self._rect(*raw))
        return np.array([(pt.x, pt.y) for pt in shape.parts()], np.float64)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = _as_rgb(rgb)
        out = []
        for raw, score in self.rects(rgb):
            left, top, right, bottom = raw
            lm = dlib5_to_arcface(self.landmarks(rgb, raw))
            box = (float(left), float(top), float(right - left + 1), float(bottom - top + 1))  # dlib corners are inclusive
            out.append(Detection(box=box, score=score, landmarks=lm, raw=raw))
        return out
