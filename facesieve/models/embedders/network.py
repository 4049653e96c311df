"""Embedding networks from weights files (ArcFace / CosFace / MobileFaceNet / AdaFace / SFace fp32):
ONNX Runtime for .onnx, PyTorch for insightface IResNet checkpoints. The row's preprocessing says
how crops become the input."""

from __future__ import annotations

from pathlib import Path

from facesieve.errors import UsageError
from facesieve.models.embedders.iresnet_torch import TorchIResNetEmbedder
from facesieve.models.embedders.onnx_network import OnnxEmbedder
from facesieve.models.spec import ModelSpec
from facesieve.models.zoo import is_torch_weights


def build(spec: ModelSpec, model, weights: Path | bytes):
    if is_torch_weights(spec):
        if model.family != "arcface":
            raise UsageError(f"{spec.name}: PyTorch checkpoints are read for insightface IResNets (arcface/cosface) "
                             "only; export this model to ONNX and pass the .onnx file")
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UsageError(f"{spec.name}: reading {Path(weights).name} needs PyTorch: pip install 'facesieve[torch]'") from None
        return TorchIResNetEmbedder(spec.name, weights, model.preprocessing, device=spec.device)
    return OnnxEmbedder(spec.name, weights, model.preprocessing, device=spec.device, norm_output=model.family == "adaface")
