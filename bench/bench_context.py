"""Experiment: does the face's context (hair outline, shoulders, background, frame edges) tell one
photo from another shot of the same sitting better than the face crop alone?

A same-photo copy agrees with its source beyond the face too: under the landmark similarity
transform everything around the face moves with it. Another shot of one sitting (ORL, bursts)
has the head moved against its background. For each candidate pair of bench_duplicates (its
cached pair tables), a context window of CONTEXT crop widths around the face is cut from each
image on a GRID-pixel grey grid (PIL JPEG draft decoding, cached per face under ROOT/ctx), and
scored the way the crop is scored: mirror-aware, tone-fitted (quadratic), trimmed residual over
the pixels inside both images, over the window's own contrast. Registered three ways (--mode):
by the landmarks alone, by the crop test's own refinement run on the windows, or by the crop
test's refined face registration carried to the window (scored on the ring around the face: the
head's motion against its background). Findings: docs/thresholds.md ("the face's context").

Then, leave-one-set-out at the pair level: on the other sets, a rule
  one photo = (shipped-style crop rule) AND context <= veto   OR   crop <= loose AND context <= ctx
is chosen within the same budgets as bench_duplicates, and the left-out set's copy pairs grouped
and distinct pairs grouped are printed beside the crop rule alone (same choice, context off).

    python bench/bench_context.py [--root /tmp/bench15] [--mode carried] [--context 1.5] [--min-valid 0.1]

(run bench/bench_duplicates.py first: it prepares the sets and their faces passes under ROOT).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_duplicates import (
    SAME_BUDGET,
    SETS,
    SLACK,
    SMALL,
    choose_cuts,
    faces_pass,
    set_config,
)

from facesieve.faces.align import similarity_transform, template
from facesieve.select.samephoto import (
    TRIM,
    Cuts,
    _contrast,
    _tone_residual,
    _trimmed_mean,
    grouped,
)

CONTEXT = 1.5  # window side, in aligned-crop widths (the crop is about 3.2 eye distances wide)
GRID = 64  # pixels a side
MIN_VALID = 0.1  # share of the window inside both images below which the pair has no context score
MODE = "carried"  # how the windows are registered (--mode)


def context_crop(path: Path, lm: np.ndarray, width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Grey GRIDxGRID window around the face (and its mask of pixels inside the image), decoding
    the image at the smallest JPEG draft scale that still has a pixel per grid pixel."""
    M = similarity_transform(lm.reshape(5, 2), template(112))  # image -> crop pixels
    crop_per_img = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    half = 56.0 * CONTEXT
    # grid <- crop: grid = (crop - (56 - half)) * GRID / (2 half)
    g = GRID / (2 * half)
    c = (GRID - 1) / 2.0 - 55.5 * g  # context pixel (GRID-1)/2 <-> crop 55.5, the crop grid's centre
    G = np.array([[g, 0, c], [0, g, c]])
    img_per_grid = 1.0 / (crop_per_img * g)
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("L", (max(1, int(width / max(img_per_grid, 1.0))), max(1, int(height / max(img_per_grid, 1.0)))))
        im = ImageOps.exif_transpose(im).convert("L")
        a = np.asarray(im, np.float32)
    sx, sy = a.shape[1] / width, a.shape[0] / height  # draft scale
    per = img_per_grid * sx  # decoded pixels per grid pixel
    if per > 1.5:  # area-reduce to about a pixel per grid pixel before warping
        f = 1.0 / per
        a = cv2.resize(a, (max(1, round(a.shape[1] * f)), max(1, round(a.shape[0] * f))), interpolation=cv2.INTER_AREA)
        sx, sy = a.shape[1] / width, a.shape[0] / height
    S = np.array([[1 / sx, 0, 0], [0, 1 / sy, 0], [0, 0, 1]])  # decoded -> image pixels
    W = np.vstack([G, [0, 0, 1]]) @ np.vstack([M, [0, 0, 1]]) @ S
    win = cv2.warpAffine(a, W[:2], (GRID, GRID), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones_like(a), W[:2], (GRID, GRID), flags=cv2.INTER_NEAREST, borderValue=0)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8))
    return win, inside


