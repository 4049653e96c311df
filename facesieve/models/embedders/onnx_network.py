"""An embedding network in ONNX (ArcFace / CosFace / MobileFaceNet / AdaFace / SFace fp32) through
ONNX Runtime, fed by its catalogue row's preprocessing (the table in models/embedders/__init__.py).

Vectors come back raw (the pipeline L2-normalises). AdaFace's network returns (feature / |feature|,
|feature|); when its ONNX export has that second (n, 1) output the raw feature is rebuilt from both.
On CPU every session runs on one thread: the worker pool is where the parallelism is, and a vector
must not depend on how many threads computed it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesieve.embed import AlignedInput
from facesieve.models.preprocessing import Preprocessing


class OnnxEmbedder(AlignedInput):
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
        items = self.crop_batch(crops)
        out = np.zeros((len(items), self.dim), np.float32)
        for s in range(0, len(items), self.MAX_BATCH):
            out[s : s + self.MAX_BATCH] = self._forward(self.preprocessing(items[s : s + self.MAX_BATCH]))
        return out
