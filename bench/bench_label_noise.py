"""Label noise benchmark: photos filed under the wrong identity, with and without copies left behind.

Run by hand (the first run embeds the shared sets through the real detect -> align -> embed path
and caches the vectors under --cache, ~10 minutes on 2 cores; a run then takes about 3 minutes on a quiet machine):

    python bench/bench_label_noise.py --loso               # the figures in docs/thresholds.md
    python bench/bench_label_noise.py --sets pins_web --no-64   # shipped cuts, one set

Cases, built from the real shared sets on their embeddings (a copy left in the source folder is
byte-identical, so it has the same vector and the same file hash):
- contamination c in {5, 20, 40, 50}%: photos of identity A are put into identity B's folder until
  they are c of B's folder; either *moved* (A keeps the rest) or *copied* (A keeps all of them, so
  every intruder has a byte-identical copy in A). Pairs (A, B) are drawn at random, several per set.
- single misfiled photos: one photo of a person from *another* set put into a folder.
- the same on 64 px versions of the face-crop sets (longest side 64, re-saved as JPEG quality
  70-95); celeb5_web is left out there: its uncropped web photos at 64 px leave faces of ~20 px.

Per case it reports: intruders flagged (action not keep), true faces flagged, copies resolved to
the right identity (the copy in the source kept, the one in the wrong folder flagged
`mislabeled` with the right `belongs_to`), decisions that are wrong at 50% (a group kept under the
wrong identity or flagged to the wrong one; review counts as right there), identities emptied.

Baseline, same embeddings: cleanlab's `find_label_issues` on out-of-fold kNN class probabilities
(5 folds, k = 10, cosine weights), run in the peers venv (`--peers-python`, default
/work/venv-peers/bin/python) through a subprocess on saved arrays, so cleanlab never becomes a
facesieve dependency. Skipped with a message when that interpreter cannot import it.

Thresholds: `--loso` chooses the (split, match, even, norm, fit, same) cuts on every set but one (both resolutions) and
reports on the one left out (leave-one-set-out); without it the shipped defaults
(facesieve/select/identity.py) are used. `false_outlier_rule` is the part of the true faces flagged
that the older per-face outlier rule (select/outliers.py) flagged, not the identity pass.
`false_new` and `wrong_new` count only the true faces that the same cuts leave alone in the
uncontaminated set: what the contamination caused, apart from the odd true photos (a mask, a
drawing, a face lit from behind) that every run sends to review.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
SETS = ("pins_web", "celeb5_web", "orl_att40", "yaleB_cropped10", "essex_faces94_19")
SMALL_SETS = ("pins_web", "orl_att40", "yaleB_cropped10", "essex_faces94_19")  # face crops (celeb5 is uncropped web photos)
LEVELS = (0.05, 0.20, 0.40, 0.50)
SMALL = 64
MATCH_FLOOR = True  # the outlier rule's neighbour floor (decide.DecideSettings.match_floor); --no-match-floor: off


def make_small(src: Path, dst: Path, seed: int = 0) -> None:
    """Every image of `src` with its longest side SMALL px, re-saved as JPEG (quality 70-95)."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(seed)
    for p in sorted(src.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in (".jpg", ".jpeg", ".png", ".pgm", ".webp"):
            continue
        out = dst / p.relative_to(src).with_suffix(".jpg")
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        scale = SMALL / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
        img.save(out, "JPEG", quality=int(rng.integers(70, 96)))


def embed_folder(folder: Path, cache: Path) -> pd.DataFrame:
    """path, identity, sha256, has_face and the unit SFace vector of every image (cached)."""
    npz = cache / "table.parquet"
    if npz.exists():
        t = pd.read_parquet(npz)
        t["vector"] = list(np.load(cache / "vectors.npy"))
        return t
    from facesieve.config import RunConfig
    from facesieve.preparation import prepare

    config = RunConfig(dataset=folder, out=cache / "out", workspace=cache / "ws", report=False, jobs=1, overlap=False)
    prepared = prepare(config, quality=False)
    files, emb_table, vectors = prepared.files, prepared.emb_table, prepared.vectors
    frame = files[["image_id", "path", "identity", "sha256"]].copy()
    pos = pd.Series(np.arange(len(emb_table)), index=emb_table["image_id"].to_numpy())
    frame["vec_row"] = frame["image_id"].map(pos).fillna(-1).astype(int)
    frame = frame[(files["status"] == "ok").to_numpy() & (frame["identity"] != "").to_numpy()].reset_index(drop=True)
    vec = np.zeros((len(frame), np.asarray(vectors).shape[1]), np.float32)
    has = frame["vec_row"].to_numpy() >= 0
    vec[has] = np.asarray(vectors)[frame["vec_row"].to_numpy()[has]]
    frame["has_face"] = has
    table = frame[["path", "identity", "sha256", "has_face"]]
    cache.mkdir(parents=True, exist_ok=True)
    table.to_parquet(npz)
    np.save(cache / "vectors.npy", vec)
    t = table.copy()
    t["vector"] = list(vec)
    return t


def load_set(name: str, small: bool, cache: Path) -> pd.DataFrame:
    folder = DATA / name
    if small:
        folder = cache / "images64" / name
        make_small(DATA / name, folder)
    return embed_folder(folder, cache / ("emb64" if small else "emb") / name)


# ---------------------------------------------------------------- cases


def contamination_case(t: pd.DataFrame, a: str, b: str, level: float, copy: bool, rng) -> pd.DataFrame | None:
    """Photos of `a` put into `b` until they are `level` of b's folder; moved, or copied (the
    originals stay in a, byte-identical). Columns added: truth (the person), intruder, copy_of."""
    n_b = int((t["identity"] == b).sum())
    src = np.flatnonzero((t["identity"] == a).to_numpy())
    want = int(round(level / (1 - level) * n_b))
    if want < 1 or want > len(src):
        return None
    pick = rng.choice(src, want, replace=False)
    t = t.assign(truth=t["identity"], intruder=False, copy_of=-1)
    if copy:
        extra = t.iloc[pick].copy()
        extra["copy_of"] = pick
        extra["identity"] = b
        extra["intruder"] = True
        extra["path"] = [f"{b}/copy_of_{Path(p).name}" for p in extra["path"]]
        return pd.concat([t, extra], ignore_index=True)
    t.loc[pick, "identity"] = b
    t.loc[pick, "intruder"] = True
    t.loc[pick, "path"] = [f"{b}/moved_{Path(p).name}" for p in t.loc[pick, "path"]]
    return t


def singles_case(t: pd.DataFrame, foreign: pd.DataFrame, n: int, rng) -> pd.DataFrame:
    """One photo of a person from another set put into each of n random folders."""
    folders = rng.choice(pd.unique(t["identity"]), min(n, t["identity"].nunique()), replace=False)
    picks = foreign.iloc[rng.choice(len(foreign), len(folders), replace=False)].copy()
    picks["truth"] = ["other:" + i for i in picks["identity"]]
    picks["identity"] = folders
    picks["path"] = [f"{f}/misfiled_{k}_{Path(p).name}" for k, (f, p) in enumerate(zip(folders, picks["path"]))]
    picks["intruder"], picks["copy_of"] = True, -1
    return pd.concat([t.assign(truth=t["identity"], intruder=False, copy_of=-1), picks], ignore_index=True)


def decide_case(t: pd.DataFrame, split: tuple[float, ...] | None) -> pd.DataFrame:
    """The run's decisions on one case, through facesieve.decide (exact duplicates within
    identities, cross-identity pairs, the identity pass, outliers, the no-emptying guard). The
    near-duplicate pass is left out: it needs the pixels and has its own benchmark."""
    from facesieve.decide import (DecideSettings, initial_decisions, mark_cross_identity, mark_exact_duplicates,
                                  mark_identities, mark_outliers, protect_identities)
    from facesieve.models.zoo import for_embedder
    from facesieve.select.identity import match_floor

    frame = pd.DataFrame({"status": "ok", "reason": ""}, index=range(len(t)))
    d = initial_decisions(frame)
    ids = t["identity"].to_numpy().astype(str)
    paths = t["path"].to_numpy().astype(str)
    sha = t["sha256"].to_numpy().astype(str)
    E = np.stack(t["vector"].to_numpy()).astype(np.float32)
    has = t["has_face"].to_numpy(bool)
    extra = {"outlier_max_fit": split[4]} if split is not None and len(split) > 4 else {}
    cuts = (*split[:4], *split[5:6]) if split else None  # (split, match, even, norm[, same]); split[4] is the outlier rule's fit
    s = DecideSettings(cross_identity=for_embedder("sface").cross_identity, identity_cuts=cuts, extra=extra,
                       match_floor=match_floor("sface") if MATCH_FLOOR else None)
    mark_exact_duplicates(d, sha, sha, np.ones(len(t)), paths, ids)
    cross = mark_cross_identity(d, E, ids, paths, has, s)
    if split is not None:
        same = (cross["row_a"].to_numpy(np.int64), cross["row_b"].to_numpy(np.int64)) if len(cross) else None
        mark_identities(d, E, ids, paths, sha, sha, has, s, same)
    mark_outliers(d, E, ids, has, s)
    protect_identities(d, ids, has)
    return d


def score_case(t: pd.DataFrame, flagged: np.ndarray, belongs: np.ndarray | None, pair: tuple[str, str] | None) -> dict:
    """Intruders flagged, true faces flagged (in the two folders involved, or all folders for
    singles), copies resolved right (original kept, copy flagged), wrong faces (an intruder kept,
    or a true face flagged as not belonging: only review counts as neither)."""
    intr = t["intruder"].to_numpy()
    ids = t["identity"].to_numpy()
    scope = np.isin(ids, pair) if pair else np.ones(len(t), bool)
    true = scope & ~intr & t["has_face"].to_numpy()
    out = {"intruders": int(intr.sum()), "flagged": float(flagged[intr].mean()) if intr.any() else np.nan,
           "false": float(flagged[true].mean()) if true.any() else np.nan}
    cp = np.flatnonzero(t["copy_of"].to_numpy() >= 0)
    if len(cp):
        orig = t["copy_of"].to_numpy()[cp]
        right = flagged[cp] & ~flagged[orig]
        out["copies_right"] = float(right.mean())
        if belongs is not None:
            out["belongs_right"] = float((belongs[cp] == t["truth"].to_numpy()[cp]).mean())
    return out


def emptied(t: pd.DataFrame, d: pd.DataFrame) -> int:
    from facesieve.decide import identity_losses

    return identity_losses(d, t["identity"].to_numpy().astype(str))[0]


# ---------------------------------------------------------------- the cleanlab baseline


CLEANLAB_WORKER = r'''
import sys, numpy as np
from cleanlab.filter import find_label_issues
from sklearn.model_selection import StratifiedKFold, KFold
from sklearn.neighbors import KNeighborsClassifier
data = np.load(sys.argv[1], allow_pickle=True)
out = {}
for key in data.files:
    if not key.startswith("labels_"):
        continue
    name = key[len("labels_"):]
    X, y = data["X_" + name], data[key]
    counts = np.bincount(y)
    folds = StratifiedKFold(5, shuffle=True, random_state=0) if counts[counts > 0].min() >= 5 else KFold(5, shuffle=True, random_state=0)
    probs = np.zeros((len(y), y.max() + 1))
    for tr, te in folds.split(X, y):
        knn = KNeighborsClassifier(n_neighbors=min(10, len(tr)), weights="distance", metric="cosine").fit(X[tr], y[tr])
        probs[np.ix_(te, knn.classes_)] = knn.predict_proba(X[te])
    probs = np.clip(probs, 1e-6, None)
    probs /= probs.sum(axis=1, keepdims=True)
    out[name] = find_label_issues(y, probs)
np.savez(sys.argv[2], **out)
'''


def cleanlab_flags(cases: dict[str, pd.DataFrame], python: str) -> dict[str, np.ndarray] | None:
    """cleanlab.filter.find_label_issues on out-of-fold kNN class probabilities (5 folds, k = 10,
    cosine, distance weights) per case, in the peers interpreter; None when it cannot run."""
    check = subprocess.run([python, "-c", "import cleanlab, sklearn"], capture_output=True)
    if check.returncode != 0:
        print(f"cleanlab baseline skipped: {python} cannot import cleanlab and scikit-learn", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {}
        for name, t in cases.items():
            keep = t["has_face"].to_numpy(bool)
            arrays["X_" + name] = np.stack(t["vector"].to_numpy()[keep]).astype(np.float32)
            arrays["labels_" + name] = pd.factorize(t["identity"].to_numpy()[keep])[0]
        np.savez(Path(tmp) / "in.npz", **arrays)
        (Path(tmp) / "worker.py").write_text(CLEANLAB_WORKER)
        subprocess.run([python, str(Path(tmp) / "worker.py"), str(Path(tmp) / "in.npz"), str(Path(tmp) / "out.npz")], check=True)
        res = np.load(Path(tmp) / "out.npz")
        out = {}
        for name, t in cases.items():
            flags = np.zeros(len(t), bool)
            flags[t["has_face"].to_numpy(bool)] = res[name]
            out[name] = flags
        return out


# ---------------------------------------------------------------- the run


def build_cases(t: pd.DataFrame, foreign: pd.DataFrame, pairs: int, seed: int) -> dict[str, tuple[pd.DataFrame, tuple | None, str]]:
    """name -> (case table, the two folders involved or None, kind)."""
    rng = np.random.default_rng(seed)
    ids = t.loc[t["has_face"], "identity"].value_counts()
    ids = ids[ids >= 4].index.to_numpy()
    out = {}
    for level in LEVELS:
        for copy in (False, True):
            made = 0
            for _ in range(50 * pairs):
                if made == pairs:
                    break
                a, b = rng.choice(ids, 2, replace=False)
                case = contamination_case(t, a, b, level, copy, rng)
                if case is None:
                    continue
                kind = f"{'copy' if copy else 'move'} {int(level * 100)}%"
                out[f"{kind.replace(' ', '_').replace('%', '')}_{made}"] = (case, (a, b), kind)
                made += 1
    for k in range(pairs):
        out[f"single_{k}"] = (singles_case(t, foreign, 20, rng), None, "single misfiled")
    return out


def method_name(split: tuple[float, ...]) -> str:
    """'facesieve@' and the cuts, each written exactly (`choose` reads them back)."""
    return "facesieve@" + "/".join(f"{x:g}" for x in split)


def run_set(name: str, small: bool, cache: Path, splits: list[float], pairs: int, seed: int, peers: str | None) -> pd.DataFrame:
    """One row per (case, method): the scores of facesieve at each split and of cleanlab."""
    t = load_set(name, small, cache)
    others = [load_set(o, small, cache) for o in SETS + ("deepface13",) if o != name]
    foreign = pd.concat(others, ignore_index=True)
    foreign = foreign[foreign["has_face"]]
    cases = build_cases(t, foreign, pairs, seed)
    clean = t.assign(truth=t["identity"], intruder=False, copy_of=-1)
    flagged_clean = {split: dict(zip(clean["path"], decide_case(clean, split)["action"].to_numpy() != "keep"))
                     for split in splits}
    rows = []
    for cname, (case, pair, kind) in cases.items():
        for split in splits:
            d = decide_case(case, split)
            flagged = d["action"].to_numpy() != "keep"
            sc = score_case(case, flagged, d["belongs_to"].to_numpy(), pair)
            by_outlier = flagged & (d["reason"].to_numpy() == "outlier")
            # a true face the same run flags in the uncontaminated set too: not the contamination's doing
            before = np.array([flagged_clean[split].get(p, False) for p in case["path"]])
            sc.update(wrong=_wrong(case, d, pair), emptied=emptied(case, d), review=float(
                (d["action"].to_numpy()[case["intruder"].to_numpy()] == "review").mean()),
                false_outlier_rule=score_case(case, by_outlier, None, pair)["false"],
                false_new=score_case(case, flagged & ~before, None, pair)["false"],
                wrong_new=_wrong(case, d, pair, ~before))
            rows.append({"set": name, "px": SMALL if small else "full", "case": cname, "kind": kind,
                         "method": method_name(split), **sc})
    if peers:
        flags = cleanlab_flags({c: v[0] for c, v in cases.items()}, peers)
        for cname, (case, pair, kind) in cases.items():
            if flags is None:
                break
            sc = score_case(case, flags[cname], None, pair)
            rows.append({"set": name, "px": SMALL if small else "full", "case": cname, "kind": kind, "method": "cleanlab", **sc})
    return pd.DataFrame(rows)


def _wrong(t: pd.DataFrame, d: pd.DataFrame, pair, counted: np.ndarray | None = None) -> float:
    """Share of the faces in scope decided wrongly: an intruder kept, or a true face flagged as not
    belonging (mislabeled / outlier / removed). Review on an even split or of undecided copies is
    not wrong. `counted`: the true faces whose flags count (default all)."""
    intr = t["intruder"].to_numpy()
    scope = np.isin(t["identity"].to_numpy(), pair) if pair else np.ones(len(t), bool)
    action, reason = d["action"].to_numpy(), d["reason"].to_numpy()
    bad_true = ~intr & (action != "keep") & ~np.isin(reason, ("ambiguous_identity", "cross_identity_duplicate"))
    if counted is not None:
        bad_true &= counted
    bad = (intr & (action == "keep")) | bad_true
    return float(bad[scope].mean())


def cost(df: pd.DataFrame) -> float:
    """What the cuts are chosen by, averaged over cases: intruders missed + copies resolved wrongly
    + 10 x true faces flagged (the target allows 2% false flags against 5% missed); at 50%, where
    review is right, 10 x the faces decided wrongly instead of the false flags."""
    half = df["kind"].str.contains("50%").to_numpy()
    c = (1 - df["flagged"]).fillna(0) + (1 - df.get("copies_right", pd.Series(np.nan, index=df.index))).fillna(0)
    c += 10 * np.where(half, df["wrong"].fillna(0), df["false"].fillna(0))
    return float(c.mean())


SLACK = 0.01  # cuts whose cost is within this share of the lowest are equally good on the training sets


def choose(df: pd.DataFrame, held_out: str) -> tuple[float, ...]:
    """The (split, match, even, norm, fit, same) with the lowest cost on every set but `held_out`
    (both resolutions). Cuts within SLACK of the lowest cost are a tie the training sets cannot
    break (with pins_web held out, match 0.60 and 0.75 cost 0.0577 and 0.0581): of those, the one
    that asks the most evidence before flagging a face: the highest match (two folders' groups are
    one person), then the lowest split, norm and fit (a folder splits, a face is far)."""
    train = df[(df["set"] != held_out) & df["method"].str.startswith("facesieve")]
    costs = train.groupby("method").apply(cost)
    near = [tuple(float(x) for x in m.split("@")[1].split("/")) for m in costs.index[costs <= costs.min() * (1 + SLACK)]]
    return min(near, key=lambda c: (-c[1], c[0], c[3], c[4]))


def report(df: pd.DataFrame, loso: bool, default: float) -> pd.DataFrame:
    """Per resolution and case kind: facesieve at each held-out set's cuts (or the defaults) vs
    cleanlab; and facesieve per set."""
    parts = []
    for s in df["set"].unique():
        split = choose(df, s) if loso else default
        name = method_name(split)
        mine = df[(df["set"] == s) & (df["method"] == name)].assign(split=name.split("@")[1])
        parts.append(mine)
        parts.append(df[(df["set"] == s) & (df["method"] == "cleanlab")].assign(split=np.nan))
    sel = pd.concat(parts, ignore_index=True)
    sel["split"] = sel["split"].fillna("")
    sel["who"] = np.where(sel["method"] == "cleanlab", "cleanlab", "facesieve")
    agg = {"flagged": "mean", "false": "mean", "copies_right": "mean"}
    extra = {"false_outlier_rule": "mean", "false_new": "mean", "belongs_right": "mean", "wrong": "mean", "wrong_new": "mean",
             "review": "mean", "emptied": "max",
             "split": lambda v: ",".join(sorted({x for x in v if x}))}
    a = sel.groupby(["px", "kind", "who"]).agg({**agg, **{k: v for k, v in extra.items() if k in sel}}).reset_index()
    mine = sel[sel["who"] == "facesieve"]
    by_set = mine.groupby(["px", "kind", "set"]).agg({**agg, "false_outlier_rule": "mean", "false_new": "mean", "wrong": "mean",
                                                      "wrong_new": "mean", "split": "first"}).reset_index()
    return a, by_set


def main(argv=None) -> int:
    from facesieve.select.identity import EVEN, MATCH, NORM, SAME, SPLIT
    from facesieve.select.outliers import DEFAULT_MAX_FIT

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=list(SETS), help="shared sets to contaminate")
    ap.add_argument("--no-64", action="store_true", help="skip the 64 px version")
    ap.add_argument("--pairs", type=int, default=4, help="random (source, target) pairs per level and mode; also single-misfit repeats")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", type=float, nargs="+", default=[0.30, 0.35], help="identity split cuts tried")
    ap.add_argument("--matches", type=float, nargs="+", default=[0.60, 0.75], help="cross-folder match cuts tried")
    ap.add_argument("--evens", type=float, nargs="+", default=[0.75], help="size ratios at which a split is even, tried")
    ap.add_argument("--norms", type=float, nargs="+", default=[0.55],
                    help="cosines of two groups' mean faces below which a folder splits, tried (0: the absolute split alone)")
    ap.add_argument("--fits", type=float, nargs="+", default=[0.4, 0.5],
                    help="outlier rule: fit ratios below which a far face is another person's, tried (9: not required)")
    ap.add_argument("--sames", type=float, nargs="+", default=[SAME],
                    help="average cosines at or above which two groups stay one person whatever --norms says, tried "
                         "(default SFace's published verification threshold; 1: no such ceiling, the rule before it)")
    ap.add_argument("--no-match-floor", action="store_true",
                    help="outlier rule: count every nearest face in its neighbour-label test, not only those at or "
                         "above SFace's verification threshold (the rule before the floor)")
    ap.add_argument("--loso", action="store_true", help="choose the split leave-one-set-out and report on the set left out")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "facesieve-label-noise", help="embeddings and 64 px images")
    ap.add_argument("--peers-python", default="/work/venv-peers/bin/python", help="interpreter with cleanlab for the baseline ('' to skip)")
    ap.add_argument("--csv", type=Path, default=None, help="also write every case's scores here")
    args = ap.parse_args(argv)
    global MATCH_FLOOR
    MATCH_FLOOR = not args.no_match_floor
    shipped = (SPLIT, MATCH, EVEN, NORM, DEFAULT_MAX_FIT, SAME)
    grid = {(s, m, e, n, f, q) for s in args.splits for m in args.matches for e in args.evens for n in args.norms
            for f in args.fits for q in args.sames}
    splits = sorted(grid | ({shipped} if not args.loso else set()))
    frames = []
    for small in (False,) if args.no_64 else (False, True):
        for name in args.sets:
            if small and name not in SMALL_SETS:
                continue
            frames.append(run_set(name, small, args.cache, splits, args.pairs, args.seed, args.peers_python or None))
            print(f"done {name} {'64 px' if small else 'full'}", file=sys.stderr, flush=True)
    df = pd.concat(frames, ignore_index=True)
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.loso:
        print("(split, match, even, norm, fit, same) chosen leave-one-set-out: " + ", ".join(f"{s}: {choose(df, s)}" for s in df["set"].unique()))
    table, by_set = report(df, args.loso, shipped)
    with pd.option_context("display.width", 200, "display.max_rows", 400, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
        print("\nfacesieve per set (each at its own cuts):")
        print(by_set.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
