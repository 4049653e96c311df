"""Run settings shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from facesieve.engines import ENGINES  # noqa: F401  (the engines' own list)
from facesieve.faces import POLICIES as FACE_POLICIES
from facesieve.models.zoo import DETECTOR_NAMES as DETECTORS  # noqa: F401  (the catalogue's)
from facesieve.models.zoo import EMBEDDER_NAMES as EMBEDDERS
from facesieve.quality.registry import help_text

METRICS = ("cosine", "euclidean")
MODES = ("copy", "hardlink", "symlink")
LAYOUTS = ("folders", "flat")


def option(*flags: str, **argparse_kw) -> dict:
    """Field metadata making a RunConfig field a command-line option: its flags and argparse settings
    (help, type, choices, ...) written once, next to the default; facesieve/cli/options.py builds the
    option from them (dest = the field's name) and `RunConfig.from_namespace` reads it back. No flags:
    a positional argument. A `help` may be a function, called when the parser is built."""
    return {"cli": {"flags": flags, **argparse_kw}}


def quality_help() -> str:
    """The quality methods, for `run --quality`: from the quality registry's table."""
    return help_text()


@dataclass
class RunConfig:
    """Everything that decides what a run computes. Stage caches are keyed by the parts they use.
    Fields with `option(...)` metadata are `facesieve run`'s options."""

    dataset: Path = field(metadata=option(type=Path, metavar="DATASET", help="folder with one sub-folder per identity"))
    out: Path = field(metadata=option("--out", "-o", type=Path, metavar="CLEANED",
                                      help="output folder (new, or a previous facesieve output)"))
    workspace: Path | None = field(default=None, metadata=option(
        "--workspace", type=Path, help="workspace folder (default: <out>/.facesieve)"))
    keep: int | None = field(default=None, metadata=option(
        "--keep", "-k", type=int, metavar="K",
        help="keep the K most representative faces per identity (default: keep all that pass)"))
    detector: str = field(default="yunet", metadata=option(
        "--detector", metavar="NAME[:WEIGHTS]", help=f"face detector: {', '.join(DETECTORS)}"))
    embedder: str = field(default="sface", metadata=option(
        "--embedder", metavar="NAME[:WEIGHTS]", help=f"face embedder: {', '.join(EMBEDDERS)} (`facesieve models list`)"))
    metric: str = field(default="cosine", metadata=option(
        "--metric", choices=METRICS, help="distance between embeddings (euclidean: raw vectors)"))
    quality: str = field(default="offline", metadata=option(  # docs/quality.md
        "--quality", metavar="METHOD", help=lambda: "quality method: " + quality_help()))
    face_policy: str = field(default="central", metadata=option(
        "--face-policy", choices=FACE_POLICIES,
        help="which face of a multi-face image: nearest the centre weighted by size, or the detector's first"))
    aligned: bool = field(default=False, metadata=option(
        "--aligned", action="store_true", help="inputs are already aligned 112x112 crops: skip detection"))
    mode: str = field(default="copy", metadata=option("--mode", choices=MODES, help="how kept files are placed in the output"))
    layout: str = field(default="folders", metadata=option(
        "--layout", choices=LAYOUTS, help="identity from the top-level folder, or none (one flat group)"))
    jobs: int | None = field(default=None, metadata=option(
        "--jobs", "-j", type=int, help="worker processes (default: all cores)"))
    # faces per inference batch: CPU inference gains nothing from more, and a 64-face SFace batch holds ~330 MB
    batch_size: int = field(default=16, metadata=option(
        "--batch-size", type=int, help="faces per inference batch (and images per worker task)"))
    engine: str = field(default="local", metadata=option(  # "local" (process pool) | "ray" (Ray Data, facesieve[ray])
        "--engine", choices=ENGINES, group="engine",
        help="local: a process pool on this machine (--jobs); ray: Ray Data on a Ray cluster (pip install 'facesieve[ray]')"))
    ray_address: str | None = field(default=None, metadata=option(
        "--ray-address", metavar="ADDR", group="engine",
        help="Ray cluster to join, e.g. ray://head:10001 or auto (default: a running one, else a local instance)"))
    overlap: bool = True  # embed finished faces while detection goes on (False: one stage after another)
    max_exhaustive: int = field(default=2_000_000, metadata=option(
        "--max-exhaustive", type=int,
        help="largest number of K-subsets searched exhaustively; beyond it a local search is used"))
    dedup: bool = field(default=True, metadata=option(  # exact + near-duplicate + cross-identity passes
        "--no-dedup", action="store_false", group="duplicates",
        help="skip the exact, near-duplicate and cross-identity passes"))
    near_dup_threshold: float | None = field(default=None, metadata=option(  # None: the embedder's calibrated default
        "--near-dup-threshold", type=float, metavar="T", group="duplicates",
        help="cosine at or above which two faces of one identity are grouped on their embeddings alone, without the "
        "face-crop comparison (default: 1.0, only identical vectors, for calibrated embedders)"))
    duplicates: str = field(default="shots", metadata=option(
        "--duplicates", choices=("exact", "copies", "shots", "off"), group="duplicates",
        help="what is grouped within an identity, keeping the best face of each group: exact = same bytes or "
        "pixels only; copies = also the same photo edited (re-encoded, resized, cropped, flipped, re-toned, "
        "grey, rotated, framed, captioned, stretched, recoloured or retouched where its face keeps its place in "
        "its background); shots = also near-identical shots of one moment "
        "(video frames, bursts: reason near_identical_shot); off = none (docs/thresholds.md)"))
    cross_id_threshold: float | None = field(default=None, metadata=option(
        "--cross-id-threshold", type=float, metavar="T", group="duplicates",
        help="cosine at or above which faces of two identities are one photo filed twice: kept where the face "
        "fits, else both to review (default: calibrated)"))
    overlap_threshold: float | None = field(default=None, metadata=option(
        "--overlap-threshold", type=float, metavar="T", group="duplicates",
        help="cosine of two identities' mean faces at or above which they are listed in identity_overlaps.csv "
        "(default: calibrated)"))
    outliers: bool = field(default=True, metadata=option(
        "--no-outliers", action="store_false", group="duplicates", help="skip the per-face outlier pass (select/outliers.py)"))
    drop_outliers: bool = field(default=False, metadata=option(
        "--drop-outliers", action="store_true", group="duplicates",
        help="remove outliers and mislabeled faces instead of marking them for review"))
    # folders holding two people, photos filed under several identities (select/identity.py)
    identities: bool = field(default=True, metadata=option(
        "--no-identity-check", action="store_false", group="duplicates",
        help="skip the identity pass: folders holding two people, and a photo filed under several identities "
        "kept where its face fits (without it such copies all go to review)"))
    empty_identities: bool = field(default=False, metadata=option(  # let decisions leave an identity with no face
        "--allow-empty-identities", action="store_true", group="duplicates",
        help="let duplicate and identity decisions remove every face of an identity (default: an identity "
        "that would be emptied keeps the faces they took, with the decision in `detail`)"))
    relabel: bool = field(default=False, metadata=option(  # copy each mislabeled face into the identity it belongs to
        "--relabel", action="store_true", group="duplicates",
        help="also copy each face found `mislabeled` into the identity it belongs to (manifest column "
        "`belongs_to`) in the output; the input is never touched (default: off)"))
    report: bool = field(default=True, metadata=option(  # write <out>/report.html at the end of the run
        "--no-report", action="store_false", help="do not write OUT/report.html (the HTML report)"))
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

    @classmethod
    def from_namespace(cls, ns, **overrides) -> RunConfig:
        """The RunConfig of parsed command-line options: every option field that `ns` holds (options
        built by facesieve/cli/options.py store under the field's name), then `overrides`."""
        values = {f.name: getattr(ns, f.name) for f in fields(cls) if "cli" in f.metadata and hasattr(ns, f.name)}
        return cls(**{**values, **overrides})

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
