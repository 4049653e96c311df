"""A contact sheet of the pairs a duplicate run grouped, for a person to check by eye.

    python bench/dup_contact_sheet.py --set orl_att40 --out docs/img/orl_merged_pairs.png [--root /tmp/bench15]

Reads the run bench_duplicates.py leaves under ROOT (the set's workspace and its pair scores) and
draws every pair of two different original photos (no injected copy) that the shipped rule groups
by default (the near-identical-shot cut, the neighbour-ratio, hash, small-face, face-in-background or face-fit rule, samephoto.grouped), lowest
score first, with the score under each pair.

    python bench/dup_contact_sheet.py --bursts --out docs/img/bursts_vs_orl.png

instead draws each candidate pair of pins_web's README bursts (consecutive frames, to be grouped
as near-identical shots) beside the ORL pair of distinct photos (to be kept apart) whose crop score
is nearest, so a person can judge whether any score separates the two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_duplicates import labels, pair_table  # noqa: E402

from facesieve.imaging import load_rgb  # noqa: E402
from facesieve.select.samephoto import Cuts, grouped  # noqa: E402
from facesieve.select.thresholds import (ANCHOR_MATCHES, ANCHOR_MOTION_CUT, ANCHOR_SCORE_CUT, COARSE_CUT, FACE_FIT_CUT,  # noqa: E402
                                         FACE_MATCHES, FACE_SCORE_CUT, HASH_BITS,
                                         HASH_SCORE_CUT, LONE_CUT, RARE_BITS, RARE_FLOOR, RARE_SCORE_CUT, RATIO_CUT, RATIO_SCORE_CUT,
                                         SAME_PHOTO_CUT, SHOT_CUT, WEB_FLOOR, WEB_MATCHES, WEB_MOTION_CUT,
                                         WEB_SCORE_CUT, WEB_SCORE_FLOOR)


def sheet(pairs: list[tuple[Path, Path, str]], cell: int = 96, cols: int = 4) -> Image.Image:
    rows = max(1, -(-len(pairs) // cols))
    out = Image.new("RGB", (cols * (2 * cell + 12), rows * (cell + 16)), "white")
    draw = ImageDraw.Draw(out)
    for n, (a, b, text) in enumerate(pairs):
        x, y = (n % cols) * (2 * cell + 12), (n // cols) * (cell + 16)
        for k, p in enumerate((a, b)):
            img = Image.fromarray(load_rgb(p))
            img.thumbnail((cell, cell))
            out.paste(img, (x + k * cell, y))
        draw.text((x + 2, y + cell + 2), text, fill="black")
    return out


def bursts_sheet(root: Path, out: Path) -> int:
    """pins_web's README burst pairs that are candidates (its photos only, not the bench's copies of
    them), each beside ORL's distinct pair whose score is nearest."""
    import numpy as np

    bursts = pair_table(root, "pins_web")
    copies = labels(root, "pins_web")[1].copy_paths  # a copy of a burst photo is one of the burst too: left out
    bursts = bursts[(bursts["relation"] == "burst") & ~bursts["a"].isin(copies) & ~bursts["b"].isin(copies)].sort_values("score")
    orl = pair_table(root, "orl_att40")
    orl = orl[orl["relation"] == "distinct"].sort_values("score")
    at = np.clip(np.searchsorted(orl["score"].to_numpy(), bursts["score"].to_numpy()), 0, len(orl) - 1)
    pairs = []
    for (a, b, s), k in zip(zip(bursts["a"], bursts["b"], bursts["score"]), at):
        o = orl.iloc[k]
        pairs.append((root / "data" / "pins_web" / a, root / "data" / "pins_web" / b, f"burst {Path(a).stem[-7:]}~{Path(b).stem[-3:]} {s:.4f}"))
        pairs.append((root / "data" / "orl_att40" / o["a"], root / "data" / "orl_att40" / o["b"],
                      f"ORL distinct {Path(o['a']).parent.name} {o['score']:.4f}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet(pairs, cols=2).convert("L").save(out, optimize=True)
    below = [int((orl["score"] <= s).sum()) for s in bursts["score"]]
    print(f"{len(bursts)} burst pairs (scores {bursts['score'].min():.4f}-{bursts['score'].max():.4f}); ORL distinct pairs "
          f"at or under each: {below} of {len(orl)} -> {out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/tmp/bench15"))
    ap.add_argument("--set", default="orl_att40")
    ap.add_argument("--cut", type=float, default=SHOT_CUT)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bursts", action="store_true", help="README burst pairs beside ORL's distinct pairs of the nearest score")
    args = ap.parse_args()
    if args.bursts:
        return bursts_sheet(args.root, args.out)
    t = pair_table(args.root, args.set)
    copies, photos = labels(args.root, args.set)
    cuts = Cuts(SAME_PHOTO_CUT, args.cut, RATIO_SCORE_CUT, RATIO_CUT, LONE_CUT, HASH_SCORE_CUT, HASH_BITS, COARSE_CUT,
                ANCHOR_SCORE_CUT, ANCHOR_MOTION_CUT, ANCHOR_MATCHES, FACE_SCORE_CUT, FACE_FIT_CUT, FACE_MATCHES,
                RARE_SCORE_CUT, RARE_BITS, RARE_FLOOR, WEB_MOTION_CUT, WEB_FLOOR, WEB_MATCHES, WEB_SCORE_CUT, WEB_SCORE_FLOOR)
    motion = (t["motion"], t["n_face"], t["n_back"], t["face_fit"])
    t = t[(t["relation"] != "same") & grouped(t["score"], t["ratio"], args.cut, cuts, t["hash_bits"], t["side"], motion, t["floor"])]
    t = t[~t["a"].isin(photos.copy_paths) & ~t["b"].isin(photos.copy_paths)].sort_values("score")
    data = args.root / "data" / args.set
    pairs = [(data / a, data / b, f"{Path(a).parent.name} {Path(a).stem}~{Path(b).stem} {s:.4f}")
             for a, b, s in zip(t["a"], t["b"], t["score"])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet(pairs).convert("L").save(args.out, optimize=True)
    print(f"{len(pairs)} pairs grouped (shot cut {args.cut}, ratio rule {RATIO_SCORE_CUT}/{RATIO_CUT}/{LONE_CUT}, hash rule {HASH_SCORE_CUT} at {HASH_BITS} bits, small-face cut {COARSE_CUT}, "
          f"face in its background {ANCHOR_SCORE_CUT}/{ANCHOR_MOTION_CUT}/{ANCHOR_MATCHES}, "
          f"face fit {FACE_SCORE_CUT}/{FACE_FIT_CUT}/{FACE_MATCHES}, rare hashes {RARE_SCORE_CUT} at {RARE_BITS} bits, floor {RARE_FLOOR}, "
          f"background among web photos {WEB_MOTION_CUT}/{WEB_MATCHES} at floor {WEB_FLOOR}, "
          f"crop score among web photos {WEB_SCORE_CUT} at floor {WEB_SCORE_FLOOR}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
