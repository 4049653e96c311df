"""Injected near-copies on whole shared sets: recall, precision, originals lost (run by hand).

    python bench/bench_duplicates.py --sets orl_att40,deepface13 --copies 150 [--embedder sface] [--no-pixel-check]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


from facesieve.config import RunConfig
from facesieve.evaluate.injection import build_injected, set_sources, score_injection
from facesieve.pipeline import run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--sets", default="orl_att40,deepface13")
    ap.add_argument("--copies", type=int, default=200)
    ap.add_argument("--detector", default="yunet")
    ap.add_argument("--embedder", default="sface")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-pixel-check", action="store_true", help="the hash rule instead of the pixel copy check")
    args = ap.parse_args()
    sources = set_sources(args.data, args.sets.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        injected = build_injected(sources, data, args.copies, args.seed)
        res = run(RunConfig(dataset=data, out=Path(tmp) / "out", detector=args.detector, embedder=args.embedder, report=False,
                                  pixel_check=not args.no_pixel_check))
        m = res.manifest
        score = score_injection(m, injected)
        for s in args.sets.split(","):
            sub = m[m["identity"].str.startswith(s + "__")]
            sub_inj = injected[injected["path"].str.startswith(s + "__")]
            print(s, json.dumps({k: v for k, v in score_injection(sub, sub_inj).items() if k != "lost"}))
    print("all", json.dumps({k: v for k, v in score.items() if k != "lost"}))
    print("originals lost:", score["lost"])
    print("pixel check:", res.summary["pixel_check"], "decide", res.summary["stage_seconds"].get("decide"), "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
