"""How aligned face crops become a network's input, per model family (the table of sources is in
models/embedders/). A leaf module: the catalogue (models/zoo.py) carries these on its rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """How aligned uint8 RGB crops become a network input: channel order, then (x - mean) / std."""

    channels: str  # "RGB" | "BGR": the order the network was trained on
    mean: float
    std: float
    formula: str  # as the model's authors write it

    def __call__(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """(n, 3, 112, 112) float32 from n (112, 112, 3) uint8 RGB crops."""
        x = np.asarray(crops, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[3] != 3:
            raise ValueError(f"expected crops of shape (n, H, W, 3), got {x.shape}")
        if self.channels == "BGR":
            x = x[..., ::-1]
        x = (x - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


ARCFACE = Preprocessing("RGB", 127.5, 127.5, "RGB, (x - 127.5) / 127.5")
MOBILEFACENET = ARCFACE
ADAFACE = Preprocessing("BGR", 127.5, 127.5, "BGR, (x / 255 - 0.5) / 0.5")
SFACE = Preprocessing("RGB", 0.0, 1.0, "RGB, x in 0..255 (the network normalises inside)")
