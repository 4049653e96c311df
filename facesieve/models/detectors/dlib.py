"""dlib HOG (`dlib-hog`) and MMOD CNN (`dlib-cnn`), run as face_recognition runs them: on the
original image with one upsample, so FaceDuplicationFilter's golden selection is reproduced. dlib's
order of faces is kept and the raw dlib rectangle travels with the detection (`Detection.raw`) for
the dlib embedder. A score threshold is applied after detection, since dlib's own detectors take none.
"""

from __future__ import annotations

import numpy as np

from facesieve.faces.align import ARCFACE_TEMPLATE, similarity_transform
from facesieve.faces.detect import Detection, as_rgb
from facesieve.models.bundled import dlib_cnn_path, dlib_shape5_path
from facesieve.models.spec import ModelSpec

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
        rgb = as_rgb(rgb)
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
        rgb = as_rgb(rgb)
        out = []
        for raw, score in self.rects(rgb):
            left, top, right, bottom = raw
            lm = dlib5_to_arcface(self.landmarks(rgb, raw))
            box = (float(left), float(top), float(right - left + 1), float(bottom - top + 1))  # dlib corners are inclusive
            out.append(Detection(box=box, score=score, landmarks=lm, raw=raw))
        return out


class ThresholdedDetector:
    """Keeps a detector's faces scoring at least `threshold` (dlib's scores are not probabilities:
    HOG margins and CNN confidences; see the dlib docs for their range)."""

    def __init__(self, inner, threshold: float):
        self.inner, self.threshold, self.name = inner, float(threshold), inner.name

    def detect(self, rgb):
        return [d for d in self.inner.detect(rgb) if d.score >= self.threshold]


def build(spec: ModelSpec, weights: None, threshold: float):
    det = DlibDetector(cnn=spec.name == "dlib-cnn")
    return det if spec.threshold is None else ThresholdedDetector(det, spec.threshold)
