"""The offline default quality ("offline") and rank-averages of several methods ("a+b").

"offline" needs no download: it multiplies four scores in (0, 1], each 1 when its aspect is fine,

    quality = s_robustness * s_noise * s_blockiness * image_quality

- s_robustness = exp(-(1 - R) / 0.1), R the perturbation robustness of the run's embedding
  (robustness.py: cosine under a flip and under forward-diffusion noise at t = 10, 20).
  Tracks blur, down-sampling, poor light; a cosine loss of 0.1 costs a factor e.
- s_noise = 1 / (1 + (max(0, sigma - 2) / 8)^2), sigma the noise estimate of the face box on the
  original grid (artefacts.py). Below 2 grey levels (what clean photos and fine texture read) it is
  1; it halves at sigma = 10. Needed because robustness alone rates noisy faces *higher*.
- s_blockiness = 1 / (1 + (max(0, B - 1.2) / 0.8)^2), B the JPEG 8x8 blockiness of the face box
  on the original grid. Ordinary web JPEGs (B up to about 1.2) are not penalised; it halves at
  B = 2 (about JPEG quality 20). Needed because JPEG barely moves the embedding.
- image_quality: the geometric mean of the image measures (image.py: sharpness, exposure,
  contrast, face size in the original image, yaw from the landmarks).

A product, not a sum: one bad aspect (a face buried in noise) is enough to make the face poor,
whatever the others say. Missing artefact measures (a faces table from before they existed) count
as neutral (1). The reference points are round values chosen from the measures' physical meaning
and checked against graded degradations (tests/test_quality.py), not fitted to test images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from facesieve.quality.base import QualityInput, combine_ranks, register
from facesieve.quality.image import measures
from facesieve.quality.robustness import Robustness, clean_embeddings, require_embedder, robustness

ROBUSTNESS_SCALE = 0.1
NOISE_FLOOR, NOISE_REF = 2.0, 8.0  # grey levels
BLOCK_FLOOR, BLOCK_REF = 1.2, 0.8  # blockiness ratio
PART_ROWS = 256  # faces scored at once inside a dataset-level method


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
    """"offline" without its robustness term (no embedder runs): image measures x noise x blockiness.
    Used where many faces need a rough ranking fast (ERS's low-quality tail)."""
    img = measures(np.asarray(crops), faces)["quality"].to_numpy()
    noise, block = _column(faces, "noise_sigma"), _column(faces, "blockiness")
    return img * hinge_score(noise, NOISE_FLOOR, NOISE_REF) * hinge_score(block, BLOCK_FLOOR, BLOCK_REF)


class OfflineQuality:
    """The default: perturbation robustness x noise x blockiness x image measures (see module doc)."""

    name = "offline"
    key = f"offline-v1|{Robustness.key}|image-v1|r{ROBUSTNESS_SCALE}|n{NOISE_FLOOR},{NOISE_REF}|b{BLOCK_FLOOR},{BLOCK_REF}"
    uses_embedder = True

    def score(self, data: QualityInput) -> pd.DataFrame:
        emb = require_embedder(data, self.name)
        rob = robustness(emb, data.crops, clean_embeddings(data))
        img = measures(np.asarray(data.crops), data.faces).rename(columns={"quality": "image_quality"})
        noise, block = _column(data.faces, "noise_sigma"), _column(data.faces, "blockiness")
        parts = offline_scores(rob["robustness"].to_numpy(), noise, block, img["image_quality"].to_numpy())
        head = pd.DataFrame({**parts, "noise_sigma": noise, "blockiness": block})
        return pd.concat([head, rob, img], axis=1)


register("offline")(lambda name: OfflineQuality())


class RankAverage:
    """Several methods at once ("offline+sdd-fiqa"): the mean of their ranks scaled to [0, 1].

    Ranks are only meaningful over the whole dataset, so this is a dataset-level method (`fit`):
    it is recomputed for every face whenever the set of faces changes. Each part's own score is
    kept as a column `<part>_quality`.
    """

    uses_embedder = True

    def __init__(self, parts: list, names: list[str]):
        if len(parts) < 2:
            raise ValueError("a rank average needs at least two methods, e.g. offline+image")
        self.parts = parts
        self.names = names
        self.name = "+".join(names)
        self._config = None

    @property
    def key(self) -> str:
        return "rank(" + ",".join(p.key for p in self.parts) + ")"

    def bind(self, config) -> None:
        """The run's settings: the embedder for per-face parts, and whatever the parts need."""
        self._config = config
        for p in self.parts:
            if hasattr(p, "bind"):
                p.bind(config)

    def fit(self, faces: pd.DataFrame, vectors: np.ndarray, crops: np.ndarray) -> pd.DataFrame:
        scores = {}
        for name, part in zip(self.names, self.parts):
            if hasattr(part, "fit"):
                s = part.fit(faces, vectors, crops)["quality"].to_numpy(float)
            else:
                s = score_all(part, faces, vectors, crops, self._embedder(part))
            scores[f"{name}_quality"] = s
        out = pd.DataFrame({"quality": combine_ranks(list(scores.values()))})
        return pd.concat([out, pd.DataFrame(scores)], axis=1)

    def _embedder(self, part):
        if not getattr(part, "uses_embedder", False):
            return None
        if self._config is None:
            raise ValueError(f"{self.name}: call bind(config) first (a part needs the run's embedder)")
        from facesieve.stages import embedder

        return embedder(self._config.embedder)


def score_all(scorer, faces: pd.DataFrame, vectors: np.ndarray, crops: np.ndarray, emb) -> np.ndarray:
    """A per-face method's `quality` for every face, PART_ROWS faces at a time."""
    out = np.full(len(faces), np.nan)
    for s in range(0, len(faces), PART_ROWS):
        sl = slice(s, min(s + PART_ROWS, len(faces)))
        data = QualityInput(crops=np.asarray(crops[sl]), faces=faces.iloc[sl].reset_index(drop=True), embedder=emb,
                            embeddings=np.asarray(vectors[sl]) if vectors is not None else None)
        out[sl] = scorer.score(data)["quality"].to_numpy(float)
    return out


def make_rank_average(name: str) -> RankAverage:
    """Scorer for "a+b[+c...]": every part a registered method name."""
    from facesieve.quality.base import make_quality

    names = [p.strip() for p in name.split("+")]
    if any(not n for n in names):
        raise ValueError(f"empty method in {name!r}; write e.g. offline+sdd-fiqa")
    return RankAverage([make_quality(n) for n in names], names)
