"""CPU time per pair of the face-crop test (samephoto.pair_scores) on a run's real pairs, against
the same function of another checkout, in one process, alternating.

    python -m facesieve run PHOTOS --out OUT            # any default run: it stores the pairs
    python bench/bench_pair_cost.py OUT --baseline /path/to/other/checkout

Reads OUT's workspace: the faces stage's aligned crops and the pairs its duplicate stage scored
(pair-scores-*.parquet). Both implementations score the same pairs from the same prepared views
(each face's grey, blurred, reduced crop, built once before timing; with `--cold`, each run
builds its own with its own tree's FaceViews and the time includes them), one thread, `--repeat`
times each in alternating order; prints the median and lowest CPU ms per pair of each, their
ratio, and whether the two gave identical scores (and the stored ones).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load(name: str, tree: Path):
    """facesieve/select/samephoto.py of `tree`, imported under `name`."""
    spec = importlib.util.spec_from_file_location(name, tree / "facesieve" / "select" / "samephoto.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_pairs(workspace: Path, n: int):
    """(crops, landmarks, widths, heights, i, j, stored scores) of up to n scored pairs."""
    from facesieve.pipeline import _pair_cache_name
    from facesieve.select.samephoto import KEYPOINTS_FROM, SCORE_VERSION
    from facesieve.stages import LANDMARK_COLUMNS

    (stage,) = [p for p in workspace.iterdir() if p.name.startswith("faces-")]
    parts = sorted(stage.glob("part-*.parquet"))
    table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    crops = np.concatenate([np.load(p.with_suffix(".crops.npy")) for p in parts])
    # the pairs a run of this version stored, or of the previous one (then its scores are the old code's)
    stored = pd.read_parquet(next(p for v in (SCORE_VERSION, KEYPOINTS_FROM) if (p := workspace / _pair_cache_name(v)).exists()))
    # a key once (two files with the same bytes, a lossless re-save of a PNG, have one key and a row
    # each); a repeated key would pair stored scores with the wrong rows
    first = ~table["key"].duplicated().to_numpy()
    row = pd.Series(np.flatnonzero(first), index=table["key"].to_numpy()[first])
    stored = stored[stored["key_a"].isin(row.index) & stored["key_b"].isin(row.index)].iloc[:n]
    lm = table[LANDMARK_COLUMNS].to_numpy(np.float64)
    return (crops, lm, table["width"].to_numpy(np.float64), table["height"].to_numpy(np.float64),
            row[stored["key_a"]].to_numpy(), row[stored["key_b"]].to_numpy(), stored["score"].to_numpy())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="a run's output folder (its .facesieve workspace is read) or a workspace")
    ap.add_argument("--baseline", type=Path, required=True, help="another checkout of facesieve")
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--cold", action="store_true",
                    help="each run makes its own views and masks (each tree's FaceViews, new every run): their cost is "
                         "timed with the scores, as in a run's first duplicate stage")
    args = ap.parse_args()
    workspace = args.out / ".facesieve" if (args.out / ".facesieve").is_dir() else args.out
    crops, lm, w, h, i, j, stored = run_pairs(workspace, args.pairs)
    mods = {"baseline": load("samephoto_baseline", args.baseline), "this tree": load("samephoto_this", REPO)}
    views = mods["this tree"].FaceViews(crops, mods["this tree"].face_scale(lm), (lm, w, h))
    mods["this tree"].pair_scores(views, i, j)  # builds every view the pairs use
    times: dict[str, list[float]] = {k: [] for k in mods}
    scores = {}
    for r in range(args.repeat):
        for name in (list(mods) if r % 2 == 0 else list(mods)[::-1]):
            t = time.process_time()
            used = mods[name].FaceViews(crops, mods[name].face_scale(lm), (lm, w, h)) if args.cold else views
            scores[name] = mods[name].pair_scores(used, i, j)
            times[name].append(time.process_time() - t)
    for name, ts in times.items():
        print(f"{name}: CPU ms a pair, median {1000 * statistics.median(ts) / len(i):.3f}, lowest {1000 * min(ts) / len(i):.3f} "
              f"({len(i)} pairs x {args.repeat})")
    print(f"this tree / baseline (medians): {statistics.median(times['this tree']) / statistics.median(times['baseline']):.3f}; "
          f"scores identical: {np.array_equal(scores['this tree'], scores['baseline'])}, "
          f"equal to the stored ones: {np.array_equal(scores['this tree'], stored)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
