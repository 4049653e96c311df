"""Unit vectors: the one L2 normalisation behind cosine similarity everywhere (embed stage,
quality methods, decisions). A leaf module (numpy only), so anything may import it."""

from __future__ import annotations

import numpy as np


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero); float64 stays float64, else float32."""
    a = np.asarray(x)
    a = a.astype(np.float32) if a.dtype not in (np.float32, np.float64) else a
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(norm, eps)
