"""dlib HOG and MMOD CNN (faces/detect.py), as face_recognition runs them; a score threshold is
applied after detection, since dlib's own detectors take none."""

from __future__ import annotations

from facesieve.faces.detect import DlibDetector
from facesieve.models.spec import ModelSpec


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
