"""The bundled SFace int8 model on OpenCV's DNN (what facesieve runs) against ONNX Runtime, on the
same file, one thread each: CPU milliseconds per face and how far the vectors differ.

    python bench/bench_runtime.py
    python bench/bench_runtime.py --faces 64 --repeat 5 --batch 16

The model stores its weights as int8 blocks with DequantizeLinear nodes (weight-only
quantisation: the convolutions run in float32 on both runtimes). ONNX Runtime refuses the file
as shipped (its weights are also listed as graph inputs, and the batch is fixed at 1), so the
graph is loaded with those inputs dropped and a free batch size; nothing else changes. A third
variant has the DequantizeLinear nodes folded into float32 weights, run on OpenCV: it says
whether dequantising on every call costs anything. Crops are real faces (ORL, aligned by YuNet).
Needs the `onnx` package (facesieve's torch extra installs it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def crops(n: int) -> np.ndarray:
    """n aligned 112x112 RGB face crops from orl_att40."""
    from facesieve.faces.align import align
    from facesieve.faces.detect import pick_face
    from facesieve.models.detectors.yunet import YuNetDetector
    from facesieve.imaging import load_rgb

    det, out = YuNetDetector(), []
    for p in sorted(SHARED.glob("orl_att40/*/*.pgm")):
        rgb = load_rgb(p)
        faces = det.detect(rgb)
        if faces:
            out.append(align(rgb, faces[pick_face(faces, rgb.shape)].landmarks, 112))
        if len(out) == n:
            break
    return np.stack(out)


def ort_model(path: str, fold: bool = False) -> bytes:
    """The model as ONNX Runtime can load it: only `data` as graph input, its batch free; with
    `fold`, DequantizeLinear nodes replaced by their float32 weights."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(path)
    g = m.graph
    del g.input[1:]
    for v in (g.input[0], g.output[0]):
        d = v.type.tensor_type.shape.dim[0]
        d.ClearField("dim_value")
        d.dim_param = "n"
    if fold:
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for node in [n for n in g.node if n.op_type == "DequantizeLinear"]:
            attr = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            q, s = inits[node.input[0]].astype(np.float32), inits[node.input[1]].astype(np.float32)
            z = inits[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(s)
            axis, block = attr.get("axis", 1), attr.get("block_size", 0)
            if block:
                s, z = (np.repeat(a, block, axis=axis).take(np.arange(q.shape[axis]), axis=axis) for a in (s, z))
            g.node.remove(node)
            g.initializer.append(numpy_helper.from_array(((q - z) * s).astype(np.float32), node.output[0]))
    return m.SerializeToString()


def cpu_ms_per_face(run, blob: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    out = run(blob)  # first call: allocations and kernels chosen, outside the timing
    c0 = time.process_time()
    for _ in range(repeat):
        out = run(blob)
    return 1e3 * (time.process_time() - c0) / (repeat * len(blob)), np.asarray(out).reshape(len(blob), -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=32, help="face crops (default: 32)")
    ap.add_argument("--batch", type=int, default=16, help="faces per inference call (default: 16, the engine's)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the faces (default: 3)")
    args = ap.parse_args()
    import onnxruntime as ort

    from facesieve.models.bundled import sface_path

    path = str(sface_path())
    faces = crops(args.faces)
    blob = cv2.dnn.blobFromImages(list(faces[: args.batch]), 1.0, (112, 112), (0, 0, 0), swapRB=False, crop=False)
    cv2.setNumThreads(1)

    def opencv(model):
        net = cv2.dnn.readNetFromONNX(model) if isinstance(model, str) else cv2.dnn.readNetFromONNX(np.frombuffer(model, np.uint8))

        def run(b):
            net.setInput(b, "data")
            return net.forward()
        return run

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(ort_model(path), so, providers=["CPUExecutionProvider"])
    sess_folded = ort.InferenceSession(ort_model(path, fold=True), so, providers=["CPUExecutionProvider"])
    variants = {
        "OpenCV DNN (facesieve)": opencv(path),
        "OpenCV DNN, weights pre-dequantised": opencv(ort_model(path, fold=True)),
        "ONNX Runtime": lambda b: sess.run(None, {"data": b})[0],
        "ONNX Runtime, weights pre-dequantised": lambda b: sess_folded.run(None, {"data": b})[0],
    }
    ref, base = None, None
    print(f"SFace int8 ({Path(path).name}), one thread, batch {len(blob)}, {args.repeat} passes")
    for name, run in variants.items():
        ms, out = cpu_ms_per_face(run, blob, args.repeat)
        if ref is None:
            ref, base = out, ms
        print(f"  {name:40} {ms:6.2f} ms of CPU per face ({ms / base:.2f}x OpenCV); largest difference from OpenCV's "
              f"vector: {np.abs(out - ref).max():.1e} (its largest component {np.abs(ref).max():.2f})")


if __name__ == "__main__":
    main()
