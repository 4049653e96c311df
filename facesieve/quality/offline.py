"""The offline default quality ("offline") and the costlier "offline-full".

Both offline methods need no download and multiply scores in (0, 1], each near 1 when its aspect
is fine:

    offline      = s_norm       * s_noise * s_blockiness * image_quality   (SFace)
    offline-full = s_robustness * s_noise * s_blockiness * image_quality

- s_norm = 1 / (1 + exp(-(N - 11) / 1)), N the raw norm of the run's SFace embedding before it is
  normalised: free once the face is embedded. SFace's norm falls for blurred, small, dark and
  hard-to-read faces; on the shared sets it ranks genuine-pair failures better than perturbation
  robustness does (docs/quality.md, EDC). The width (1) was judged by leave-one-set-out EDC over
  four shared sets, where any width up to 1 gives the same held-out figures (1 keeps dark and
  well-lit faces further apart in absolute score); the centre (11, about the 40th percentile of
  the shared sets' faces) only sets the level, not the order.
  Embedders whose norm was not studied (dlib, ONNX models) get "offline-full"'s robustness term.
- s_robustness = exp(-(1 - R) / 0.1), R the perturbation robustness of the run's embedding
  (robustness.py: cosine under a flip and under forward-diffusion noise at t = 10, 20; three more
  embeddings per face). A cosine loss of 0.1 costs a factor e.
- s_noise = 1 / (1 + (max(0, sigma - 2) / 8)^2), sigma the noise estimate of the face box on the
  original grid (artefacts.py). Below 2 grey levels (what clean photos and fine texture read) it is
  1; it halves at sigma = 10. Needed because the norm follows noise only loosely and robustness
  rates noisy faces *higher*.
- s_blockiness = 1 / (1 + (max(0, B - 1.2) / 0.8)^2), B the JPEG 8x8 blockiness of the face box
  on the original grid. Ordinary web JPEGs (B up to about 1.2) are not penalised; it halves at
  B = 2 (about JPEG quality 20). Needed because JPEG barely moves the embedding.
- image_quality: the geometric mean of the image measures (image.py: sharpness, exposure,
  contrast, face size in the original image, yaw from the landmarks).

A product, not a sum: one bad aspect (a face buried in noise) is enough to make the face poor,
whatever the others say. Missing artefact measures (a faces table from before they existed) count
as neutral (1). The noise, blockiness and robustness reference points are round values chosen from
the measures' physical meaning and checked against graded degradations (tests/unit/quality/test_quality.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from facesieve.embed import embed_inputs
from facesieve.models import zoo
from facesieve.parallel import one_thread
from facesieve.quality.base import QualityInput
from facesieve.quality.image import measures
from facesieve.quality.robustness import Robustness, clean_embeddings, model_inputs, require_embedder, robustness

ROBUSTNESS_SCALE = 0.1
# SFace 2021dec int8's raw embedding norm (clean faces read 10-16): the embedders whose catalogue row
# has norm_is_quality (models/zoo.py) are the ones these two were chosen for
NORM_CENTRE, NORM_WIDTH = 11.0, 1.0
NOISE_FLOOR, NOISE_REF = 2.0, 8.0  # grey levels
BLOCK_FLOOR, BLOCK_REF = 1.2, 0.8  # blockiness ratio


def hinge_score(value: np.ndarray, floor: float, ref: float) -> np.ndarray:
    """1 up to `floor`, then 1 / (1 + ((v - floor) / ref)^2); NaN (unknown) counts as 1."""
    v = np.asarray(value, dtype=float)
    excess = np.maximum(0.0, np.nan_to_num(v, nan=floor) - floor)
    return 1.0 / (1.0 + (excess / ref) ** 2)


def offline_scores(rob: np.ndarray, noise: np.ndarray, block: np.ndarray, image_quality: np.ndarray) -> dict[str, np.ndarray]:
    """The formula above, from the raw components (arrays of one length)."""
    s_rob = np.exp(-(1.0 - np.asarray(rob, float)) / ROBUSTNESS_SCALE)
    s_noise = hinge_score(noise, NOISE_FLOOR, NOISE_REF)
    s_block = hinge_score(block, BLOCK_FLOOR, BLOCK_REF)
    q = s_rob * s_noise * s_block * np.asarray(image_quality, float)
    return {"quality": q, "s_robustness": s_rob, "s_noise": s_noise, "s_blockiness": s_block}


def _column(faces: pd.DataFrame, name: str) -> np.ndarray:
    return faces[name].to_numpy(float) if name in faces else np.full(len(faces), np.nan)


def cheap_quality(crops: np.ndarray, faces: pd.DataFrame) -> np.ndarray:
    """"offline" without its norm term (no embedder runs): image measures x noise x blockiness.
    Used where many faces need a rough ranking fast (ERS's low-quality tail)."""
    img = measures(np.asarray(crops), faces)["quality"].to_numpy()
    noise, block = _column(faces, "noise_sigma"), _column(faces, "blockiness")
    return img * hinge_score(noise, NOISE_FLOOR, NOISE_REF) * hinge_score(block, BLOCK_FLOOR, BLOCK_REF)


def norm_score(norm: np.ndarray) -> np.ndarray:
    """s_norm: a logistic in the raw embedding norm, 0.5 at NORM_CENTRE."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(norm, float) - NORM_CENTRE) / NORM_WIDTH))


def embedding_norms(data: QualityInput) -> np.ndarray:
    """The raw norms of the run's embeddings: as given, or (when the caller has only the unit
    vectors) from embedding the crops once more, in batches as the embed stage runs them."""
    if data.norms is not None and len(data.norms) == len(data.crops):
        return np.asarray(data.norms, float)
    emb = require_embedder(data, "offline")
    if not len(data.crops):
        return np.zeros(0)
    with one_thread():
        return embed_inputs(emb, model_inputs(emb, np.asarray(data.crops)))[0]


def _cheap_parts(data: QualityInput) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The image measures (`image_quality` and its parts), noise_sigma and blockiness of the faces."""
    img = measures(np.asarray(data.crops), data.faces).rename(columns={"quality": "image_quality"})
    return img, _column(data.faces, "noise_sigma"), _column(data.faces, "blockiness")


