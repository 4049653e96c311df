"""What every face embedder shares: two verbs, `prepare` (one image -> the model's input crop) and
`embed_batch` (crops -> raw vectors), and `embed_inputs`, which runs them batch-independently.
The embedders themselves are one module each under facesieve/models/embedders/, built by name
through facesieve.models.zoo.

The split lets a pool of workers cut crops while one process runs batched inference. Vectors come
back raw (unnormalised): the pipeline L2-normalises for cosine, and the dlib vectors stay exactly
face_recognition's so FaceDuplicationFilter's golden selection can be reproduced.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from facesieve.faces.align import ARCFACE_SIZE, align
from facesieve.faces.detect import Detection
from facesieve.vectors import l2_normalise


class Embedder(Protocol):
    name: str
    dim: int
    needs_original: bool  # True when prepare() cuts its own chip from the original image

    def prepare(self, rgb: np.ndarray, det: Detection, aligned: np.ndarray | None) -> np.ndarray:
        """The model input for one face (uint8 HxWx3 RGB)."""
        ...

    def embed_batch(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """(n, dim) raw vectors, one per crop."""
        ...


def embed_inputs(emb, inputs: list[np.ndarray] | np.ndarray, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(raw norms float64, unit vectors float32) for model inputs, at most `batch_size` (and the
    model's MAX_BATCH) at a time.

    A vector must not depend on the batch its face landed in (a resumed run batches differently):
    OpenCV's int8 SFace rounds a batch of one differently from larger ones, so a lone face is run
    as a pair of copies (SFaceEmbedder does the same for its own sub-batches).
    """
    inputs = np.asarray(inputs)
    limit = getattr(emb, "MAX_BATCH", None) or len(inputs) or 1
    size = max(2, min(batch_size or limit, limit))
    raw = np.zeros((len(inputs), getattr(emb, "dim", 128)), np.float64)
    for s in range(0, len(inputs), size):
        batch = inputs[s : s + size]
        if len(batch) == 1:
            raw[s] = np.asarray(emb.embed_batch(np.concatenate([batch, batch])))[0]
        else:
            raw[s : s + len(batch)] = np.asarray(emb.embed_batch(batch))
    return np.linalg.norm(raw, axis=1), l2_normalise(raw).astype(np.float32)


def crop_list(crops: list[np.ndarray] | np.ndarray, size: int) -> list[np.ndarray]:
    """The crops (a list, an (n, size, size, 3) array or one crop) as contiguous (size, size, 3)
    uint8 arrays; ValueError naming the first crop that is not one."""
    items = list(crops) if not isinstance(crops, np.ndarray) or crops.ndim == 4 else [crops]
    out = []
    for i, c in enumerate(items):
        a = np.asarray(c)
        if a.shape != (size, size, 3) or a.dtype != np.uint8:
            raise ValueError(f"crop {i}: expected ({size}, {size}, 3) uint8, got {a.shape} {a.dtype}")
        out.append(np.ascontiguousarray(a))
    return out


class AlignedInput:
    """An embedder that takes the ArcFace-aligned 112x112 RGB crop the faces stage already cut."""

    needs_original = False
    size = ARCFACE_SIZE
    MAX_BATCH = 64  # bounds the input's memory; results do not depend on it

    def prepare(self, rgb: np.ndarray, det: Detection, aligned: np.ndarray | None) -> np.ndarray:
        if aligned is not None:
            return aligned
        return align(rgb, det.landmarks, self.size)

    def crop_batch(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """The crops checked and stacked into one (n, size, size, 3) uint8 array."""
        items = crop_list(crops, self.size)
        return np.stack(items) if items else np.zeros((0, self.size, self.size, 3), np.uint8)
