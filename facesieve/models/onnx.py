"""ONNX Runtime sessions and PyTorch -> ONNX export, shared by every ONNX-backed model.

Sessions pick CUDA when it is there and the caller allows it, else CPU. Export needs torch and
onnx (``facesieve[torch]``); both are imported inside the function, so this module is import-safe
without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesieve.models.spec import DEVICES


def providers_for(device: str = "auto") -> list[str]:
    """ONNX Runtime providers for `device`: "auto" uses CUDA when available, "cuda" requires it."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ValueError("device 'cuda' asked for, but onnxruntime has no CUDAExecutionProvider "
                         "(install onnxruntime-gpu, or use device='cpu')")
    return ["CPUExecutionProvider"]


def cpu_single_thread_session(model: bytes | str | Path, device: str, what: str):
    """An ONNX Runtime session; on the CPU it runs on one thread, since the process pool already
    uses every core and a vector must not depend on the thread count. ValueError if unreadable."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    providers = providers_for(device)
    if providers[0] == "CPUExecutionProvider":
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, sess_options=opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
        shown = "" if isinstance(model, bytes) else f" {model}"
        raise ValueError(f"{what}: cannot load ONNX model{shown}: {e}") from None


@dataclass
class OnnxModel:
    """One-input, first-output ONNX model run in batches; a fixed batch dimension is respected."""

    session: object
    input_name: str
    output_name: str
    input_shape: tuple
    fixed_batch: int | None

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", threads: int | None = None) -> "OnnxModel":
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers_for(device))
        inp = sess.get_inputs()
        if len(inp) != 1:
            raise ValueError(f"{path.name}: expected one input, found {[i.name for i in inp]}")
        shape = tuple(inp[0].shape)
        batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
        return cls(sess, inp[0].name, sess.get_outputs()[0].name, shape, batch)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run on a float32 NCHW batch of any size (chunked to the model's batch if it is fixed)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0])
        parts = []
        b = self.fixed_batch
        for i in range(0, len(x), b):
            chunk = x[i:i + b]
            n = len(chunk)
            if n < b:  # pad the last chunk up to the fixed batch, then drop the padding
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            parts.append(np.asarray(self.session.run([self.output_name], {self.input_name: chunk})[0])[:n])
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def export_onnx(
    model,
    path: str | Path,
    *,
    input_shape: tuple[int, ...] = (1, 3, 112, 112),
    input_name: str = "input",
    output_name: str = "output",
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Export a torch module in eval mode to ONNX with a dynamic batch axis; written atomically."""
    import os
    import tempfile
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    dummy = torch.zeros(*input_shape, dtype=torch.float32)
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # legacy-exporter notices
            torch.onnx.export(
                model, (dummy,), tmp,
                input_names=[input_name], output_names=[output_name],
                dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
                dynamo=False,  # the TorchScript exporter needs no onnxscript and keeps names stable
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        model.train(was_training)
    return path
