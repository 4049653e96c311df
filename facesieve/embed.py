"""Face embedders behind two verbs: `prepare` (one image -> the model's input crop) and
`embed_batch` (crops -> raw vectors).

The split lets a pool of workers cut crops while one process runs batched inference. Vectors come
back raw (unnormalised): the pipeline L2-normalises for cosine, and the dlib vectors stay exactly
face_recognition's so FaceDuplicationFilter's golden selection can be reproduced.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from facesieve.faces.align import (
    ARCFACE_SIZE,
    ARCFACE_TEMPLATE,
    align,
    similarity_transform,
)
from facesieve.faces.detect import Detection
from facesieve.models.bundled import dlib_resnet_path, dlib_shape5_path, sface_path
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


def _stack_crops(crops: list[np.ndarray] | np.ndarray, size: int) -> list[np.ndarray]:
    items = list(crops) if not isinstance(crops, np.ndarray) or crops.ndim == 4 else [crops]
    for i, c in enumerate(items):
        if c.shape != (size, size, 3) or c.dtype != np.uint8:
            raise ValueError(f"crop {i}: expected ({size}, {size}, 3) uint8, got {c.shape} {c.dtype}")
    return [np.ascontiguousarray(c) for c in items]


class SFaceEmbedder:
    """SFace 2021dec int8 (bundled), 128-d, on ArcFace-aligned 112x112 RGB crops.

    The network takes RGB pixels in 0..255 (it normalises inside; OpenCV's FaceRecognizerSF feeds it
    a BGR crop through blobFromImage(..., swapRB=True)). Our crops are RGB already, so the blob is
    made with swapRB=False. Loaded with cv2.dnn.readNetFromONNX: FaceRecognizerSF.create rejects
    this int8 file on OpenCV 5.
    """

    name = "sface"
    dim = 128
    needs_original = False
    size = ARCFACE_SIZE
    SWAP_RB = False  # crops are RGB; the model wants RGB
    MAX_BATCH = 64  # bounds the blob's memory; results do not depend on it

    def __init__(self, model_path: str | None = None):
        self._net = cv2.dnn.readNetFromONNX(str(model_path or sface_path()))

    def prepare(self, rgb: np.ndarray, det: Detection, aligned: np.ndarray | None) -> np.ndarray:
        if aligned is not None:
            return aligned
        return align(rgb, det.landmarks, self.size)

    def embed_batch(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        items = _stack_crops(crops, self.size)
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


# Where face_recognition's dlib HOG rectangle sits on the ArcFace 112x112 template (centre x, y and
# side), measured here on 422 faces (seed_vggface, essex_faces94_19, deepface13, orl_att40). Used to
# give dlib's landmark model a rectangle like the one it was trained on when the face came from
# another detector (YuNet, or the whole-image fallback).
DLIB_RECT_IN_ARCFACE = (55.2, 71.0, 87.8)


def dlib_rect_from_landmarks(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """A dlib-HOG-like (left, top, right, bottom) rectangle for a face given by ArcFace-order points."""
    m = similarity_transform(ARCFACE_TEMPLATE, landmarks)  # template frame -> image
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    cx, cy, side = DLIB_RECT_IN_ARCFACE
    centre = m[:, :2] @ np.array([cx, cy]) + m[:, 2]
    half = side * scale / 2
    left, top = round(centre[0] - half), round(centre[1] - half)
    right, bottom = round(centre[0] + half) - 1, round(centre[1] + half) - 1
    return left, top, right, bottom


class DlibEmbedder:
    """dlib ResNet 128-d, exactly as face_recognition.face_encodings computes it.

    face_recognition does shape = sp5(img, rect); compute_face_descriptor(img, shape, num_jitters=1).
    That call cuts a 150x150 chip with padding 0.25 (get_face_chip) and runs the network on it, so
    `prepare` cuts the same chip and `embed_batch` runs the network on chips: the values are
    identical (checked in the tests against FaceDuplicationFilter's saved encodings). Vectors are
    float64, not unit length (face_recognition compares them by Euclidean distance, 0.6 tolerance).
    """

    name = "dlib"
    dim = 128
    needs_original = True
    size = 150
    PADDING = 0.25
    NUM_JITTERS = 1  # face_recognition's default; 1 means no jitter

    def __init__(self):
        import dlib

        self._dlib = dlib
        self._sp = dlib.shape_predictor(str(dlib_shape5_path()))
        self._net = dlib.face_recognition_model_v1(str(dlib_resnet_path()))

    def rect(self, det: Detection) -> tuple[int, int, int, int]:
        """dlib's own rectangle when the face came from dlib, else one placed from the landmarks."""
        if det.raw is not None:
            return tuple(int(v) for v in det.raw)
        return dlib_rect_from_landmarks(det.landmarks)

    def prepare(self, rgb: np.ndarray, det: Detection, aligned: np.ndarray | None = None) -> np.ndarray:
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
        shape = self._sp(img, self._dlib.rectangle(*self.rect(det)))
        return np.asarray(self._dlib.get_face_chip(img, shape, size=self.size, padding=self.PADDING))

    def embed_batch(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        items = _stack_crops(crops, self.size)
        if not items:
            return np.zeros((0, self.dim), np.float64)
        vecs = self._net.compute_face_descriptor(items, self.NUM_JITTERS)
        return np.array([np.asarray(v) for v in vecs], np.float64).reshape(len(items), self.dim)
