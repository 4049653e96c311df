"""Quality methods backed by model files: registered here so `make_quality` finds them by name.

- ``ediffiqa`` / ``ediffiqa:L|M|S|T``: the authors' eDifFIQA models from the model cache.
- ``onnx:PATH``: any ONNX quality regressor with eDifFIQA(T)'s contract (input [N,3,112,112]
  float32 RGB scaled as (x/255-0.5)/0.5, output [N,1], higher is better), e.g. a model trained with
  ``facesieve train-quality``. The file is used as given; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from facesieve.quality.base import _REGISTRY, register
from facesieve.quality.ediffiqa import EDifFIQA, make_ediffiqa


def make_onnx_quality(name: str, device: str = "auto") -> EDifFIQA:
    """Scorer for "onnx:PATH"; its cache key follows the file's bytes, so a retrained model re-scores."""
    prefix, _, path = name.partition(":")
    if prefix != "onnx" or not path.strip():
        raise ValueError(f"use onnx:PATH (a .onnx quality model file), got {name!r}")
    p = Path(path.strip()).expanduser()
    if p.suffix.lower() != ".onnx":
        raise ValueError(f"onnx:PATH needs a .onnx file, got {p.name!r}")
    scorer = EDifFIQA("T", weights=p, device=device)
    scorer.name = f"onnx:{p.name}"
    return scorer


register("onnx")(make_onnx_quality)
if "ediffiqa" not in _REGISTRY:
    register("ediffiqa")(lambda name: make_ediffiqa(name))
