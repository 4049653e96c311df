"""dlib ResNet (facesieve/embed.py), exactly as face_recognition computes it."""

from __future__ import annotations

from pathlib import Path

from facesieve.embed import DlibEmbedder
from facesieve.models.spec import ModelSpec


def build(spec: ModelSpec, model, weights: Path | None) -> DlibEmbedder:
    return DlibEmbedder()
