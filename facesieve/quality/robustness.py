"""Perturbation robustness: how far the run's own embedding moves when the face is perturbed.

In the spirit of DifFIQA (Babnik et al., IJCB 2023): a face a recogniser reads reliably keeps its
embedding under small perturbations; a blurred, tiny or badly lit one does not. DifFIQA perturbs
with the forward process of a diffusion model (and a learnt reconstruction) and with a horizontal
flip; without a diffusion model we keep the forward process, which needs no weights:

    x in [-1, 1],  x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps,  eps ~ N(0, I)

with abar_t from the cosine schedule of Nichol & Dhariwal (1000 steps, s = 0.008). We use two small
steps, t = 10 and 20 (noise of about 3 and 5 grey levels), and the flip. The score is a mean of
cosine similarities between the clean embedding and the perturbed ones, half for the flip and half
for the noise levels (their mean):

    R = 1/2 cos(e, e_flip) + 1/2 mean_t cos(e, e_t)

Why these weights: on clean faces (essex, ORL; 764 photos) the flip term alone predicts how well a
face matches its own identity (Spearman 0.40-0.42 with the leave-one-out genuine similarity) far
better than any noise term (0.02-0.28); a plain mean of flip and t = 10, 20, 40 dilutes it (0.13-0.35),
this weighting keeps it (0.34-0.46), while the noise terms carry blur and down-sampling (Spearman
0.97-0.99 with the level alone). Three extra embeddings per face. eps is drawn from a generator
seeded by the face's own pixels, so a face always gets the same score, whatever the batch or order.

The perturbation is applied to the embedder's input. SFace's input is the aligned 112x112 crop
itself. dlib's input is its own 150x150 chip cut from the original image (`needs_original`); here
it is cut from the aligned crop instead, padded by edge replication (`chip_from_aligned`): the crop
holds the face, and the chip's wider margin is mostly background. The chip is only approximately
the one the run embedded, but every term compares embeddings of that same approximated chip.

On its own this measure tracks blur and down-sampling (Spearman 0.97-1.0 with the level on real
faces) but not noise: a noisy face's embedding moves *less* under a little more noise. The
"offline-full" quality (offline.py) therefore multiplies it with a noise and a blockiness term;
the default "offline" uses the embedding's norm in its place (no extra embedding).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from facesieve.faces.align import ARCFACE_TEMPLATE
from facesieve.faces.detect import Detection
from facesieve.parallel import one_thread
from facesieve.quality.base import QualityInput
from facesieve.vectors import l2_normalise

STEPS = 1000  # length of the diffusion schedule
COSINE_S = 0.008  # the cosine schedule's offset (Nichol & Dhariwal 2021)
NOISE_STEPS = (10, 20)
PAD = 32  # replicated border around the 112x112 crop when an embedder cuts its own chip


def alpha_bar(t: int, steps: int = STEPS, s: float = COSINE_S) -> float:
    """Cumulative signal fraction abar_t of the cosine schedule: f(t)/f(0), f(u) = cos^2(((u/T)+s)/(1+s) pi/2)."""
    if not 0 <= t <= steps:
        raise ValueError(f"diffusion step must lie in 0..{steps}, got {t}")

    def f(u: float) -> float:
        return math.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2

    return f(t) / f(0)


def image_seed(pixels: np.ndarray) -> int:
    """A seed from the pixels themselves: the same face always draws the same noise."""
    return int.from_bytes(hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=8).digest(), "little")


def forward_noise(img: np.ndarray, t: int, eps: np.ndarray) -> np.ndarray:
    """x_t for a uint8 image (scaled to [-1, 1] and back, rounded to uint8 for the embedder)."""
    a = alpha_bar(t)
    x = img.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    xt = np.float32(math.sqrt(a)) * x + np.float32(math.sqrt(1.0 - a)) * eps
    return np.clip(np.rint((xt + 1.0) * 127.5), 0, 255).astype(np.uint8)


def chip_from_aligned(emb, crop: np.ndarray) -> np.ndarray:
    """The input of an embedder that cuts its own chip (dlib), cut from the aligned crop.

    The crop is padded by edge replication and handed over with the ArcFace template as its
    landmarks, as if the padded crop were the original image and the template the detection.
    """
    padded = np.pad(np.asarray(crop, np.uint8), ((PAD, PAD), (PAD, PAD), (0, 0)), mode="edge")
    lm = (ARCFACE_TEMPLATE + PAD).astype(np.float32)
    size = crop.shape[0]
    det = Detection(box=(float(PAD), float(PAD), float(size), float(size)), score=1.0, landmarks=lm)
    return np.asarray(emb.prepare(padded, det, None), np.uint8)


def model_inputs(emb, crops: np.ndarray) -> np.ndarray:
    """(n, s, s, 3) uint8: what the embedder takes, for each aligned crop."""
    if getattr(emb, "needs_original", False):
        items = [chip_from_aligned(emb, c) for c in crops]
    else:
        items = [np.asarray(emb.prepare(None, None, c), np.uint8) for c in crops]
    return np.stack(items) if items else np.zeros((0, 112, 112, 3), np.uint8)


def _unit(v: np.ndarray) -> np.ndarray:
    return l2_normalise(np.asarray(v, np.float64))


def perturbation_similarities(
    emb, inputs: np.ndarray, clean: np.ndarray | None = None, steps: tuple[int, ...] = NOISE_STEPS
) -> dict[str, np.ndarray]:
    """Cosine similarity of each input's embedding to its flipped and noised versions' embeddings.

    `clean` may pass the clean embeddings when they are already known (same inputs, same model).
    Returns {"flip": (n,), "t10": (n,), ...}.
    """
    n = len(inputs)
    if n == 0:
        return {"flip": np.zeros(0), **{f"t{t}": np.zeros(0) for t in steps}}
    eps = np.stack([np.random.default_rng(image_seed(x)).standard_normal(x.shape, dtype=np.float32) for x in inputs])
    with one_thread():  # as every model call in facesieve: results must not depend on the thread count
        e0 = _unit(emb.embed_batch(inputs) if clean is None else clean)
        out = {"flip": np.einsum("ij,ij->i", e0, _unit(emb.embed_batch(np.ascontiguousarray(inputs[:, :, ::-1]))))}
        for t in steps:
            noisy = forward_noise(inputs, t, eps)  # one eps per face for all t: the levels differ only in size
            out[f"t{t}"] = np.einsum("ij,ij->i", e0, _unit(emb.embed_batch(noisy)))
    return out


def robustness(emb, crops: np.ndarray, clean: np.ndarray | None = None) -> pd.DataFrame:
    """Per face: `robustness` (half the flip term, half the mean noise term) and the terms
    `rob_flip`, `rob_t10`, `rob_t20`."""
    inputs = model_inputs(emb, np.asarray(crops))
    sims = perturbation_similarities(emb, inputs, clean)
    noise = np.mean([sims[f"t{t}"] for t in NOISE_STEPS], axis=0) if len(inputs) else np.zeros(0)
    r = 0.5 * sims["flip"] + 0.5 * noise
    terms = pd.DataFrame({f"rob_{k}": v for k, v in sims.items()})
    return pd.concat([pd.DataFrame({"robustness": r}), terms], axis=1)


def clean_embeddings(data: QualityInput) -> np.ndarray | None:
    """The run's stored vectors, when they are embeddings of exactly the inputs robustness uses
    (embedders that take the aligned crop); None otherwise (dlib: recomputed on its chip)."""
    if data.embeddings is None or getattr(data.embedder, "needs_original", False):
        return None
    e = np.asarray(data.embeddings)
    return e if e.shape[0] == len(data.crops) else None


def require_embedder(data: QualityInput, method: str):
    if data.embedder is None:
        raise ValueError(f"quality method {method!r} needs the run's embedder (QualityInput.embedder)")
    return data.embedder


class Robustness:
    """Embedding robustness alone: higher is better, 1 = the embedding does not move."""

    name = "robustness"
    key = "robustness-v2|t=" + ",".join(map(str, NOISE_STEPS)) + "|flip:half"
    uses_embedder = True

    def score(self, data: QualityInput) -> pd.DataFrame:
        emb = require_embedder(data, self.name)
        out = robustness(emb, data.crops, clean_embeddings(data))
        return pd.concat([pd.DataFrame({"quality": out["robustness"].to_numpy()}), out], axis=1)
