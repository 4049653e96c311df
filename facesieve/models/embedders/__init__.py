"""Face embedders with user-supplied weights: ONNX Runtime for every family, PyTorch for IResNet `.pth`.

Each family's preprocessing is written down once, as a `Preprocessing` (models/preprocessing.py,
carried by the model's catalogue row in models/zoo.py), and is the only place the pixels are
touched: aligned 112x112 uint8 RGB crops (ArcFace template) -> NCHW float32.

| family | channels | values fed to the network | source of the fact |
|---|---|---|---|
| ArcFace / CosFace IResNet (insightface) | RGB | (x - 127.5) / 127.5 | arcface_torch: (img/255 - 0.5)/0.5 |
| MobileFaceNet (insightface) | RGB | (x - 127.5) / 127.5 | insightface model zoo, same recipe |
| AdaFace IR | BGR | (x / 255 - 0.5) / 0.5 | AdaFace inference.py `to_input` |
| SFace (OpenCV zoo, fp32) | RGB | x, 0..255 (normalised inside) | FaceRecognizerSF: blobFromImage(swapRB) |

Vectors come back raw (the pipeline L2-normalises). AdaFace's network returns (feature / |feature|,
|feature|); when its ONNX export has that second (n, 1) output the raw feature is rebuilt from both.
On CPU every session runs on one thread: the worker pool is where the parallelism is, and a vector
must not depend on how many threads computed it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesieve.faces.align import ARCFACE_SIZE, align
from facesieve.faces.detect import Detection
from facesieve.models.preprocessing import ADAFACE, ARCFACE, MOBILEFACENET, SFACE, Preprocessing  # noqa: F401  (re-exported)


def _stack(crops, size: int) -> np.ndarray:
    items = list(crops) if not isinstance(crops, np.ndarray) or crops.ndim == 4 else [crops]
    for i, c in enumerate(items):
        if np.shape(c) != (size, size, 3) or np.asarray(c).dtype != np.uint8:
            raise ValueError(f"crop {i}: expected ({size}, {size}, 3) uint8, got {np.shape(c)} {np.asarray(c).dtype}")
    return np.stack(items) if items else np.zeros((0, size, size, 3), np.uint8)


class _AlignedInput:
    """Every embedder here takes the ArcFace-aligned 112x112 crop the faces stage already cut."""

    needs_original = False
    size = ARCFACE_SIZE
    MAX_BATCH = 64  # bounds the input tensor's memory; results do not depend on it

    def prepare(self, rgb: np.ndarray, det: Detection, aligned: np.ndarray | None) -> np.ndarray:
        if aligned is not None:
            return aligned
        return align(rgb, det.landmarks, self.size)


class OnnxEmbedder(_AlignedInput):
    """An embedding network in ONNX: one NCHW float input, the embedding as the first output."""

    def __init__(self, name: str, model: str | Path | bytes, preprocessing: Preprocessing, device: str = "auto",
                 norm_output: bool = False):
        from facesieve.models.onnx import cpu_single_thread_session

        self.name = name
        self.preprocessing = preprocessing
        self._sess = cpu_single_thread_session(model, device, name)
        inputs = self._sess.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{name}: expected one input, the model has {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        shape = list(inputs[0].shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ValueError(f"{name}: expected an NCHW input with 3 channels, got {shape}")
        if all(isinstance(v, int) for v in shape[2:]) and tuple(shape[2:]) != (self.size, self.size):
            raise ValueError(f"{name}: expected a {self.size}x{self.size} input, the model takes {shape[3]}x{shape[2]}")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.output_names = [o.name for o in self._sess.get_outputs()]
        self.norm_output = norm_output and len(self.output_names) > 1
        self.providers = list(self._sess.get_providers())
        rest = list(self._sess.get_outputs()[0].shape)[1:]  # (n, d) or (n, d, 1, 1): d values per face
        if rest and all(isinstance(v, int) and v > 0 for v in rest):
            self.dim = int(np.prod(rest))
        else:  # symbolic: ask the network
            self.dim = int(self._forward(np.zeros((1, 3, self.size, self.size), np.float32)).shape[1])

    def _run(self, x: np.ndarray) -> np.ndarray:
        names = self.output_names[:2] if self.norm_output else self.output_names[:1]
        outs = self._sess.run(names, {self.input_name: x.astype(self.input_dtype)})
        feat = np.asarray(outs[0], np.float32).reshape(len(x), -1)
        if self.norm_output:
            feat = feat * np.asarray(outs[1], np.float32).reshape(len(x), 1)
        return feat

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """The network on a preprocessed batch, padded to a fixed batch size if the model has one."""
        b = self.fixed_batch
        if b is None:
            return self._run(x)
        parts = []
        for s in range(0, len(x), b):
            chunk = x[s : s + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            parts.append(self._run(chunk)[:n])
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def embed_batch(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        items = _stack(crops, self.size)
        out = np.zeros((len(items), self.dim), np.float32)
        for s in range(0, len(items), self.MAX_BATCH):
            out[s : s + self.MAX_BATCH] = self._forward(self.preprocessing(items[s : s + self.MAX_BATCH]))
        return out


# ---------------------------------------------------------------- PyTorch IResNet checkpoints


def load_state_dict(path: str | Path) -> dict:
    """A plain state dict from an insightface `backbone.pth` (also accepts {"state_dict": ...} and
    DataParallel's "module." prefix). Loaded with weights_only: a checkpoint cannot run code."""
    import torch

    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read PyTorch checkpoint {path}: {e}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ValueError(f"{path}: not a state dict")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def iresnet_layers(sd: dict) -> tuple[int, int, int, int]:
    """Blocks per stage, read from the keys (layer1.0..layerN.M): tells IResNet18/34/50/100/200 apart."""
    counts = []
    for i in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in sd if k.startswith(f"layer{i}.")}
        if not blocks:
            raise ValueError("not an insightface IResNet state dict: no layer1..layer4 keys")
        counts.append(max(blocks) + 1)
    return tuple(counts)  # type: ignore[return-value]


class TorchIResNetEmbedder(_AlignedInput):
    """An insightface IResNet `.pth` (arcface_torch key layout) through PyTorch, loaded strictly."""

    def __init__(self, name: str, path: str | Path, preprocessing: Preprocessing, device: str = "auto"):
        import torch

        from facesieve.models.archs import IResNet

        self.name = name
        self.preprocessing = preprocessing
        sd = load_state_dict(path)
        layers = iresnet_layers(sd)
        if "fc.weight" not in sd:
            raise ValueError(f"{path}: not an insightface IResNet state dict (no fc.weight)")
        self.dim = int(sd["fc.weight"].shape[0])
        net = IResNet(layers, num_features=self.dim)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: does not match the insightface IResNet layout: {str(e)[:400]}") from None
        self.device = torch_device(device)
        self._net = net.eval().to(self.device)
        self._torch = torch

    def embed_batch(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        torch = self._torch
        items = _stack(crops, self.size)
        out = np.zeros((len(items), self.dim), np.float32)
        before = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                for s in range(0, len(items), self.MAX_BATCH):
                    x = torch.from_numpy(self.preprocessing(items[s : s + self.MAX_BATCH])).to(self.device)
                    out[s : s + len(x)] = self._net(x).float().cpu().numpy()
        finally:
            torch.set_num_threads(before)
        return out


def torch_device(device: str = "auto"):
    """torch.device for "auto" (CUDA when available) | "cpu" | "cuda" (refused when unavailable)."""
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if device == "cuda":
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device (install a CUDA build of torch, "
                         "or use --device cpu)")
    return torch.device("cpu")
