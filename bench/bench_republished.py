"""One photo re-published many times: are all its copies grouped with it, or does the grouping
split them? (bench_duplicates.py injects one copy a photo; this asks about many.)

    python bench/bench_republished.py                       # 6 photos a web set, 10 copies each
    python bench/bench_republished.py --photos 4 --copies 12 --seed 1

Picks photos at random from pins_web, celeb5_web and deepface13 (../shared/data), copies each
photo's whole identity folder into ROOT/data, adds `--copies` web copies of the photo (every kind
in turn, composites included, saved as the web saves them: facesieve.augment), runs facesieve with
its defaults, and prints: the share of copies that end in their source's group, how many faces of
each photo are kept (1 is right), and the other photos removed as near-duplicates (a README
same-photo pair or a burst may be among them; they are listed, not judged).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dupdata import originals  # noqa: E402

from facesieve.augment import WEB_COPY_KINDS, web_bytes, web_copy  # noqa: E402
from facesieve.evaluate.injection import DUP_REASONS, kept_face  # noqa: E402
from facesieve.imaging import load_rgb  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WEB_SETS = ("pins_web", "celeb5_web", "deepface13")


def build(root: Path, photos: int, copies: int, seed: int) -> pd.DataFrame:
    """ROOT/data: the picked photos' identity folders and their copies; returns path, source, kind."""
    rng = np.random.default_rng(seed)
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    rows = []
    for name in WEB_SETS:
        files = originals(DATA, name)
        for pick in rng.choice(len(files), size=min(photos, len(files)), replace=False):
            src = files[pick]
            ident = f"{name}__{src.parent.name}"
            if not (data / ident).exists():
                shutil.copytree(src.parent, data / ident)
            rgb = load_rgb(src)
            for k in range(copies):
                kind = WEB_COPY_KINDS[len(rows) % len(WEB_COPY_KINDS)]  # every kind in turn, across photos
                data_bytes, suffix = web_bytes(web_copy(rgb, kind, rng)[0], kind, rng)
                out = f"{ident}/republished{k:02d}_{kind}_{src.stem}{suffix}"
                (data / out).write_bytes(data_bytes)
                rows.append((out, f"{ident}/{src.name}", kind))
    return pd.DataFrame(rows, columns=["path", "source", "kind"])


def kept_per_photo(group: dict[str, str], copies: pd.DataFrame) -> pd.Series:
    """How many faces each photo keeps (its source's and its copies' groups). 1 is right."""
    return pd.Series({s: len({group[p] for p in [s, *g["path"]] if p in group}) for s, g in copies.groupby("source")})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/tmp/bench_republished"), help="where the set and the run go (default: %(default)s)")
    ap.add_argument("--photos", type=int, default=6, help="photos picked from each web set (default: %(default)s)")
    ap.add_argument("--copies", type=int, default=10, help="web copies of each photo (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="which photos and copies (default: %(default)s)")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"no shared data at {DATA}")
    from facesieve.config import RunConfig
    from facesieve.pipeline import run

    copies = build(args.root, args.photos, args.copies, args.seed)
    shutil.rmtree(args.root / "out", ignore_errors=True)
    res = run(RunConfig(dataset=args.root / "data", out=args.root / "out", report=False))
    manifest = res.manifest
    group = kept_face(manifest)
    copies["found"] = [group.get(c, c) == group.get(s, s) for c, s in zip(copies["path"], copies["source"])]
    kept = kept_per_photo(group, copies)
    print(f"{len(kept)} photos x {args.copies} copies, {len(manifest)} files; copies in their source's group: "
          f"{copies['found'].mean():.3f} ({copies['found'].sum()} of {len(copies)})")
    print("by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in copies.groupby("kind")["found"].mean().items()))
    print("faces kept a photo (photos): " + ", ".join(f"{n}: {c}" for n, c in sorted(kept.value_counts().items())))
    sources = set(copies["source"])
    others = manifest[~manifest["path"].isin(set(copies["path"]) | sources)
                      & manifest["reason"].isin(DUP_REASONS)]
    print(f"other photos removed as duplicates: {len(others)} of {len(manifest) - len(copies) - len(sources)}")
    for p, d, why in zip(others["path"], others["duplicate_of"], others["detail"]):
        print(f"  {p} -> {d} ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