def uses_norm(emb) -> bool:
    """The embedder's raw norm is a quality signal here when its catalogue row says so (by its name)."""
    return zoo.norm_is_quality(getattr(emb, "name", ""))


class OfflineFullQuality:
    """Perturbation robustness x noise x blockiness x image measures (see module doc): three more
    embeddings per face."""

    name = "offline-full"
    key = f"offline-v1|{Robustness.key}|image-v1|r{ROBUSTNESS_SCALE}|n{NOISE_FLOOR},{NOISE_REF}|b{BLOCK_FLOOR},{BLOCK_REF}"
    uses_embedder = True

    def score(self, data: QualityInput) -> pd.DataFrame:
        emb = require_embedder(data, self.name)
        rob = robustness(emb, data.crops, clean_embeddings(data))
        img, noise, block = _cheap_parts(data)
        parts = offline_scores(rob["robustness"].to_numpy(), noise, block, img["image_quality"].to_numpy())
        head = pd.DataFrame({**parts, "noise_sigma": noise, "blockiness": block})
        return pd.concat([head, rob, img], axis=1)


class OfflineQuality:
    """The default: embedding norm x noise x blockiness x image measures (see module doc); with an
    embedder whose norm was not studied, the same as "offline-full"."""

    name = "offline"
    key = f"offline-v2|norm{NORM_CENTRE},{NORM_WIDTH}|{OfflineFullQuality.key}"
    uses_embedder = True

    def score(self, data: QualityInput) -> pd.DataFrame:
        emb = require_embedder(data, self.name)
        if not uses_norm(emb):
            return OfflineFullQuality().score(data)
        norm = embedding_norms(data)
        s_norm = norm_score(norm)
        img, noise, block = _cheap_parts(data)
        s_noise = hinge_score(noise, NOISE_FLOOR, NOISE_REF)
        s_block = hinge_score(block, BLOCK_FLOOR, BLOCK_REF)
        q = s_norm * s_noise * s_block * img["image_quality"].to_numpy()
        head = pd.DataFrame({"quality": q, "s_norm": s_norm, "s_noise": s_noise, "s_blockiness": s_block, "emb_norm": norm,
                             "noise_sigma": noise, "blockiness": block})
        return pd.concat([head, img], axis=1)
