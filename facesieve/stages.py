"""The per-image stages: faces (decode, detect, align) and embed, with per-process model caches.

Worker functions are module-level so a process pool can run them; each worker builds its models
once, on first use, and never at import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesieve.faces.align import ARCFACE_TEMPLATE, align
from facesieve.imaging import DecodeError, all_image_hashes, load_rgb, pixel_hash
from facesieve.quality.artefacts import face_region_measures

CROP = 112
# an image no larger than this (long side) that yields no detection is taken to be a tight face crop
TIGHT_CROP_MAX_SIDE = 300

_models: dict[str, object] = {}


def detector(name: str):
    """The detector a model string names (a name, or name + weights/device/threshold: models/spec.py)."""
    if ("det", name) not in _models:
        from facesieve.models.zoo import build_detector

        _models[("det", name)] = build_detector(name)
    return _models[("det", name)]


def embedder(name: str):
    """The embedder a model string names (a name, or name + weights/device: models/spec.py)."""
    if ("emb", name) not in _models:
        from facesieve.models.zoo import build_embedder

        _models[("emb", name)] = build_embedder(name)
    return _models[("emb", name)]


@dataclass(frozen=True)
class FaceTask:
    image_id: str
    key: str
    path: str  # absolute
    detector: str
    policy: str  # "central" | "first"
    aligned_input: bool
    crop_fallback: bool


LANDMARK_COLUMNS = [f"lm{i}" for i in range(10)]


def empty_face_row(task: FaceTask, status: str, reason: str) -> dict:
    row = {
        "image_id": task.image_id,
        "key": task.key,
        "status": status,
        "reason": reason,
        "width": 0,
        "height": 0,
        "n_faces": 0,
        "box_x": np.nan,
        "box_y": np.nan,
        "box_w": np.nan,
        "box_h": np.nan,
        "det_score": np.nan,
        "fallback": False,
        "raw_rect": "",
        "pixel_hash": "",
        "phash": 0,
        "phash_mirror": 0,  # pHash of the mirrored image: a flipped copy matches it
        "phash_inner": 0,  # pHash of the picture inside a solid frame (the image's where it has none)
        "phash_inner_mirror": 0,
        "dhash": 0,
        "noise_sigma": np.nan,  # capture artefacts of the face box on the original grid
        "blockiness": np.nan,
    }
    row.update({c: np.nan for c in LANDMARK_COLUMNS})
    return row


def template_landmarks(width: int, height: int) -> np.ndarray:
    """ArcFace template points scaled to an image that is itself an aligned crop."""
    return (ARCFACE_TEMPLATE * np.array([width / CROP, height / CROP])).astype(np.float32)


def faces_worker(task: FaceTask, with_image: bool = False) -> tuple[dict, np.ndarray] | tuple[dict, np.ndarray, np.ndarray | None]:
    """Decode, detect, pick one face, align. Never raises for a bad image: it returns a status.

    `with_image`: also return the decoded image (None when it could not be decoded), so that an
    embedder that cuts its own input from the original (dlib) need not decode the file again."""
    row, crop, rgb = _faces(task)
    return (row, crop, rgb) if with_image else (row, crop)


def _faces(task: FaceTask) -> tuple[dict, np.ndarray, np.ndarray | None]:
    crop = np.zeros((CROP, CROP, 3), np.uint8)
    try:
        rgb = load_rgb(task.path)
    except DecodeError as e:
        return empty_face_row(task, "error", e.reason), crop, None
    except Exception as e:  # a decoder bug must not stop a million-image run
        return empty_face_row(task, "error", f"decode_failed: {type(e).__name__}"), crop, None
    row = empty_face_row(task, "ok", "")
    h, w = rgb.shape[:2]
    ph, dh, ph_mirror, inner, inner_mirror = all_image_hashes(rgb)  # one reduction for all, no full-size mirrored copy
    row.update(width=w, height=h, pixel_hash=pixel_hash(rgb), phash=_signed(ph), dhash=_signed(dh), phash_mirror=_signed(ph_mirror),
               phash_inner=_signed(inner), phash_inner_mirror=_signed(inner_mirror))

    if task.aligned_input:
        lm = template_landmarks(w, h)
        row.update(n_faces=1, box_x=0.0, box_y=0.0, box_w=float(w), box_h=float(h), det_score=np.nan, reason="aligned_input")
        _set_landmarks(row, lm)
        row.update(face_region_measures(rgb, (0.0, 0.0, float(w), float(h))))
        crop = align(rgb, lm, CROP)
        return row, crop, rgb

    from facesieve.faces.detect import MIN_IMAGE_SIDE, fallback_detection, pick_face

    if min(h, w) < MIN_IMAGE_SIDE:  # a 1-pixel image: no detector takes it, and no face fits in it
        row["status"] = "no_face"
        row["reason"] = "too_small"
        return row, crop, rgb
    dets = detector(task.detector).detect(rgb)
    row["n_faces"] = len(dets)
    if dets:
        idx = 0 if task.policy == "first" else pick_face(dets, (h, w))
        det = dets[idx]
    elif task.crop_fallback and max(h, w) <= TIGHT_CROP_MAX_SIDE:
        det = fallback_detection((h, w))
        row["fallback"] = True
        row["reason"] = "no_detection_whole_image_used"
    else:
        row["status"] = "no_face"
        row["reason"] = "no_face"
        return row, crop, rgb
    x, y, bw, bh = det.box
    raw = getattr(det, "raw", None)
    row.update(box_x=float(x), box_y=float(y), box_w=float(bw), box_h=float(bh), det_score=float(det.score))
    row["raw_rect"] = ",".join(str(int(v)) for v in raw) if raw is not None else ""
    _set_landmarks(row, np.asarray(det.landmarks, np.float32))
    row.update(face_region_measures(rgb, det.box))  # needs the original pixel grid: here, not on the crop
    crop = align(rgb, np.asarray(det.landmarks, np.float32), CROP)
    return row, crop, rgb


def _set_landmarks(row: dict, lm: np.ndarray) -> None:
    for i, v in enumerate(np.asarray(lm, np.float64).reshape(-1)):
        row[f"lm{i}"] = float(v)


def _signed(h: int) -> int:
    """Store a 64-bit unsigned hash in an int64 column without overflow."""
    return int(np.uint64(h).view(np.int64))


def detection_from_row(row) -> object:
    """Rebuild the chosen Detection from a faces-table row (for embedders that cut their own chip)."""
    from facesieve.faces.detect import Detection

    lm = np.array([row[c] for c in LANDMARK_COLUMNS], np.float32).reshape(5, 2)
    kwargs = {}
    raw = row.get("raw_rect", "") if hasattr(row, "get") else ""
    if raw:
        kwargs["raw"] = tuple(int(v) for v in raw.split(","))
    det = Detection(box=(row["box_x"], row["box_y"], row["box_w"], row["box_h"]), score=row["det_score"], landmarks=lm, **kwargs)
    return det


@dataclass(frozen=True)
class ChipTask:
    path: str
    embedder: str
    row: dict


def chip_worker(task: ChipTask) -> np.ndarray:
    """For embedders that need the original image (dlib): decode again and cut their input."""
    rgb = load_rgb(task.path)
    det = detection_from_row(task.row)
    return embedder(task.embedder).prepare(rgb, det, None)
