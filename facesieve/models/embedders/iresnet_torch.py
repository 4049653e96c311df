"""An insightface IResNet checkpoint (`backbone.pth`, arcface_torch key layout: ArcFace / CosFace)
through PyTorch, loaded strictly and with weights_only (a checkpoint cannot run code). Vectors come
back raw; on the CPU torch runs on one thread while it embeds (a vector must not depend on the
thread count)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesieve.embed import AlignedInput
from facesieve.models.preprocessing import Preprocessing


def load_state_dict(path: str | Path) -> dict:
    """A plain state dict from an insightface `backbone.pth` (also accepts {"state_dict": ...} and
    DataParallel's "module." prefix). Loaded with weights_only: a checkpoint cannot run code."""
    import torch

    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read PyTorch checkpoint {path}: {e}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ValueError(f"{path}: not a state dict")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def iresnet_layers(sd: dict) -> tuple[int, int, int, int]:
    """Blocks per stage, read from the keys (layer1.0..layerN.M): tells IResNet18/34/50/100/200 apart."""
    counts = []
    for i in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in sd if k.startswith(f"layer{i}.")}
        if not blocks:
            raise ValueError("not an insightface IResNet state dict: no layer1..layer4 keys")
        counts.append(max(blocks) + 1)
    return tuple(counts)  # type: ignore[return-value]


class TorchIResNetEmbedder(AlignedInput):
    """An insightface IResNet `.pth` (arcface_torch key layout) through PyTorch, loaded strictly."""

    def __init__(self, name: str, path: str | Path, preprocessing: Preprocessing, device: str = "auto"):
        import torch

        from facesieve.models.archs import IResNet

        self.name = name
        self.preprocessing = preprocessing
        sd = load_state_dict(path)
        layers = iresnet_layers(sd)
        if "fc.weight" not in sd:
            raise ValueError(f"{path}: not an insightface IResNet state dict (no fc.weight)")
        self.dim = int(sd["fc.weight"].shape[0])
        net = IResNet(layers, num_features=self.dim)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: does not match the insightface IResNet layout: {str(e)[:400]}") from None
        self.device = torch_device(device)
        self._net = net.eval().to(self.device)
        self._torch = torch

    def embed_batch(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        torch = self._torch
        items = self.crop_batch(crops)
        out = np.zeros((len(items), self.dim), np.float32)
        before = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                for s in range(0, len(items), self.MAX_BATCH):
                    x = torch.from_numpy(self.preprocessing(items[s : s + self.MAX_BATCH])).to(self.device)
                    out[s : s + len(x)] = self._net(x).float().cpu().numpy()
        finally:
            torch.set_num_threads(before)
        return out


def torch_device(device: str = "auto"):
    """torch.device for "auto" (CUDA when available) | "cpu" | "cuda" (refused when unavailable)."""
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if device == "cuda":
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device (install a CUDA build of torch, "
                         "or use --device cpu)")
    return torch.device("cpu")