def context_scores(C: np.ndarray, Mk: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Tone-fitted trimmed residual of window j onto window i, plain or mirrored (the lower), over
    the window's contrast; NaN where too little of the window lies inside both images."""
    out = np.full(i.size, np.inf)
    A = C[i].reshape(i.size, -1)
    MA = Mk[i].reshape(i.size, -1) > 0.5
    for mirror in (False, True):
        B, MB = C[j], Mk[j]
        if mirror:
            B, MB = B[:, :, ::-1], MB[:, :, ::-1]
        B = B.reshape(i.size, -1)
        valid = MA & (MB.reshape(i.size, -1) > 0.5)
        few = valid.sum(axis=1) < MIN_VALID * valid.shape[1]
        valid[few] = True
        r = np.abs(_tone_residual(A, B, valid))
        lo, hi = _contrast(A, valid)
        s = _trimmed_mean(r, valid, TRIM) / np.maximum(hi - lo, 8.0)
        s[few] = np.nan
        out = np.fmin(out, s)
    out[~np.isfinite(out)] = np.nan
    return out


def registered_scores(C: np.ndarray, Mk: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The crop score's own test (samephoto._scores: mirror-aware, Lucas-Kanade affine refinement,
    tone fit, trimmed residual) on the context windows, with a thin border left out: one photo
    registers as a whole; another shot cannot bring both its head and its background into place."""
    from facesieve.select import samephoto as sp

    saved = sp.MARGIN
    sp.MARGIN = 0.05
    try:
        out = np.concatenate([sp._scores(C[i[s : s + 256]], C[j[s : s + 256]], Mk[i[s : s + 256]], Mk[j[s : s + 256]])
                              for s in range(0, i.size, 256)]) if i.size else np.zeros(0)
    finally:
        sp.MARGIN = saved
    return out


def face_fit(views, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crop test's registration of each pair (samephoto._scores' steps): the affine p (P, 6,
    in crop-grid pixels, centred), whether B was mirrored, and the crop grid's side."""
    from facesieve.select import samephoto as sp

    side = sp.pair_side(views.scales, a, b)
    P = np.zeros((a.size, 6))
    mir = np.zeros(a.size, bool)
    for L in np.unique(side):
        for s0 in range(0, int((side == L).sum()), 256):
            t = np.flatnonzero(side == L)[s0 : s0 + 256]
            A = np.stack([views.view(int(x), int(L)) for x in a[t]])
            B = np.stack([views.view(int(x), int(L)) for x in b[t]])
            MA = np.stack([views.mask(int(x), int(L)) for x in a[t]])
            MB = np.stack([views.mask(int(x), int(L)) for x in b[t]])
            n = t.size
            Bm, MBm = np.ascontiguousarray(B[:, :, ::-1]), np.ascontiguousarray(MB[:, :, ::-1])
            p, r = sp._coarse_fit(np.concatenate([A, A]), np.concatenate([B, Bm]), np.concatenate([MA, MA]), np.concatenate([MB, MBm]))
            m = r[n:] < r[:n]
            B = np.where(m[:, None, None], Bm, B)
            MB = np.where(m[:, None, None], MBm, MB)
            P[t] = sp._refine(A, B, MA, MB, np.where(m[:, None], p[n:], p[:n]), sp.STEPS)
            mir[t] = m
    return P, mir, side


def carried_scores(C, Mk, i, j, p, mirror, side) -> np.ndarray:
    """Residual of window j onto window i under the face's own registration (the crop test's
    affine carried to the window, no refinement of its own), over the ring outside the face's
    comparison grid: the background, hair outline and shoulders of one photo stay in place, those
    of another shot have moved against the face."""
    from facesieve.select import samephoto as sp

    n = i.size
    k = (112.0 / side) / (112.0 * CONTEXT / GRID)  # context pixels per crop-grid pixel
    q = p.copy()
    q[:, [2, 5]] *= k[:, None]
    B, MB = C[j], Mk[j]
    B = np.where(mirror[:, None, None], B[:, :, ::-1], B)
    MB = np.where(mirror[:, None, None], MB[:, :, ::-1], MB)
    c = (GRID - 1) / 2.0
    ys, xs = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    X, Y = (xs - c).ravel(), (ys - c).ravel()
    inner = GRID * (1 - 2 * sp.MARGIN) / CONTEXT / 2  # half side of the face's comparison grid, context pixels
    ring = (np.abs(X) > inner) | (np.abs(Y) > inner)
    X, Y = X[ring], Y[ring]
    xb, yb = sp._points(q, X, Y, c)
    moved = sp._sample(np.ascontiguousarray(B, np.float32), xb, yb)[0]
    inb = (sp._sample(np.ascontiguousarray(MB, np.float32), xb, yb)[0] > 0.999) & (xb >= 0) & (xb <= GRID - 1) & (yb >= 0) & (yb <= GRID - 1)
    target = C[i].reshape(n, -1)[:, ring]
    valid = (Mk[i].reshape(n, -1)[:, ring] > 0.5) & inb
    few = valid.sum(axis=1) < MIN_VALID * ring.sum()
    valid[few] = True
    r = np.abs(_tone_residual(target, moved, valid))
    lo, hi = _contrast(target, valid)
    out = _trimmed_mean(r, valid, TRIM) / np.maximum(hi - lo, 8.0)
    out[few] = np.nan
    return out


def windows(root: Path, name: str) -> tuple[dict, float, int]:
    """path -> (window, mask) of every face of the set, cached in ROOT/ctx/<set>.pkl; the seconds
    it took to cut them (0 when cached) and the images decoded."""
    cache = root / "ctx" / f"{name}-{CONTEXT}-{GRID}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes()), 0.0, 0
    from facesieve import pipeline as pl

    config = set_config(root, name)
    frame, _, _ = faces_pass(config)
    check = pl.same_photo_check(config, frame, pl.decide_settings(config))  # the faces' landmarks and image sizes
    lm, w, h = check.views.geometry
    t = time.process_time()
    out = {}
    for p, r in zip(frame["path"], check.crop_row):
        if r >= 0 and np.isfinite(lm[r]).all():
            out[p] = context_crop(config.dataset / p, lm[r], float(w[r]), float(h[r]))
    took = time.process_time() - t
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out, took, len(out)


def main() -> int:
    global CONTEXT, GRID, MIN_VALID, MODE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/tmp/bench15"))
    ap.add_argument("--context", type=float, default=CONTEXT, help="window side in aligned-crop widths (default %(default)s)")
    ap.add_argument("--grid", type=int, default=GRID, help="window grid, pixels a side (default %(default)s)")
    ap.add_argument("--min-valid", type=float, default=MIN_VALID, help="share of the window inside both images a context score needs (default %(default)s)")
    ap.add_argument("--mode", choices=("landmarks", "registered", "carried"), default=MODE,
                    help="landmarks: windows registered by the landmarks alone; registered: the crop test itself on the windows "
                         "(its own refinement); carried: the crop test's face registration carried to the window, scored on the ring "
                         "around the face (default %(default)s)")
    args = ap.parse_args()
    CONTEXT, GRID, MIN_VALID, MODE = args.context, args.grid, args.min_valid, args.mode
    stored = args.root / "ctx" / "tables.pkl"
    if not stored.exists():  # bench_duplicates' candidate pairs with their crop scores and true relation
        from bench_duplicates import pair_table

        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(pickle.dumps({n: pair_table(args.root, n) for n in SETS + tuple(SMALL)}))
    tables = pickle.loads(stored.read_bytes())
    names = [n for n in SETS + tuple(SMALL) if n in tables]
    for n in names:
        t = tables[n]
        win, took, decoded = windows(args.root, n)
        ok = t["a"].isin(win) & t["b"].isin(win)
        t = t[ok].copy()
        paths = sorted(set(t["a"]) | set(t["b"]))
        pos = {p: k for k, p in enumerate(paths)}
        C = np.stack([win[p][0] for p in paths]) if paths else np.zeros((0, GRID, GRID), np.float32)
        Mk = np.stack([win[p][1] for p in paths]) if paths else np.zeros((0, GRID, GRID), np.float32)
        c0 = time.process_time()
        ia, ib = t["a"].map(pos).to_numpy(), t["b"].map(pos).to_numpy()
        if MODE == "carried":
            from facesieve import pipeline as pl

            config = set_config(args.root, n)
            frame, _, _ = faces_pass(config)
            check = pl.same_photo_check(config, frame, pl.decide_settings(config))
            row = dict(zip(frame["path"], check.crop_row))
            c1 = time.process_time()
            p, mirror, side = face_fit(check.views, t["a"].map(row).to_numpy(np.int64), t["b"].map(row).to_numpy(np.int64))
            c0 -= time.process_time() - c1  # the crop test's own fit is not the context's cost
            t["ctx"] = carried_scores(C, Mk, ia, ib, p, mirror, side)
        else:
            t["ctx"] = (registered_scores if MODE == "registered" else context_scores)(C, Mk, ia, ib) if len(t) else []
        per_pair = 1000 * (time.process_time() - c0) / max(len(t), 1)
        tables[n] = t
        g = t.groupby("relation")["ctx"]
        print(f"{n}: {len(t)} pairs, windows cut in {took:.1f} s CPU ({decoded} images decoded), {per_pair:.3f} ms CPU per pair; "
              + "; ".join(f"{r} n={len(v)} nan {v.isna().mean():.2f} p1 {v.quantile(.01):.4f} median {v.median():.4f} p99 {v.quantile(.99):.4f}"
                          for r, v in g), flush=True)
        s = t[t["relation"] == "same"]
        grouped_by_crop = rule(t, choose_cuts([tables[m] for m in names if SMALL.get(m, m) != SMALL.get(n, n)]), np.inf, 0.0, 0.0)
        for rel in ("distinct", "burst"):
            x = t.loc[grouped_by_crop & (t["relation"] == rel).to_numpy(), "ctx"]
            if len(x):
                print(f"   {rel} pairs the crop rule groups (left-out cuts): n={len(x)} nan {x.isna().sum()} ctx " + np.array2string(np.sort(x.to_numpy()).round(3), max_line_width=250))
        kinds = t[t["relation"] == "same"].groupby("kind")["ctx"]
        print("   same pairs ctx by kind (median/p95/nan): " + "; ".join(f"{k} {v.median():.3f}/{v.quantile(.95):.3f}/{v.isna().sum()}" for k, v in kinds))
        print("   same pairs ctx quantiles .5/.9/.95/.99: " + " ".join(f"{s['ctx'].quantile(q):.3f}" for q in (.5, .9, .95, .99)))
    (args.root / "ctx" / f"scored-{CONTEXT}-{GRID}-{MODE}.pkl").write_bytes(pickle.dumps(tables))
    loso(tables, names)
    return 0


VETO_GRID = (np.inf, 0.2, 0.15, 0.12, 0.1, 0.08, 0.06, 0.05, 0.04)
LOOSE_GRID = (0.0, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08)
CTX_GRID = (0.02, 0.03, 0.04, 0.05, 0.06, 0.08)


def rule(t: pd.DataFrame, cuts: tuple, veto: float, loose: float, ctx: float) -> np.ndarray:
    """Grouped (shot cut) by the crop rule, unless the context says another shot; or by a looser
    crop cut where the context agrees. A pair without a context score: the crop rule alone."""
    c = Cuts(*cuts)
    g = grouped(t["score"].to_numpy(), t["ratio"].to_numpy(), c.shot, c, t["hash_bits"].to_numpy(), t["side"].to_numpy())
    x = t["ctx"].to_numpy()
    known = np.isfinite(x)
    g = g & ~(known & (x > veto))
    if loose > 0:
        g |= known & (t["score"].to_numpy() <= loose) & (x <= ctx)
    return g


def choose(train: list[pd.DataFrame], cuts: tuple) -> tuple:
    """(veto, loose, ctx) grouping the most training copy pairs with at most the budget's distinct
    pairs, the tightest within SLACK of the most; a veto must not lose copy pairs beyond SLACK."""
    t = pd.concat(train)
    originals = sum(x.attrs.get("originals", 0) for x in train)
    same, distinct = (t["relation"] == "same").to_numpy(), (t["relation"] == "distinct").to_numpy()
    found = []
    for v in VETO_GRID:
        for lo in LOOSE_GRID:
            for c in (CTX_GRID if lo > 0 else (0.0,)):
                g = rule(t, cuts, v, lo, c)
                found.append((int((g & distinct).sum()), -int((g & same).sum()), (v, lo, c)))
    base = rule(t, cuts, np.inf, 0.0, 0.0)
    budget = max(SAME_BUDGET * originals, int((base & distinct).sum()))  # never more distinct pairs than the crop rule
    ok = [(n, -m, r) for n, m, r in found if n <= budget]
    most = max(m for _, m, _ in ok)
    near = [x for x in ok if x[1] >= most - SLACK * same.sum()]
    return min(near, key=lambda x: (x[0], -x[2][0], x[2][1]))[2]


def loso(tables: dict, names: list) -> None:
    family = {n: SMALL.get(n, n) for n in names}
    print("\nLEAVE-ONE-SET-OUT at the pair level (copy pairs grouped, distinct pairs grouped), crop rule alone -> with context")
    print("| left out | rule veto/loose/ctx | copy pairs | grouped: crop | grouped: +context | distinct pairs grouped: crop | +context |")
    tot = np.zeros(4, int)
    for n in names:
        train = [tables[m] for m in names if family[m] != family[n]]
        cuts = choose_cuts(train)
        r = choose(train, cuts)
        t = tables[n]
        same, distinct = (t["relation"] == "same").to_numpy(), (t["relation"] == "distinct").to_numpy()
        b, g = rule(t, cuts, np.inf, 0.0, 0.0), rule(t, cuts, *r)
        row = [int((b & same).sum()), int((g & same).sum()), int((b & distinct).sum()), int((g & distinct).sum())]
        tot += row
        print(f"| {n} | {r[0]:.3g}/{r[1]:.3g}/{r[2]:.3g} | {int(same.sum())} | {row[0]} | {row[1]} | {row[2]} | {row[3]} |", flush=True)
    print(f"| all | | | {tot[0]} | {tot[1]} | {tot[2]} | {tot[3]} |")
    # what any veto would trade, whatever rule chose it: the pairs each left-out set's crop rule
    # groups, copy pairs against ORL's distinct pairs (its photos lost), pooled over the sets
    grouped_pairs = pd.concat([tables[n][rule(tables[n], choose_cuts([tables[m] for m in names if family[m] != family[n]]), np.inf, 0.0, 0.0)]
                               .assign(left_out=n) for n in names])
    x = grouped_pairs["ctx"].to_numpy()
    same = (grouped_pairs["relation"] == "same").to_numpy()
    orl = ((grouped_pairs["relation"] == "distinct") & (grouped_pairs["left_out"] == "orl_att40")).to_numpy()
    print(f"\nany veto (context > v: not grouped) on the pairs the left-out crop rules group ({int(same.sum())} copy pairs, "
          f"{int(orl.sum())} ORL distinct pairs):")
    for v in (0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06):
        k = np.isfinite(x) & (x > v)
        print(f"  v {v}: copy pairs lost {int((k & same).sum())} ({(k & same).sum() / max(same.sum(), 1):.1%}), ORL distinct pairs removed {int((k & orl).sum())}")


if __name__ == "__main__":
    sys.exit(main())
