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

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facesieve.engines.work import FacesWork


ENGINES = ("local", "ray")


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
