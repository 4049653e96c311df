"""Embedding cost per face by inference batch size, and the memory one batch takes (run by hand):
why the local engine embeds each worker's small chunk rather than large batches (docs/scale.md).

    python bench/bench_batch.py --sizes 8 64 --faces 128 [--embedder sface] [--repeat 5]

Real aligned faces of ../shared/data (bench_quality.py's mix). Each batch size runs in its own
process, on one thread (as the engine's workers run models): CPU ms per face (best of --repeat
passes over all faces, after a warm-up), and the peak resident memory added by one call with a
batch of that size (Linux VmHWM, reset before the call).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decide import _peak, _reset_peak  # noqa: E402


def child(crops_file: str, embedder_name: str, size: int, repeat: int) -> dict:
    from facesieve.parallel import one_thread
    from facesieve.stages import embedder

    crops = np.load(crops_file)
    emb = embedder(embedder_name)
    inputs = np.stack([np.asarray(emb.prepare(None, None, c), np.uint8) for c in crops])
    with one_thread():
        emb.embed_batch(inputs[:2])  # load and warm the model
        base = _reset_peak()
        emb.embed_batch(inputs[:size])
        added = max(_peak() - base, 0)
        best = float("inf")
        for _ in range(repeat):
            c = time.process_time()
            for s in range(0, len(inputs) - size + 1, size):  # whole batches only
                emb.embed_batch(inputs[s : s + size])
            best = min(best, time.process_time() - c)
    faces = (len(inputs) // size) * size
    return {"batch": size, "faces": faces, "cpu_ms_per_face": round(1e3 * best / faces, 2),
            "batch_peak_mib": round(added / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--faces", type=int, default=128)
    ap.add_argument("--embedder", default="sface", choices=("sface",), help="embedders that take the aligned crop")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.embedder, int(args.child[1]), args.repeat)))
        return 0
    from bench_quality import faces

    crops, _, _ = faces(args.faces)
    with tempfile.TemporaryDirectory(prefix="facesieve-batch-") as tmp:
        f = Path(tmp) / "crops.npy"
        np.save(f, crops)
        rows = []
        for size in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--embedder", args.embedder, "--repeat", str(args.repeat),
                                  "--child", str(f), str(size)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{args.embedder} batch {size:>4}: {rows[-1]['cpu_ms_per_face']:6.2f} ms CPU per face "
                  f"({rows[-1]['faces']} faces, best of {args.repeat}); one batch adds {rows[-1]['batch_peak_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
