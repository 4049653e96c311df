"""EDC of the default quality on the shared sets (run by hand): `offline` (embedding norm) against
`offline-full` (perturbation robustness), and the leave-one-set-out choice of the norm's width.

    python bench/bench_quality_edc.py [--sets orl_att40,deepface13,...] [--workspace-root DIR]

For every set: `facesieve evaluate edc`'s figures (FMR 1e-3, all pairs, pAUC up to 30% discarded,
pAUC_rel = pAUC / (0.3 x FNMR at 0 discard): random about 1, lower is better) for offline,
offline-full, robustness, image and uniform. The faces, embeddings and scores are cached in each
set's evaluation workspace (docs/evaluate.md), so `facesieve evaluate edc ../shared/data/SET
--quality offline --quality offline-full` afterwards prints the same figures without recomputing.

Then the width w of s_norm = 1 / (1 + exp(-(N - 11) / w)): for each set where some genuine pair
fails (the others cannot rank methods), w is chosen from WIDTHS on the OTHER such sets (lowest mean
pAUC_rel) and that set's pAUC_rel is reported at the chosen w: a held-out figure, next to the
shipped w and offline-full. The centre (11) changes only the level of the score, not the order.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.evaluate.api import edc
from facesieve.evaluate.run import load_eval_set
from facesieve.quality import offline as C

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("orl_att40", "deepface13", "essex_faces94_19", "yaleB_cropped10", "pins_web", "celeb5_web")
METHODS = ("offline", "offline-full", "robustness", "image", "uniform")
WIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)


def width_variant(es, width: float) -> np.ndarray:
    """`offline` with another norm width, from the shipped score and the stored raw norm."""
    rest = es.quality["offline"] / C.norm_score(es.norm)
    return rest / (1.0 + np.exp(-(es.norm - C.NORM_CENTRE) / width))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated sets under ../shared/data (default: %(default)s)")
    ap.add_argument("--workspace-root", type=Path, default=None,
                    help="one workspace per set under this folder (default: facesieve evaluate's own, shared with it)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows, grid = [], {}
    for name in args.sets.split(","):
        ws = args.workspace_root / name if args.workspace_root else None
        es = load_eval_set(DATA / name, qualities=METHODS, jobs=args.jobs, workspace=ws)
        for w in WIDTHS:
            es.quality[f"w={w:g}"] = width_variant(es, w)
        res = edc(es, list(METHODS) + [f"w={w:g}" for w in WIDTHS])
        t = res.table.set_index("method")
        failing = round(float(t.loc["uniform", "fnmr_0"]) * res.counts["n_genuine"])
        row = {"set": name, "faces": int(es.valid.sum()), "genuine": res.counts["n_genuine"], "failing": failing}
        for m in METHODS:
            row[f"{m} pAUC"] = t.loc[m, "pauc"]
            row[f"{m} rel"] = t.loc[m, "pauc_rel"]
        rows.append(row)
        if failing:
            grid[name] = {w: float(t.loc[f"w={w:g}", "pauc_rel"]) for w in WIDTHS}
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print("EDC per set (FMR 1e-3, pAUC to 30% discarded; rel = pAUC / (0.3 x FNMR at 0), random ~ 1, empty when no pair fails)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    g = pd.DataFrame(grid)
    print("\npAUC_rel of offline by norm width (centre 11), sets with failing pairs:")
    print(g.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nleave one set out (w chosen on the other sets; shipped w = {C.NORM_WIDTH:g}):")
    by_set = table.set_index("set")
    for name in g.columns:
        others = [o for o in g.columns if o != name]
        chosen = g[others].mean(axis=1).idxmin() if others else C.NORM_WIDTH
        print(f"  {name:<18} chosen w {chosen:<5g} held-out pAUC_rel {g.loc[chosen, name]:.3f}   shipped w "
              f"{g.loc[C.NORM_WIDTH, name]:.3f}   offline-full {by_set.loc[name, 'offline-full rel']:.3f}")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
