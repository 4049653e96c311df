"""Every model facesieve can download: the catalogue's (each detector or embedder row of
models/zoo.py carries its own download entry) and the quality models' (below). `facesieve models
list / fetch / verify` read this list; what an entry holds and how it is checked is models/entry.py.
Nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path

from facesieve.models.entry import ModelEntry
from facesieve.models.zoo import MODELS, OPENCV_ZOO

_EDIFFIQA_PRE = (
    "RGB, 112x112 aligned (ArcFace 5-point template), (x/255 - 0.5)/0.5, NCHW float32; "
    "output [B,1] raw score (no sigmoid), higher is better"
)
_EDIFFIQA_SHAREPOINT = (
    "https://unilj-my.sharepoint.com/:f:/g/personal/zb4290_student_uni-lj_si/"
    "EpxkJRo7artCud18dC2NAXcBAegU0uDaSMPwzG9ufcXkLg?e=zhsnho"
)


def _ediffiqa_pth(variant: str, backbone: str) -> ModelEntry:
    return ModelEntry(
        name=f"ediffiqa-{variant.lower()}",
        role="quality",
        format="pth",
        filename=f"ediffiqa_{variant.lower()}.pth",
        url=f"https://huggingface.co/LSIbabnikz/eDifFIQA_{variant}/resolve/main/pytorch_model.bin",
        sha256=None,
        size=None,
        licence="not stated in LSIbabnikz/eDifFIQA (no licence file); ask the authors before commercial use",
        input_size=(112, 112),
        preprocessing=_EDIFFIQA_PRE,
        homepage="https://github.com/LSIbabnikz/eDifFIQA",
        mirrors=(),
        notes=(
            f"eDifFIQA({variant}), {backbone} backbone + MLP head, state dict keys base_model.* / mlp.l1 / mlp.l2. "
            "The official README links a SharePoint folder (" + _EDIFFIQA_SHAREPOINT + ", not a direct "
            "download) and says all models are on Hugging Face (huggingface.co/LSIbabnikz). The direct URL is "
            "that account's repo pattern, seen for eDifFIQA_M with pytorch_model.bin; URL and sha256 to be verified."
        ),
        tags=("torch",),
    )


# the quality models' weights (the quality methods that load them: facesieve/quality/registry.py)
QUALITY_ENTRIES = (
    ModelEntry(
        name="ediffiqa-t",
        role="quality",
        format="onnx",
        filename="ediffiqa_tiny_jun2024.onnx",
        url=f"{OPENCV_ZOO}/face_image_quality_assessment_ediffiqa/ediffiqa_tiny_jun2024.onnx",
        # Git LFS oid of the file in opencv/opencv_zoo (LFS oid = sha256 of the content).
        sha256="9426c899cc0f01665240cb7d9e7f98e18e24e456c178326c771a43da289bfc6a",
        size=7_272_678,
        licence="CC-BY-4.0",
        input_size=(112, 112),
        preprocessing=_EDIFFIQA_PRE,
        homepage="https://github.com/opencv/opencv_zoo/tree/main/models/face_image_quality_assessment_ediffiqa",
        mirrors=(
            "https://huggingface.co/opencv/face_image_quality_assessment_ediffiqa/resolve/main/ediffiqa_tiny_jun2024.onnx",
        ),
        notes="eDifFIQA(T): MobileFaceNet backbone + MLP head. Input/output tensor names are read from the file.",
    ),
    _ediffiqa_pth("S", "IResNet18"),
    _ediffiqa_pth("M", "IResNet50"),
    _ediffiqa_pth("L", "IResNet100"),
)

REGISTRY: dict[str, ModelEntry] = {
    e.name: e for e in (*(m.download for m in MODELS.values() if m.download is not None), *QUALITY_ENTRIES)
}


def get(name: str) -> ModelEntry:
    """The entry called `name` (case-insensitive); a clear error listing the choices otherwise."""
    key = name.strip().lower()
    if key not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def entries(role: str | None = None) -> list[ModelEntry]:
    return [e for e in REGISTRY.values() if role is None or e.role == role]


def cached_path(entry: ModelEntry | str, cache: Path | None = None) -> Path:
    """Where a model's fetched copy lives (by entry or registry name), whether or not it is there."""
    return (get(entry) if isinstance(entry, str) else entry).cached_path(cache)


def describe(entry: ModelEntry, cache: Path | None = None) -> dict:
    """One row for `facesieve models list`."""
    path = cached_path(entry, cache)
    return {
        "name": entry.name,
        "role": entry.role,
        "format": entry.format,
        "size": entry.size,
        "licence": entry.licence,
        "input": "any" if entry.input_size is None else f"{entry.input_size[0]}x{entry.input_size[1]}",
        "sha256": entry.sha256 or "",
        "sha256_status": entry.sha256_status,
        "sha256_verified": entry.sha256_verified,
        "url": entry.url or f"(manual download: {entry.homepage})",
        "cached": path.is_file(),
        "path": str(path),
    }
