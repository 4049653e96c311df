"""dlib ResNet 128-d (`dlib`), exactly as face_recognition computes it, from the chip dlib cuts
around its own 5 landmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesieve.embed import crop_list
from facesieve.faces.align import ARCFACE_TEMPLATE, similarity_transform
from facesieve.faces.detect import Detection
from facesieve.models.bundled import dlib_resnet_path, dlib_shape5_path
from facesieve.models.spec import ModelSpec


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
        items = crop_list(crops, self.size)
        if not items:
            return np.zeros((0, self.dim), np.float64)
        vecs = self._net.compute_face_descriptor(items, self.NUM_JITTERS)
        return np.array([np.asarray(v) for v in vecs], np.float64).reshape(len(items), self.dim)


def build(spec: ModelSpec, model, weights: Path | None) -> DlibEmbedder:
    return DlibEmbedder()
