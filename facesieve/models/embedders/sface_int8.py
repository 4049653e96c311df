"""SFace 2021dec int8 (OpenCV DNN; facesieve/embed.py): the bundled file, or a local int8 file."""

from __future__ import annotations

from pathlib import Path

from facesieve.embed import SFaceEmbedder
from facesieve.models.spec import ModelSpec


def build(spec: ModelSpec, model, weights: Path | None) -> SFaceEmbedder:
    return SFaceEmbedder(model_path=spec.weights)
