"""Calibrate an embedder's cosine / hash thresholds on ../shared/data (run by hand).

Prints, as markdown, the tables of docs/thresholds.md ("Cosine thresholds" and "dlib"), through the
real detect -> align -> embed path:
- same photo: each sampled real photo against near-copies of itself (facesieve/augment.py
  COPY_KINDS: JPEG q30-90, resize 0.5-2x, 5% crop, flip, brightness +-10-20%, rotation 2-6 degrees):
  cosine and mirror-invariant whole-image pHash distance per copy kind;
- distinct photos: every pair of different sampled photos of one person, per set (sets of video
  frames or crops of one source, essex_faces94_19 and seed_vggface, are reported apart);
- the rules tried, the embedder's shipped rule among them: copies found, distinct pairs merged per set;
- identity overlap: cosine of identity mean embeddings (crossid.identity_means) over every identity
  of each set, distinct people's maximum against one person's two halves, and the shipped cut.

    python bench/calibrate_thresholds.py --embedder sface --per-set 100 --overlap-per-id 10
    python bench/calibrate_thresholds.py --embedder dlib --detector dlib-hog --per-set 20 --overlap-per-id 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

from facesieve.augment import COPY_KINDS, near_copy
from facesieve.faces.align import align
from facesieve.faces.detect import pick_face
from facesieve.imaging import image_hashes, load_rgb
from facesieve.models import zoo
from facesieve.models.zoo import for_embedder
from facesieve.select.crossid import identity_means
from facesieve.select.neardup import popcount64
from facesieve.vectors import l2_normalise

SETS = ("orl_att40", "deepface13", "yaleB_cropped10")
# same-person pairs there are not distinct photos: video frames, crops of one source photo
APART = ("essex_faces94_19", "seed_vggface/dataset")
OVERLAP_SETS = (*SETS, *APART)
IMAGE_EXT = (".jpg", ".jpeg", ".pgm", ".png")

# Rules tried per embedder: (cosine cut, pHash bits or None, cosine floor of the hash rule).
RULES = {
    "sface": [(0.96, 2, 0.85), (0.97, 2, 0.85), (0.975, 2, 0.85), (0.97, 6, 0.85), (0.97, None, None)],
    "dlib": [(0.98, None, None), (0.99, 2, 0.95), (0.992, 2, 0.95), (0.995, 2, 0.95), (0.995, None, None)],
}


def set_files(data: Path, s: str) -> dict[str, list[Path]]:
    """Identity -> its image files, sorted."""
    files = sorted(p for p in (data / s).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT)
    out: dict[str, list[Path]] = {}
    for p in files:
        out.setdefault(p.parent.name, []).append(p)
    return out


def sample_files(data: Path, per_set: int, per_identity: int, rng: np.random.Generator, sets) -> list[tuple[str, str, Path]]:
    """Whole identities (up to per_identity photos each) until per_set photos, so distinct pairs exist."""
    out = []
    for s in sets:
        by_id = set_files(data, s)
        ids = sorted(by_id)
        rng.shuffle(ids)
        chosen: list[Path] = []
        for i in ids:
            chosen += by_id[i][:per_identity]
            if len(chosen) >= per_set:
                break
        out += [(s, p.parent.name, p) for p in chosen[:per_set]]
    return out


class Face:
    """The faces stage in small: the main face, aligned, embedded (unit length)."""

    def __init__(self, detector: str, embedder: str):
        self.det = zoo.build_detector(detector)
        self.emb = zoo.build_embedder(embedder)

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        dets = self.det.detect(rgb)
        if not dets:
            return None
        d = dets[pick_face(dets, rgb.shape[:2])]
        x = self.emb.prepare(rgb, d, align(rgb, d.landmarks))
        return l2_normalise(self.emb.embed_batch(np.asarray([x])).astype(np.float64))[0]


def ham(a: int, b: int) -> int:
    return int(popcount64(np.array([a ^ b], dtype=np.uint64))[0])


def short(s: str) -> str:
    return s.split("/")[0]


def rule_name(rule) -> str:
    t, bits, floor = rule
    return f"cos ≥ {t:g}" + (f", or cos ≥ {floor:g} and pHash ≤ {bits}" if bits is not None else " alone")


def merged(cos: np.ndarray, bits: np.ndarray, rule) -> np.ndarray:
    t, b, floor = rule
    hit = cos >= t
    return hit | ((bits <= b) & (cos >= floor)) if b is not None else hit


def overlap_table(face: Face, data: Path, sets, per_id: int, cut: float) -> list[str]:
    """Cosine of identity means: distinct people's maximum per set, one person's two halves' minimum."""
    lines = [f"| set | identities | photos embedded | distinct people's means: max | pairs ≥ {cut:g} | "
             f"one person's two halves: min | halves < {cut:g} |", "|---|---|---|---|---|---|---|"]
    for s in sets:
        vecs, ids, halves = [], [], []
        for ident, files in set_files(data, s).items():
            for n, p in enumerate(files[:per_id]):
                v = face(load_rgb(p))
                if v is not None:
                    vecs.append(v)
                    ids.append(ident)
                    halves.append(f"{ident}\0{n % 2}")
        if not vecs:
            continue
        E = np.asarray(vecs, np.float32)
        means, _, _ = identity_means(E, np.asarray(ids))
        sim = means @ means.T
        iu = np.triu_indices(len(means), 1)
        other = sim[iu]
        hm, hl, _ = identity_means(E, np.asarray(halves))
        owner = np.array([h.split("\0")[0] for h in hl])
        same = [float(hm[a] @ hm[b]) for a, b in combinations(range(len(hl)), 2) if owner[a] == owner[b]]
        lines.append(f"| {short(s)} | {len(means)} | {len(vecs)} | {other.max():.3f} | {(other >= cut).sum()} of {len(other)} | "
                     f"{min(same):.3f} | {sum(x < cut for x in same)} of {len(same)} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data",
                    help="the shared sets (default: %(default)s)")
    ap.add_argument("--embedder", default="sface", help="default: %(default)s")
    ap.add_argument("--detector", default="yunet", help="default: %(default)s")
    ap.add_argument("--per-set", type=int, default=40, help="photos sampled per set (default: %(default)s)")
    ap.add_argument("--per-identity", type=int, default=10, help="at most this many photos of one identity (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    ap.add_argument("--sets", default=",".join(SETS), help="sets for copies and distinct pairs (default: %(default)s; "
                    f"{', '.join(APART)} are reported apart)")
    ap.add_argument("--overlap-sets", default=",".join(OVERLAP_SETS), help="sets for the identity-overlap table "
                    "('' to skip; default: %(default)s)")
    ap.add_argument("--overlap-per-id", type=int, default=6, help="photos embedded per identity there (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=None, help="write the raw distributions here")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    face = Face(args.detector, args.embedder)
    base = args.embedder.split(":", 1)[0]
    try:
        shipped = for_embedder(base)
    except KeyError:
        shipped = None
    sets = [s for s in args.sets.split(",") if s]
    t0 = time.perf_counter()
    records = []  # (set, identity, vec, phash, phash_mirror)
    copies = []  # (set, kind, cos, hamming(mirror-invariant)); cos NaN: no face found in the copy
    sample = sample_files(args.data, args.per_set, args.per_identity, rng, sets)
    for n, (s, ident, path) in enumerate(sample, 1):
        print(f"\r{n}/{len(sample)} photos", end="", file=sys.stderr, flush=True)
        rgb = load_rgb(path)
        v = face(rgb)
        if v is None:
            continue
        h, _, hm = image_hashes(rgb)  # whole image, as the faces stage stores them
        records.append((s, ident, v, h, hm))
        for kind in COPY_KINDS:
            copy = near_copy(rgb, kind, rng)
            cv = face(copy)
            ch = image_hashes(copy)[0]
            copies.append((s, kind, float(v @ cv) if cv is not None else np.nan, min(ham(h, ch), ham(hm, ch))))
    print(file=sys.stderr)
    distinct = []  # (set, cos, hamming)
    by_id: dict[tuple[str, str], list[int]] = {}
    for n, r in enumerate(records):
        by_id.setdefault((r[0], r[1]), []).append(n)
    for (s, _), idx in by_id.items():
        for a, b in combinations(idx, 2):
            ra, rb = records[a], records[b]
            distinct.append((s, float(ra[2] @ rb[2]), min(ham(ra[3], rb[3]), ham(ra[4], rb[3]))))
    secs = time.perf_counter() - t0

    cmd = "python bench/calibrate_thresholds.py " + " ".join(sys.argv[1:])
    cc = np.array([c[2] for c in copies], float)
    ch = np.array([c[3] for c in copies], float)
    found = ~np.isnan(cc)
    dset = np.array([d[0] for d in distinct])
    dist_sets = [s for s in sets if s not in APART]
    keep = np.isin(dset, dist_sets)
    dc, dh = np.array([d[1] for d in distinct], float), np.array([d[2] for d in distinct], float)
    pairs = {s: int((dset == s).sum()) for s in sets}
    print(f"`{cmd}` ({secs:.0f} s)\n")
    print(f"{args.detector} + {args.embedder}: {len(records)} photos with a face (of {len(sample)} sampled), "
          f"{len(copies)} near-copies ({(~found).sum()} with no face found), {keep.sum()} distinct same-person pairs "
          f"({', '.join(f'{short(s)} {pairs[s]}' for s in dist_sets)})"
          + "".join(f"; {short(s)} {pairs[s]} pairs reported apart" for s in sets if s in APART) + "\n")

    print("| copy kind | cosine to its source: min / p5 / median | pHash bits (mirror-invariant): median / p95 | no face |")
    print("|---|---|---|---|")
    for kind in COPY_KINDS:
        k = np.array([c[1] == kind for c in copies])
        kc = cc[k & found]
        print(f"| {kind} | {kc.min():.3f} / {np.quantile(kc, .05):.3f} / {np.median(kc):.3f} | "
              f"{np.median(ch[k]):.0f} / {np.quantile(ch[k], .95):.0f} | {(k & ~found).sum()} |")
    print()
    print("| pairs | n | cosine p1 / p5 / median / p99 / max | pHash bits: min | at or above 0.90 |")
    print("|---|---|---|---|---|")
    print(f"| copies | {found.sum()} | " + " / ".join(f"{x:.3f}" for x in np.quantile(cc[found], [0.01, 0.05, 0.5, 0.99, 1.0]))
          + f" | {ch[found].min():.0f} | {(cc[found] >= 0.9).mean():.1%} |")
    for name, m in [("distinct, all", keep)] + [(f"distinct, {short(s)}", dset == s) for s in sets]:
        if m.sum():
            print(f"| {name} | {m.sum()} | " + " / ".join(f"{x:.3f}" for x in np.quantile(dc[m], [0.01, 0.05, 0.5, 0.99, 1.0]))
                  + f" | {dh[m].min():.0f} | {(dc[m] >= 0.9).mean():.1%} |")
    print()

    rules = list(RULES.get(base, []))
    if shipped is not None:
        mine = (shipped.near_duplicate, shipped.phash_max_bits, shipped.phash_min_sim)
        if mine not in rules:
            rules.append(mine)
    if not rules:  # an embedder with no defaults: cuts at the copies' own quantiles
        rules = [(round(float(np.quantile(cc[found], q)), 3), None, None) for q in (0.01, 0.05, 0.10)]
    print(f"| rule | copies found (of {found.sum()} with a face) | distinct pairs merged ("
          + " / ".join(f"{short(s)} of {pairs[s]}" for s in dist_sets) + ") |")
    print("|---|---|---|")
    for rule in rules:
        name = rule_name(rule) + (" (shipped)" if shipped is not None and rule == mine else "")
        per = [int(merged(dc[dset == s], dh[dset == s], rule).sum()) for s in dist_sets]
        print(f"| {name} | {merged(cc[found], ch[found], rule).mean():.3f} | {sum(per)} ({' / '.join(map(str, per))}) |")
    print()

    osets = [s for s in args.overlap_sets.split(",") if s]
    if osets:
        cut = shipped.identity_overlap if shipped is not None else 0.8
        t1 = time.perf_counter()
        lines = overlap_table(face, args.data, osets, args.overlap_per_id, cut)
        print(f"Identity overlap (cosine of identity means; up to {args.overlap_per_id} photos per identity, "
              f"halves by alternate photos; {'shipped' if shipped is not None else 'example'} cut {cut:g}; "
              f"{time.perf_counter() - t1:.0f} s):\n")
        print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"copies": copies, "distinct": distinct}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
