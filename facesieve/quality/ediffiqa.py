"""eDifFIQA quality scores (Babnik et al., TBIOM 2024) for aligned 112x112 face crops.

Two back-ends behind one class: ONNX Runtime for ``.onnx`` files (the OpenCV-zoo eDifFIQA(T), or
any variant exported with `export_onnx`), and PyTorch for the authors' ``.pth`` checkpoints
(L/M/S; T too). torch is imported only when a ``.pth`` is loaded or a model is exported.
Scores are the model's raw output: higher means better, no sigmoid, no rescaling.

Quality names: ``ediffiqa`` / ``ediffiqa:L|M|S|T`` (the authors' models from the model cache), and
``onnx:PATH``: any ONNX quality regressor with eDifFIQA(T)'s contract (input [N,3,112,112] float32
RGB scaled as (x/255-0.5)/0.5, output [N,1], higher is better), e.g. a model trained with
``facesieve train-quality``. The file is used as given; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.digest import sha256_file
from facesieve.errors import FacesieveError
from facesieve.models.fetch import resolve_weights
from facesieve.models.onnx import OnnxModel

VARIANTS = ("L", "M", "S", "T")
INPUT_SIZE = 112
# Tensor names used when facesieve exports a model. The OpenCV-zoo file's own names are not
# assumed anywhere: the ONNX back-end reads whatever names the file declares.
ONNX_INPUT = "input"
ONNX_OUTPUT = "output"
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def registry_name(variant: str) -> str:
    return f"ediffiqa-{_variant(variant).lower()}"


def _variant(variant: str) -> str:
    v = str(variant).strip().upper()
    if v not in VARIANTS:
        raise ValueError(f"unknown eDifFIQA variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return v


def preprocess(crops: np.ndarray) -> np.ndarray:
    """uint8 RGB (n,112,112,3) -> float32 NCHW in [-1,1], exactly (x/255 - 0.5)/0.5."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if crops.ndim != 4 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"eDifFIQA needs aligned RGB crops of shape (n,{INPUT_SIZE},{INPUT_SIZE},3), got {crops.shape}")
    if crops.dtype != np.uint8:
        raise ValueError(f"eDifFIQA needs uint8 crops (0..255), got {crops.dtype}")
    x = crops.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def unwrap_state_dict(obj) -> dict:
    """The tensor mapping inside a checkpoint: unwraps {"state_dict": ...}-style containers and
    strips a DataParallel "module." prefix, so checkpoints saved either way load strictly."""
    sd = obj
    for _ in range(3):  # nested wrappers, e.g. {"model": {"state_dict": ...}}
        if not isinstance(sd, Mapping):
            break
        inner = next((sd[k] for k in _WRAPPER_KEYS if k in sd and isinstance(sd[k], Mapping)), None)
        if inner is None:
            break
        sd = inner
    if not isinstance(sd, Mapping) or not sd:
        raise FacesieveError("checkpoint holds no state dict (expected a mapping of parameter names to tensors)")
    keys = list(sd)
    if all(k.startswith("module.") for k in keys):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def load_torch_model(variant: str, weights: Path, device: str = "cpu"):
    """Build eDifFIQA(`variant`) and load `weights` strictly on CPU first, then move to `device`."""
    import torch

    from facesieve.models.archs import build_ediffiqa

    model = build_ediffiqa(variant)
    try:
        ckpt = torch.load(Path(weights), map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused or unreadable file
        raise FacesieveError(f"cannot read checkpoint {weights}: {e}") from None
    sd = unwrap_state_dict(ckpt)
    expected = set(model.state_dict())
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    if missing or unexpected:
        raise FacesieveError(
            f"{Path(weights).name} does not match eDifFIQA({variant}): {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]} (wrong variant?)"
        )
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # same keys, different shapes
        raise FacesieveError(f"{Path(weights).name} does not fit eDifFIQA({variant}): {str(e).splitlines()[0]}") from None
    return model.eval().to(device)


class EDifFIQA:
    """eDifFIQA quality scorer. `weights` None means the verified copy in the model cache
    (``facesieve models fetch ediffiqa-<v>``); nothing is ever downloaded here."""

    uses_embedder = False

    def __init__(self, variant: str = "T", weights: Path | str | None = None, device: str = "auto",
                 batch_size: int = 64, threads: int | None = None) -> None:
        self.variant = _variant(variant)
        self.name = f"ediffiqa:{self.variant}"
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = int(batch_size)
        self.weights = resolve_weights(registry_name(self.variant), weights)
        self.backend = "onnx" if self.weights.suffix.lower() == ".onnx" else "torch"
        if self.backend == "torch" and self.weights.suffix.lower() not in _TORCH_SUFFIXES:
            raise ValueError(f"unsupported weights file {self.weights.name}: use .onnx or .pth")
        self._key: str | None = None
        if self.backend == "onnx":
            self._onnx = OnnxModel.load(self.weights, device=device, threads=threads)
            shape = self._onnx.input_shape
            if len(shape) != 4 or tuple(shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
                raise FacesieveError(f"{self.weights.name}: input shape {shape} is not [N,3,112,112]")
            self.device = "cuda" if "CUDAExecutionProvider" in self._onnx.providers else "cpu"
        else:
            import torch

            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            if threads:
                torch.set_num_threads(int(threads))
            self.device = device
            self._model = load_torch_model(self.variant, self.weights, device)

    @property
    def key(self) -> str:
        """Changes with the variant or the weights' bytes (cache key for the quality stage)."""
        if self._key is None:
            self._key = f"{self.name}:{sha256_file(self.weights)[:16]}"
        return self._key

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            out = self._onnx.run(x)
        else:
            import torch

            with torch.inference_mode():
                out = self._model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (len(x), 1) and out.size != len(x):
            raise FacesieveError(f"eDifFIQA output has shape {out.shape}, expected ({len(x)}, 1)")
        return out.reshape(len(x))

    def score_batch(self, crops: np.ndarray) -> np.ndarray:
        """Raw quality per crop, float32 (n,), for uint8 RGB aligned crops (n,112,112,3)."""
        crops = np.asarray(crops)
        if crops.ndim == 4 and len(crops) == 0:
            return np.zeros((0,), np.float32)
        parts = [self._forward(preprocess(crops[i:i + self.batch_size])) for i in range(0, len(crops), self.batch_size)]
        return np.concatenate(parts).astype(np.float32)

    def score(self, data) -> pd.DataFrame:
        """QualityScorer interface: one row per face, column `quality`."""
        return pd.DataFrame({"quality": self.score_batch(data.crops).astype(np.float64)})


def make_ediffiqa(name: str = "ediffiqa", weights: Path | str | None = None, device: str = "auto") -> EDifFIQA:
    """Factory for quality names "ediffiqa" (= T) and "ediffiqa:L|M|S|T"."""
    parts = name.split(":")
    if parts[0].lower() != "ediffiqa" or len(parts) > 2:
        raise ValueError(f"not an eDifFIQA name: {name!r} (use ediffiqa or ediffiqa:L|M|S|T)")
    return EDifFIQA(parts[1] if len(parts) == 2 else "T", weights=weights, device=device)


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


def export_onnx(model, path: Path | str, *, opset: int = 17) -> Path:
    """Export an eDifFIQA torch model to ONNX: input [N,3,112,112] float32, output [N,1], dynamic N."""
    from facesieve.models.onnx import export_onnx as _export

    return_feat = getattr(model, "return_feat", False)
    model.return_feat = False  # the exported graph has the score as its single output
    try:
        return _export(model, path, input_shape=(1, 3, INPUT_SIZE, INPUT_SIZE), input_name=ONNX_INPUT,
                       output_name=ONNX_OUTPUT, opset=opset, dynamic_batch=True)
    finally:
        model.return_feat = return_feat
