"""YuNet (OpenCV zoo), run through faces/detect.py's retry cascade: the bundled int8 file, or a
local / fetched one (yunet-fp32)."""

from __future__ import annotations

from pathlib import Path

from facesieve.faces.detect import YuNetDetector
from facesieve.models.spec import ModelSpec


def build(spec: ModelSpec, weights: Path | None, threshold: float) -> YuNetDetector:
    det = YuNetDetector(score_threshold=threshold, model_path=None if weights is None else str(weights))
    det.name = spec.name
    return det
