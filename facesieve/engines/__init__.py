"""Engines: who runs the per-image stages (faces, and the embedding and quality that feed on them).

The pipeline decides *what* must be computed and where the results go (a `FacesWork`: the wanted
images and the workspace stores); an engine decides *how*. Both engines write the same parts
(keyed by image id and stage key) into the same stores, so everything downstream of them (the
collected tables, decide, the report, apply) cannot tell which engine ran.

- `local` (default): a process pool on this machine, inference batched in the main process while
  the workers go on detecting (facesieve/engines/local.py).
- `ray`: Ray Data on a Ray cluster or a local Ray instance (facesieve/engines/ray_engine.py,
  `pip install "facesieve[ray]"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.workspace import StageStore

ENGINES = ("local", "ray")


@dataclass
class Target:
    """Where a stage that feeds on faces keeps its results: its store, and the suffix that turns a
    face's key into this stage's key (so a changed model or setting is a different key)."""

    store: StageStore
    suffix: str


@dataclass
class QualityTarget(Target):
    method: str  # the quality method's name, for make_quality


@dataclass
class FacesWork:
    """The faces stage's job: the wanted images (columns image_id, key, path relative to `dataset`)
    and the stores for faces and, when the engine may fill them in the same pass, embeddings and
    quality."""

    dataset: Path
    wanted: pd.DataFrame
    store: StageStore
    embed: Target | None = None
    quality: QualityTarget | None = None

    def missing(self) -> np.ndarray:
        """Row numbers of `wanted` with no committed face yet."""
        return np.flatnonzero(~self.store.done_mask(self.wanted[["image_id", "key"]]))


def hash_files(config, paths: list[str], progress=None) -> list[str]:
    """sha256 (hex) of each file, in order, with the engine `config.engine` names."""
    if not paths:
        return []
    return _engine(config).hash_files(config, paths, progress)


def compute_faces(config, work: FacesWork, reporter) -> None:
    """Fill the missing parts of `work`'s stores with the engine `config.engine` names."""
    _engine(config).compute_faces(config, work, reporter)


def _engine(config):
    if config.engine == "local":
        from facesieve.engines import local

        return local
    if config.engine == "ray":
        from facesieve.engines import ray_engine

        return ray_engine
    raise ValueError(f"unknown engine {config.engine!r}; choose from {', '.join(ENGINES)}")
