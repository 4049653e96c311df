"""Run settings shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from facesieve.models.zoo import DETECTOR_NAMES as DETECTORS, EMBEDDER_NAMES as EMBEDDERS  # noqa: F401  (the catalogue's)

DEVICES = ("auto", "cpu", "cuda")
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
    quality: str = "offline"  # docs/quality.md
    face_policy: str = "central"
    aligned: bool = False
    mode: str = "copy"
    layout: str = "folders"
    jobs: int | None = None
    batch_size: int = 16  # faces per inference batch: CPU inference gains nothing from more, and a 64-face SFace batch holds ~330 MB
    engine: str = "local"  # "local" (process pool) | "ray" (Ray Data, facesieve[ray])
    ray_address: str | None = None  # None: a running cluster if there is one, else a local instance
    overlap: bool = True  # embed finished faces while detection goes on (False: one stage after another)
    max_exhaustive: int = 2_000_000
    dedup: bool = True  # exact + near-duplicate + cross-identity passes
    duplicates: str = "shots"  # exact | copies (same photo edited) | shots (and near-identical shots) | off
    near_dup_threshold: float | None = None  # None: the embedder's calibrated default
    cross_id_threshold: float | None = None
    overlap_threshold: float | None = None
    outliers: bool = True
    drop_outliers: bool = False
    identities: bool = True  # folders holding two people, photos filed under several identities (select/identity.py)
    empty_identities: bool = False  # let duplicate / identity decisions leave an identity with no face
    relabel: bool = False  # copy each mislabeled face into the identity it belongs to in the output
    report: bool = True  # write <out>/report.html at the end of the run
    extra: dict = field(default_factory=dict)
    # models with weights of the user's own / where they run (facesieve/models/spec.py): folded into
    # `detector` / `embedder`, the strings that workers build their models from
    detector_weights: str | None = None
    embedder_weights: str | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda": ONNX Runtime / PyTorch models
    det_threshold: float | None = None  # detector score threshold (None: the detector's own)

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset)
        self.out = Path(self.out)
        if self.workspace is None:
            self.workspace = self.out / ".facesieve"
        self.workspace = Path(self.workspace)
        from facesieve.models.spec import merge_spec

        self.detector = merge_spec(self.detector, weights=self.detector_weights, device=self.device, threshold=self.det_threshold)
        self.embedder = merge_spec(self.embedder, weights=self.embedder_weights, device=self.device)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
