"""Run settings shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

DETECTORS = ("yunet", "dlib-hog", "dlib-cnn")
EMBEDDERS = ("sface", "dlib")
METRICS = ("cosine", "euclidean")
MODES = ("copy", "hardlink", "symlink")
FACE_POLICIES = ("central", "first")
ENGINES = ("local", "ray")


@dataclass
class RunConfig:
    """Everything that decides what a run computes. Stage caches are keyed by the parts they use."""

    dataset: Path
    out: Path
    workspace: Path | None = None
    keep: int | None = None
    detector: str = "yunet"
    embedder: str = "sface"
    metric: str = "cosine"
    quality: str = "image"
    face_policy: str = "central"
    aligned: bool = False
    mode: str = "copy"
    layout: str = "folders"
    jobs: int | None = None
    batch_size: int = 64
    engine: str = "local"  # "local" (process pool) | "ray" (Ray Data, facesieve[ray])
    ray_address: str | None = None  # None: a running cluster if there is one, else a local instance
    overlap: bool = True  # embed finished faces while detection goes on (False: one stage after another)
    max_exhaustive: int = 2_000_000
    dedup: bool = True  # exact + near-duplicate passes
    near_dup_threshold: float | None = None  # None: the embedder's calibrated default
    cross_id_threshold: float | None = None
    overlap_threshold: float | None = None
    outliers: bool = True
    drop_outliers: bool = False
    report: bool = True  # write <out>/report.html at the end of the run
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset)
        self.out = Path(self.out)
        if self.workspace is None:
            self.workspace = self.out / ".facesieve"
        self.workspace = Path(self.workspace)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
