"""ERS, the embedding recognizability score (Deng et al., "Harnessing Unrecognizable Faces for
Improving Face Recognition", 2021).

The paper's observation: a recogniser trained on recognizable faces maps *unrecognizable* ones
(too blurred, small, dark, occluded), whoever they show, into one common region of the
hypersphere, the "unrecognizable identity" (UI) cluster. A face's recognizability is its distance
from that cluster's centre f_UI:

    e = 1 - cos(f, f_UI)        (higher is better; 0 at the UI centre, up to 2 opposite to it)

Direction matters: a face *near* f_UI is unrecognizable, so it must get a *low* e. (A score taken
as the similarity to f_UI, or as 1 minus a raw Euclidean distance, ranks faces the wrong way round
or on a meaningless scale; tests/unit/quality/test_quality.py checks the direction on a deliberately ruined face.)
The paper keeps faces with e above 0.60; `ers_keep` reports that decision (KEEP_THRESHOLD), the
selection itself uses e as a weight like any other quality.

Where f_UI comes from (`source` in `report`):
- "examples": a folder of unrecognizable face images given by the user (`ers:DIR`, or
  `--ers-examples DIR`), detected, aligned and embedded exactly as the run's faces;
- "tail": the dataset's own low-quality tail. From up to SAMPLE faces (seeded), the TAIL fraction
  with the lowest cheap quality (offline.cheap_quality: image measures x noise x blockiness, no
  embedder run) are the candidates; a candidate belongs to the UI cluster
  when it is closer to the other candidates (mean of its TOP_K best cosines among them) than to any
  other face of its own identity ("matches no one", and clusters with the unrecognizable). f_UI is
  the normalised mean of the members, after one trimming pass (members below the median cosine to
  the first mean are dropped). Needs at least MIN_MEMBERS members;
- "synthetic": otherwise (a small or clean dataset has no unrecognizable tail to learn from): up to
  SYNTHETIC faces of the dataset, ruined on purpose (blurred, shrunk to a few pixels between the
  eyes and back, noised: nothing recognizable survives), are embedded and their centre taken. That
  is the paper's Figure 1 experiment: perturbed faces migrate to the UI cluster.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from facesieve import stages
from facesieve.errors import FacesieveError
from facesieve.imaging import IMAGE_EXTENSIONS, load_rgb
from facesieve.quality.offline import cheap_quality
from facesieve.quality.robustness import model_inputs
from facesieve.vectors import l2_normalise

KEEP_THRESHOLD = 0.60  # the paper's threshold on e
SAMPLE = 20_000  # faces looked at to find the tail
TAIL = 0.10  # the low-quality fraction searched for the UI cluster
MIN_TAIL = 10
TOP_K = 5
MIN_MEMBERS = 5
SYNTHETIC = 64
SEED = 0


def unit(v: np.ndarray) -> np.ndarray:
    return l2_normalise(np.asarray(v, np.float64))


def ers_scores(vectors: np.ndarray, f_ui: np.ndarray, rows_per_pass: int = 65536) -> np.ndarray:
    """e = 1 - cos(f, f_UI) per row of `vectors` (any length; cosine), a block of rows at a time."""
    f = unit(f_ui)
    out = np.empty(len(vectors))
    for s in range(0, len(vectors), rows_per_pass):
        out[s : s + rows_per_pass] = 1.0 - unit(vectors[s : s + rows_per_pass]) @ f
    return out


def ui_centre(vectors: np.ndarray) -> np.ndarray:
    """Normalised mean of the unit vectors, after dropping those below the median cosine to the
    first mean (one trimming pass: a stray member cannot pull the centre)."""
    u = unit(vectors)
    if len(u) == 0:
        raise ValueError("no embeddings to take the UI centre of")
    m = unit(u.mean(axis=0))
    if len(u) >= 4:
        c = u @ m
        m = unit(u[c >= np.median(c)].mean(axis=0))
    return m


def tail_members(vectors: np.ndarray, quality: np.ndarray, identities: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """Rows (indices into `vectors`) of the UI cluster found in the low-quality tail of `rows`
    (`quality` given for `rows`). A tail face is a member when its mean cosine to its TOP_K
    nearest tail faces exceeds its best cosine to any other face of its identity (to any other
    sampled face when there are no identities)."""
    q = np.asarray(quality, float)
    if len(rows) < 2 * MIN_TAIL:
        return np.zeros(0, np.int64)
    n_tail = max(MIN_TAIL, int(round(TAIL * len(rows))))
    tail = rows[np.argsort(q, kind="stable")[:n_tail]]
    t = unit(vectors[tail])
    sim = t @ t.T
    np.fill_diagonal(sim, -np.inf)
    k = min(TOP_K, len(tail) - 1)
    density = np.sort(sim, axis=1)[:, -k:].mean(axis=1)
    groups = pd.Series(np.arange(len(identities))).groupby(identities).indices if identities is not None else None
    best_match = np.full(len(tail), -1.0)
    for j, i in enumerate(tail):
        same = groups[identities[i]] if groups is not None else rows
        same = same[same != i]
        if len(same):
            best_match[j] = float((unit(vectors[same]) @ t[j]).max())
    return tail[density > best_match]


def ruin(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A face nobody could recognise: strong blur, 6 px between the eyes, back up, noise."""
    b = cv2.GaussianBlur(np.ascontiguousarray(crop), (0, 0), 4.0)
    small = cv2.resize(b, (19, 19), interpolation=cv2.INTER_AREA)  # eyes ~6 px apart
    up = cv2.resize(small, crop.shape[1::-1], interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return np.clip(up + rng.normal(0.0, 20.0, up.shape), 0, 255).astype(np.uint8)


class ERS:
    """Dataset-level quality method (`fit`): e = 1 - cos(f, f_UI) for every face."""

    uses_embedder = False  # the run's vectors are used; the embedder only for examples / synthetic faces

    def __init__(self, examples: Path | None = None):
        self.examples = Path(examples).expanduser() if examples else None
        self.name = "ers" if self.examples is None else f"ers:{self.examples}"
        self._config = None
        self.report: dict = {}
        self.centre: np.ndarray | None = None

    @property
    def key(self) -> str:
        emb = self._config.embedder if self._config is not None else "?"
        src = f"examples={_folder_digest(self.examples)}" if self.examples else f"tail={SAMPLE},{TAIL},{TOP_K},{MIN_MEMBERS}"
        return f"ers-v1|{src}|{emb}"

    def bind(self, config) -> None:
        """The run's settings: examples are detected, aligned and embedded the same way."""
        self._config = config

    def fit(self, faces: pd.DataFrame, vectors: np.ndarray, crops) -> pd.DataFrame:
        v = np.asarray(vectors)
        if self.examples is not None:
            f_ui, info = self._from_examples()
        else:
            f_ui, info = self._from_tail(faces, v, crops)
        self.centre = f_ui
        e = ers_scores(v, f_ui) if len(v) else np.zeros(0)
        self.report = {"method": "ERS", "keep_threshold": KEEP_THRESHOLD, "n_faces": int(len(v)),
                       "n_below_threshold": int((e < KEEP_THRESHOLD).sum()), **info}
        return pd.DataFrame({"quality": e, "ers": e, "ers_keep": e >= KEEP_THRESHOLD, "ui_similarity": 1.0 - e,
                             "ers_source": info["source"]})

    # ------------------------------------------------------------ where f_UI comes from

    def _from_tail(self, faces: pd.DataFrame, v: np.ndarray, crops) -> tuple[np.ndarray, dict]:
        rng = np.random.default_rng(SEED)
        n = len(v)
        rows = np.sort(rng.choice(n, size=SAMPLE, replace=False)) if n > SAMPLE else np.arange(n)
        quality = np.empty(len(rows))
        for s in range(0, len(rows), 256):
            r = rows[s : s + 256]
            quality[s : s + 256] = cheap_quality(np.asarray(crops[r]), faces.iloc[r].reset_index(drop=True))
        ids = faces["identity"].astype(str).to_numpy() if "identity" in faces else None
        members = tail_members(v, quality, ids, rows)
        if len(members) >= MIN_MEMBERS:
            centre = ui_centre(v[members])
            return centre, {"source": "tail", "n_members": int(len(members)),
                            "cohesion": float((unit(v[members]) @ centre).mean())}
        return self._synthetic(v, crops, rng, found=int(len(members)))

    def _synthetic(self, v: np.ndarray, crops, rng: np.random.Generator, found: int) -> tuple[np.ndarray, dict]:
        if len(v) == 0:
            raise FacesieveError("ERS: no faces to score")
        pick = np.sort(rng.choice(len(v), size=min(SYNTHETIC, len(v)), replace=False))
        ruined = np.stack([ruin(np.asarray(crops[int(i)]), rng) for i in pick])
        f = self._embed_crops(ruined)
        centre = ui_centre(f)
        return centre, {"source": "synthetic", "n_members": int(len(f)), "tail_members_found": found,
                        "cohesion": float((unit(f) @ centre).mean())}

    def _from_examples(self) -> tuple[np.ndarray, dict]:
        folder = self.examples
        if folder is None or not folder.is_dir():
            raise FacesieveError(f"ERS examples folder not found: {folder}")
        files = example_files(folder)
        if not files:
            raise FacesieveError(f"ERS examples folder {folder} holds no images")
        cfg = self._require_config()
        crops, rows, paths = [], [], []
        for p in files:
            row, crop = stages.faces_worker(stages.FaceTask(str(p), "", str(p), cfg.detector, cfg.face_policy, cfg.aligned, True))
            if row["status"] == "ok":
                crops.append(crop)
                rows.append(row)
                paths.append(p)
        if not crops:
            raise FacesieveError(f"ERS: no face found in any of the {len(files)} example images in {folder}")
        f = self._embed_crops(np.stack(crops), rows, paths)
        centre = ui_centre(f)
        return centre, {"source": "examples", "examples": str(folder), "n_members": int(len(f)),
                        "n_example_files": len(files), "cohesion": float((unit(f) @ centre).mean())}

    def _embed_crops(self, crops: np.ndarray, rows: list | None = None, paths: list | None = None) -> np.ndarray:
        """Embeddings of aligned crops with the run's embedder (dlib: its chip, from the original
        image when there is one, else from the crop as robustness.py does)."""
        emb = stages.embedder(self._require_config().embedder)
        if getattr(emb, "needs_original", False) and rows is not None:
            inputs = np.stack([emb.prepare(load_rgb(p), stages.detection_from_row(r), None) for r, p in zip(rows, paths)])
        else:
            inputs = model_inputs(emb, crops)
        return np.asarray(emb.embed_batch(inputs), np.float64)

    def _require_config(self):
        if self._config is None:
            raise FacesieveError("ERS needs the run's settings (bind(config)) to embed example or synthetic faces")
        return self._config


def example_files(folder: Path) -> list[Path]:
    """The image files below `folder` (by extension, hidden names skipped), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _folder_digest(folder: Path | None) -> str:
    """Changes when an example image is added, removed, resized or touched."""
    if folder is None or not folder.is_dir():
        return "missing"
    h = hashlib.sha1()
    for p in example_files(folder):
        st = p.stat()
        h.update(os.fsencode(p.relative_to(folder)) + f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def make_ers(name: str) -> ERS:
    """"ers" (UI centre from the dataset) or "ers:DIR" (from a folder of unrecognizable faces)."""
    _, _, arg = name.partition(":")
    return ERS(Path(arg.strip()) if arg.strip() else None)
