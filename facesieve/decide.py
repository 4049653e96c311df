"""The decide stage: pure functions from tables and arrays to one decision per file.

No I/O here. Every file gets an action (keep / remove / review / error) and a reason; later
passes (duplicates, outliers) only touch faces still kept, so each decision names the first
rule that removed the face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from facesieve.select.subset import select_subset
from facesieve.select.thresholds import (ANCHOR_MATCHES, ANCHOR_MOTION_CUT, ANCHOR_SCORE_CUT, COARSE_CUT, FACE_FIT_CUT, FACE_MATCHES, FACE_SCORE_CUT, HASH_BITS, HASH_SCORE_CUT, LONE_CUT, PAIR_HASH_BITS, PAIR_NEAREST, PAIR_VIEW_NEAREST, RATIO_CUT, RATIO_SCORE_CUT,
                                         RARE_BITS, RARE_FLOOR, RARE_SCORE_CUT, SAME_PHOTO_CUT, SHOT_CUT,
                                         WEB_FLOOR, WEB_HASH_BITS, WEB_HASH_FLOOR, WEB_HASH_MATCHES, WEB_MATCHES, WEB_MOTION_CUT, WEB_SCORE_CUT,
                                         WEB_SCORE_FLOOR)
from facesieve.vectors import l2_normalise

KEEP, REMOVE, REVIEW, ERROR = "keep", "remove", "review", "error"
IGNORE = "ignore"  # not meant as an image of the dataset (a README, a file outside the identity folders)


@dataclass
class DecideSettings:
    keep: int | None = None
    metric: str = "cosine"
    max_exhaustive: int = 2_000_000
    exact_duplicates: bool = True
    near_duplicate: float | None = None  # cosine threshold; None = no near-duplicate pass
    phash_max_bits: int = 8
    phash_min_sim: float = 0.7
    # The face-crop test (select/samephoto.py): pairs from crop_min_sim up go to it; None = no crop
    # test (the hash rule decides). A pair scoring at most same_photo_cut is one photo; at most
    # shot_cut a near-identical shot, grouped only when group_shots. The neighbour-ratio rule
    # (samephoto.Cuts) groups more pairs as one photo; 0 turns it off. Defaults: the shipped cuts.
    crop_min_sim: float | None = None
    same_photo_cut: float = SAME_PHOTO_CUT
    shot_cut: float = SHOT_CUT
    ratio_score_cut: float = RATIO_SCORE_CUT
    ratio_cut: float = RATIO_CUT
    lone_cut: float = LONE_CUT
    hash_score_cut: float = HASH_SCORE_CUT  # the whole-image hash rule (samephoto.Cuts); hash_bits -1: off
    hash_bits: int = HASH_BITS
    coarse_cut: float = COARSE_CUT  # the small-face cut (samephoto.Cuts.coarse); 0: off
    anchor_score: float = ANCHOR_SCORE_CUT  # the face in its background (samephoto.Cuts.anchor_*); motion 0: off
    anchor_motion: float = ANCHOR_MOTION_CUT
    anchor_matches: int = ANCHOR_MATCHES
    face_score: float = FACE_SCORE_CUT  # the face's own keypoint fit (samephoto.Cuts.face_*); fit 0: off
    face_fit: float = FACE_FIT_CUT
    face_matches: int = FACE_MATCHES
    rare_score: float = RARE_SCORE_CUT  # rare hashes (samephoto.Cuts.rare_*); bits -1: off
    rare_bits: int = RARE_BITS
    rare_floor: float = RARE_FLOOR
    web_motion: float = WEB_MOTION_CUT  # the background test among web photos (samephoto.Cuts.web_*); 0: off
    web_floor: float = WEB_FLOOR
    web_matches: int = WEB_MATCHES
    web_score: float = WEB_SCORE_CUT  # the crop score among web photos (samephoto.Cuts.web_score*); 0: off
    web_score_floor: float = WEB_SCORE_FLOOR
    web_hash_bits: int = WEB_HASH_BITS  # the whole-image hash among web photos (samephoto.Cuts.web_hash_*); -1: off
    web_hash_floor: float = WEB_HASH_FLOOR
    web_hash_matches: int = WEB_HASH_MATCHES
    group_shots: bool = True
    cross_identity: float | None = None  # cosine threshold; None = no cross-identity pass
    identity_overlap: float | None = None
    identity_cuts: tuple[float, ...] | None = None  # (split, match, even[, norm, same]) of select/identity.py; None = no identity pass
    empty_identities: bool = False  # True: duplicate / identity decisions may leave an identity with no kept face
    outliers: bool = True
    drop_outliers: bool = False
    # cosine under which a neighbour is nobody's match (the embedder's verification threshold):
    # the outlier rule's neighbour-label test counts only neighbours at or above it; None: all count
    match_floor: float | None = None
    extra: dict = field(default_factory=dict)

    def cuts(self):
        from facesieve.select.samephoto import Cuts

        return Cuts(self.same_photo_cut, self.shot_cut, self.ratio_score_cut, self.ratio_cut, self.lone_cut,
                    self.hash_score_cut, self.hash_bits, self.coarse_cut, self.anchor_score, self.anchor_motion,
                    self.anchor_matches, self.face_score, self.face_fit, self.face_matches, self.rare_score,
                    self.rare_bits, self.rare_floor, self.web_motion, self.web_floor, self.web_matches,
                    self.web_score, self.web_score_floor, self.web_hash_bits, self.web_hash_floor,
                    self.web_hash_matches)


def quality_weights(quality: np.ndarray) -> np.ndarray:
    """Non-negative selection weights: the scores themselves when they already are, otherwise
    their ranks scaled to (0,1] (raw regressor outputs can be negative). Unknown -> 0."""
    q = np.asarray(quality, dtype=float)
    ok = ~np.isnan(q)
    w = np.zeros_like(q)
    if not ok.any():
        return w
    if (q[ok] >= 0).all():
        w[ok] = q[ok]
    else:
        order = q[ok].argsort().argsort()
        w[ok] = (order + 1) / ok.sum()
    return w


DECISION_COLUMNS = ["action", "reason", "detail", "duplicate_of", "similarity", "outlier_score", "belongs_to"]
# reasons of the decisions that judge a face's identity; only these can take an identity's last face
IDENTITY_REASONS = ("mislabeled", "ambiguous_identity", "cross_identity_duplicate", "outlier")


def initial_decisions(files: pd.DataFrame) -> pd.DataFrame:
    """Start from the scan + faces statuses: errors and no-face files are decided here."""
    d = pd.DataFrame(index=files.index)
    d["action"] = KEEP
    d["reason"] = "kept"
    status = files["status"].to_numpy()
    reason = files["reason"].fillna("").to_numpy()
    err = status == "error"
    d.loc[err, "action"] = ERROR
    d.loc[err, "reason"] = np.where(reason[err] != "", reason[err], "unreadable")
    skipped = status == "skipped"  # set aside by the scan's rules: neither an error nor part of an identity
    d.loc[skipped, "action"] = IGNORE
    d.loc[skipped, "reason"] = np.where(reason[skipped] != "", reason[skipped], "ignored")
    noface = status == "no_face"
    d.loc[noface, "action"] = REMOVE
    d.loc[noface, "reason"] = "no_face"
    d["detail"] = ""
    d["duplicate_of"] = ""
    d["similarity"] = np.nan
    d["outlier_score"] = np.nan
    d["belongs_to"] = ""
    return d


def _set(decisions: pd.DataFrame, rows: np.ndarray, **values) -> None:
    for col, val in values.items():
        decisions.iloc[rows, decisions.columns.get_loc(col)] = val


def mark_exact_duplicates(decisions, byte_hash, pixel_hash, quality, paths, identities) -> int:
    """Same bytes or same decoded pixels within one identity: keep one (best quality, then shortest
    path), remove the rest naming the kept file. Copies under different identities are left to
    `mark_identities`, which keeps each where its face fits."""
    from facesieve.select.exact import exact_duplicates

    cand = np.flatnonzero(decisions["action"].to_numpy() == KEEP)
    if len(cand) < 2:
        return 0
    res = exact_duplicates(_within(byte_hash[cand], identities[cand]), _within(pixel_hash[cand], identities[cand]),
                           quality[cand], paths[cand])
    drop = np.flatnonzero((res["dup_group"].to_numpy() >= 0) & ~res["is_kept"].to_numpy())
    if len(drop):
        rows = cand[drop]
        kept = cand[res["kept_index"].to_numpy()[drop]]
        _set(decisions, rows, action=REMOVE, reason="exact_duplicate", similarity=1.0)
        decisions.iloc[rows, decisions.columns.get_loc("duplicate_of")] = paths[kept]
        decisions.iloc[rows, decisions.columns.get_loc("detail")] = ["same " + m for m in res["match"].to_numpy()[drop]]
    return len(drop)


def _within(hashes: np.ndarray, identities: np.ndarray) -> np.ndarray:
    """Hashes made identity-specific (missing ones stay missing), so equal hashes group per identity."""
    from facesieve.select.exact import _hash_codes

    ok = _hash_codes(hashes, len(hashes), "hashes") >= 0
    return np.where(ok, pd.Series(identities, dtype=object).astype(str) + "\0" + pd.Series(hashes, dtype=object).astype(str), "")


class _OnRows:
    """A pixel check addressed by candidate number instead of file row (and its prefetch)."""

    def __init__(self, check, rows: np.ndarray):
        self.check, self.rows = check, rows

    def __call__(self, i: int, j: int):
        return self.check(int(self.rows[i]), int(self.rows[j]))

    def peek(self, i: int, j: int):
        return getattr(self.check, "peek", self.check)(int(self.rows[i]), int(self.rows[j]))

    def same_photo(self, i: int, j: int, outright: bool = False) -> bool:
        return self.check.same_photo(int(self.rows[i]), int(self.rows[j]), outright)

    def tight(self, idx) -> np.ndarray:
        return self.check.tight(self.rows[np.asarray(idx)])

    def spectra(self, idx) -> np.ndarray:
        return self.check.spectra(self.rows[np.asarray(idx)])

    def prefetch(self, pairs, companions=()) -> None:
        if hasattr(self.check, "prefetch"):
            rows = [(int(self.rows[i]), int(self.rows[j])) for i, j in pairs]
            if companions:
                self.check.prefetch(rows, {(int(self.rows[i]), int(self.rows[j])) for i, j in companions})
            else:
                self.check.prefetch(rows)


SAME_PHOTO, SHOT = "near_duplicate", "near_identical_shot"  # the two reasons of a grouped face


def mark_near_duplicates(decisions, vectors, identities, quality, paths, phash, settings: DecideSettings, pixels=None,
                         progress=None) -> pd.DataFrame:
    """Groups around a best-quality centre within each identity; the centre is kept.

    `pixels(i, j)` (rows of the file table) -> (grouped, score) is the face-crop test
    (samephoto.SamePhotoCheck). A face whose score to its centre is at most settings.same_photo_cut
    is removed as the same photo (reason near_duplicate), one above it as a near-identical shot."""
    from facesieve.select.neardup import near_duplicate_groups

    cand = np.flatnonzero(decisions["action"].to_numpy() == KEEP)
    if len(cand) < 2:
        return pd.DataFrame()
    use_pixels = pixels is not None and settings.crop_min_sim is not None
    if use_pixels and hasattr(pixels, "set_floors"):  # the rare-hash rule: how spread each identity's hashes are
        pixels.set_floors(cand, identities[cand])
    res = near_duplicate_groups(
        np.asarray(vectors[cand], np.float32), identities[cand], quality[cand], paths[cand], settings.near_duplicate,
        phash=None if phash is None else phash[cand], phash_max_bits=settings.phash_max_bits, phash_min_sim=settings.phash_min_sim,
        pixels=_OnRows(pixels, cand) if use_pixels else None,
        pixel_min_sim=settings.crop_min_sim if use_pixels else 1.0,
        pixel_neighbours=settings.extra.get("crop_neighbours", 6),
        pixel_hashes=None if getattr(pixels, "hashes", None) is None else pixels.hashes[cand],
        pixel_hash_bits=int(settings.extra.get("pair_hash_bits", PAIR_HASH_BITS)) if use_pixels else -1,
        pixel_nearest=int(settings.extra.get("pair_nearest", PAIR_NEAREST)) if use_pixels else 0,
        pixel_view_nearest=int(settings.extra.get("pair_view_nearest", PAIR_VIEW_NEAREST)) if use_pixels and hasattr(pixels, "spectra") else 0,
        progress=progress,
    )
    drop = np.flatnonzero((res["group"].to_numpy() >= 0) & ~res["is_kept"].to_numpy())
    if len(drop):
        rows = cand[drop]
        kept = cand[res["kept_index"].to_numpy()[drop]]
        score = res["pixel_residual"].to_numpy()[drop]
        # a near-identical shot: between the two cuts (above the shot cut only the same-photo ratio
        # rules group a pair); NaN (grouped by embedding or hash) stays a same-photo decision
        via = res["partner_index"].to_numpy()[drop]  # where the score is to a closer face of the group than its kept one
        scored_to = np.where(via >= 0, cand[np.maximum(via, 0)], kept)
        shot = settings.group_shots & (score > settings.same_photo_cut) & (score <= settings.shot_cut)
        if hasattr(pixels, "same_photo"):  # the check knows which rule grouped the pair
            shot &= np.array([not (s == s and pixels.same_photo(int(r), int(k))) for r, k, s in zip(rows, scored_to, score)], bool)
        _set(decisions, rows, action=REMOVE, reason=SAME_PHOTO)
        _set(decisions, rows[shot], reason=SHOT)
        decisions.iloc[rows, decisions.columns.get_loc("duplicate_of")] = paths[kept]
        decisions.iloc[rows, decisions.columns.get_loc("similarity")] = res["similarity"].to_numpy()[drop]
        # which rule grouped a same-photo pair above the plain cut (a crop score alone would puzzle a reviewer)
        words = np.full(len(rows), "", dtype=object)
        if hasattr(pixels, "evidence"):  # not in a run without the crop test (pixels None)
            named = np.flatnonzero(~shot & ~np.isnan(score))
            words[named] = pixels.evidence(zip(rows[named], scored_to[named]))
        decisions.iloc[rows, decisions.columns.get_loc("detail")] = [
            ((f"near-identical shot (crop score {r:.3f}" if is_shot else f"same photo (crop score {r:.3f}")
             + (f", {w}" if w else "") + (f" to {paths[cand[v]]})" if v >= 0 else ")"))
            if s == "pixels" else "matched by " + s
            for s, r, is_shot, v, w in zip(res["signal"].to_numpy()[drop], score, shot, via, words)
        ]
    groups = res.assign(row=cand)
    return groups[groups["group"] >= 0]


def mark_cross_identity(decisions, vectors, identities, paths, has_face, settings: DecideSettings) -> pd.DataFrame:
    """Faces of different identities closer than the duplicate threshold (one photo, or one
    person, filed twice). Without the identity pass both go to review; with it (the default) the
    pairs only feed `mark_identities`, which decides where each copy belongs.

    Returns the pairs: path_a, path_b, identity_a, identity_b, similarity, row_a, row_b."""
    from facesieve.select.crossid import cross_identity_pairs, index_for

    columns = ["path_a", "path_b", "identity_a", "identity_b", "similarity", "row_a", "row_b"]
    cand = np.flatnonzero(has_face)
    if len(cand) < 2 or len(pd.unique(identities[cand])) < 2:
        return pd.DataFrame(columns=columns)
    pairs = cross_identity_pairs(
        np.asarray(vectors[cand], np.float32), identities[cand], settings.cross_identity, index=index_for(len(cand))
    )
    out = []
    action = decisions["action"].to_numpy()
    for i, j, sim in zip(pairs["i"].to_numpy(), pairs["j"].to_numpy(), pairs["similarity"].to_numpy()):
        a, b = cand[i], cand[j]
        out.append((paths[a], paths[b], identities[a], identities[b], float(sim), a, b))
        if settings.identity_cuts is not None:
            continue
        for me, other in ((a, b), (b, a)):
            if action[me] == KEEP:
                _set(decisions, np.array([me]), action=REVIEW, reason="cross_identity_duplicate", similarity=float(sim))
                decisions.iloc[me, decisions.columns.get_loc("duplicate_of")] = paths[other]
                action[me] = REVIEW
    return pd.DataFrame(out, columns=columns)


def mark_identities(decisions, vectors, identities, paths, byte_hash, pixel_hash, has_face, settings: DecideSettings,
                    same_photo: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Folders holding two people, and photos filed under several identities (select/identity.py).

    Judges the faces still kept. `same_photo` (rows i, j) are same-photo pairs across identities
    from a duplicate detector; equal file or pixel hashes are always copies. A mislabeled face is
    removed when its photo is kept under the identity it belongs to (nothing is lost), else it
    goes to review (removed with `drop_outliers`); undecided and even splits go to review.
    """
    from facesieve.select.identity import copy_groups, identity_decisions

    cand = np.flatnonzero(has_face & (decisions["action"].to_numpy() == KEEP))
    if len(cand) < 2:
        return pd.DataFrame()
    pos = np.full(len(decisions), -1, dtype=np.int64)
    pos[cand] = np.arange(len(cand))
    pairs = None
    if same_photo is not None and len(same_photo[0]):
        a, b = pos[np.asarray(same_photo[0], np.int64)], pos[np.asarray(same_photo[1], np.int64)]
        ok = (a >= 0) & (b >= 0)
        pairs = (a[ok], b[ok])
    copies = copy_groups(byte_hash[cand], pixel_hash[cand], identities[cand], pairs)
    split, match, even, *rest = settings.identity_cuts  # norm, same: absent in a 3-tuple (the absolute split alone)
    res = identity_decisions(np.asarray(vectors[cand], np.float32), identities[cand], copies, threshold=split, match=match, even=even,
                             norm=rest[0] if rest else None, same=rest[1] if len(rest) > 1 else 1.0)
    verdict = res["verdict"].to_numpy()
    belongs = res["belongs_to"].to_numpy()
    kept_copy = {c: r for c, v, r in zip(copies, verdict, cand) if c >= 0 and v == "copy_kept"}
    soft = REMOVE if settings.drop_outliers else REVIEW
    # a mislabeled copy whose photo is kept under the identity it belongs to: removed, nothing is lost
    there = np.array([c in kept_copy and identities[kept_copy[c]] == b for c, b in zip(copies, belongs)], dtype=bool)
    action = {"mislabeled": soft, "outlier": soft, "copy_review": REVIEW, "ambiguous": REVIEW, "undecided": REVIEW}
    reason = {"mislabeled": "mislabeled", "outlier": "outlier", "copy_review": "cross_identity_duplicate",
              "ambiguous": "ambiguous_identity", "undecided": "ambiguous_identity"}
    hit = np.isin(verdict, list(action))
    rows = cand[hit]
    act = np.array([action[v] for v in verdict[hit]], dtype=object)
    act[there[hit] & (verdict[hit] == "mislabeled")] = REMOVE
    col = decisions.columns.get_loc
    decisions.iloc[rows, col("action")] = act
    decisions.iloc[rows, col("reason")] = [reason[v] for v in verdict[hit]]
    decisions.iloc[rows, col("detail")] = res["detail"].to_numpy()[hit]
    decisions.iloc[rows, col("belongs_to")] = belongs[hit]
    dup = hit & there
    decisions.iloc[cand[dup], col("duplicate_of")] = [paths[kept_copy[c]] for c in copies[dup]]
    for i in np.flatnonzero(hit & (verdict == "copy_review")):  # undecided copies name a copy under another identity
        other = np.flatnonzero((copies == copies[i]) & (identities[cand] != identities[cand[i]]))
        if len(other):
            decisions.iloc[cand[i], col("duplicate_of")] = paths[cand[other[0]]]
    return res.assign(row=cand, copy_group=copies)


def protect_identities(decisions, identities, has_face) -> list[str]:
    """Give back an identity's faces that identity decisions removed when none of its faces would
    be kept or left for review: the decisions stay in `detail`, the files in the output. (Faces
    sent to review are not lost: a person decides, e.g. on an even split or undecided copies.)
    Returns the identities restored."""
    action = decisions["action"].to_numpy()
    reason = decisions["reason"].to_numpy()
    kept = pd.Series((action == KEEP) | (action == REVIEW)).groupby(identities).any()
    restored = []
    for ident in kept.index[~kept.to_numpy()]:
        rows = np.flatnonzero((identities == ident) & has_face & np.isin(reason, IDENTITY_REASONS) & (action != KEEP))
        if not len(rows):
            continue
        restored.append(str(ident))
        for r in rows:
            was = f"{reason[r]} ({action[r]})" + (f": {decisions['detail'].iat[r]}" if decisions["detail"].iat[r] else "")
            _set(decisions, np.array([r]), action=KEEP, reason="kept", duplicate_of="", belongs_to="")
            decisions.iloc[r, decisions.columns.get_loc("detail")] = f"kept so that {ident} is not emptied; was {was}"
    return restored


def identity_losses(decisions, identities) -> tuple[int, list[dict]]:
    """(identities with faces of which none is kept or left for review, identities with more than
    half their files not kept: removed, in error or sent to review). K-subset selection
    (`not_selected`) is the user's choice and not a loss."""
    action = decisions["action"].to_numpy()
    d = pd.DataFrame({"identity": identities, "lost": (action != KEEP) & (decisions["reason"].to_numpy() != "not_selected"),
                      "kept": (action == KEEP) | (action == REVIEW),
                      "face": ~decisions["reason"].isin(["no_face"]).to_numpy() & (action != ERROR)})
    d = d[(d["identity"] != "") & (action != IGNORE)]  # files set aside by the scan are no identity's photos
    g = d.groupby("identity").agg(files=("lost", "size"), lost=("lost", "sum"), kept=("kept", "sum"), faces=("face", "sum"))
    emptied = int(((g["kept"] == 0) & (g["faces"] > 0)).sum())
    halved = g[g["lost"] * 2 > g["files"]]
    return emptied, [{"identity": str(i), "files": int(r.files), "not_kept": int(r.lost)}
                     for i, r in halved.sort_values("lost", ascending=False).iterrows()]


def mark_outliers(decisions, vectors, identities, has_face, settings: DecideSettings) -> pd.DataFrame:
    """Faces far from their identity whose neighbours carry other labels: review (or remove)."""
    from facesieve.select.crossid import index_for
    from facesieve.select.outliers import DEFAULT_MAX_FIT, outlier_scores

    cand = np.flatnonzero(has_face)
    if len(cand) < 3:
        return pd.DataFrame()
    # a face found mislabeled counts as the identity it belongs to: its photo's copy under that
    # identity is then not "a neighbour with another label"
    labels = np.where(decisions["belongs_to"].to_numpy() != "", decisions["belongs_to"].to_numpy(), identities) \
        if "belongs_to" in decisions else identities
    fit = settings.extra.get("outlier_max_fit", DEFAULT_MAX_FIT)  # the bench tries others
    res = outlier_scores(np.asarray(vectors[cand], np.float32), labels[cand], index=index_for(len(cand)), max_fit=fit,
                         min_neighbour_sim=settings.extra.get("outlier_min_neighbour_sim", settings.match_floor))
    decisions.iloc[cand, decisions.columns.get_loc("outlier_score")] = res["score"].to_numpy()
    flag = res["is_outlier"].to_numpy() & (decisions["action"].to_numpy()[cand] == KEEP)
    rows = cand[flag]
    if len(rows):
        _set(decisions, rows, action=REMOVE if settings.drop_outliers else REVIEW, reason="outlier")
        decisions.iloc[rows, decisions.columns.get_loc("detail")] = [
            f"robust_z {z:.1f}, same-label neighbours {s:.0%}, average fit {f:.2f} of its identity's"
            for z, s, f in zip(res["robust_z"].to_numpy()[flag], res["knn_same_share"].to_numpy()[flag], res["fit_ratio"].to_numpy()[flag])
        ]
    return res.assign(row=cand)


def select_per_identity(
    decisions: pd.DataFrame,
    identities: np.ndarray,
    paths: np.ndarray,
    vectors: np.ndarray,
    weights: np.ndarray,
    settings: DecideSettings,
) -> pd.DataFrame:
    """FaceDuplicationFilter's K-subset per identity, among the faces still kept.

    `vectors` has one row per file (rows of files without a face are ignored). Returns one row per
    identity: identity, n_candidates, k, method, score.
    """
    k = settings.keep
    rows = []
    kept = decisions["action"].to_numpy() == KEEP
    for ident in pd.unique(identities[kept]):
        idx = np.flatnonzero(kept & (identities == ident))
        if len(idx) <= k:
            decisions.iloc[idx, decisions.columns.get_loc("reason")] = "too_few"
            rows.append({"identity": ident, "n_candidates": len(idx), "k": k, "method": "all", "score": np.nan})
            continue
        res = select_subset(
            np.asarray(vectors[idx], dtype=np.float64),
            weights[idx],
            k,
            names=list(paths[idx]),
            max_exhaustive=settings.max_exhaustive,
        )
        chosen = idx[res.indices]
        dropped = np.setdiff1d(idx, chosen)
        decisions.iloc[chosen, decisions.columns.get_loc("reason")] = "selected"
        decisions.iloc[dropped, decisions.columns.get_loc("action")] = REMOVE
        decisions.iloc[dropped, decisions.columns.get_loc("reason")] = "not_selected"
        explain_not_selected(decisions, chosen, dropped, paths, vectors)
        rows.append({"identity": ident, "n_candidates": len(idx), "k": k, "method": res.method, "score": float(res.score)})
    return pd.DataFrame(rows, columns=["identity", "n_candidates", "k", "method", "score"])


def explain_not_selected(decisions: pd.DataFrame, chosen: np.ndarray, dropped: np.ndarray, paths: np.ndarray,
                         vectors: np.ndarray) -> None:
    """Say why each face left out of the K-subset was dropped, even one of higher quality than a
    kept face: the subset is chosen to cover the identity, so a face whose look a kept face
    already gives is the one to go. detail names that kept face, similarity is their cosine."""
    if not len(dropped) or not len(chosen):
        return
    v = np.asarray(vectors, dtype=np.float64)
    unit = l2_normalise(v)
    sims = unit[dropped] @ unit[chosen].T
    best = sims.argmax(axis=1)
    cos = sims[np.arange(len(dropped)), best]
    detail = [f"represented by kept {paths[chosen[b]]} (cosine {c:.3f}); the K faces are chosen to cover the identity, "
              "not by quality alone" for b, c in zip(best, cos)]
    decisions.iloc[dropped, decisions.columns.get_loc("detail")] = np.array(detail, dtype=object)
    decisions.iloc[dropped, decisions.columns.get_loc("similarity")] = cos


def mean_encodings(decisions: pd.DataFrame, identities: np.ndarray, vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Per identity, the float64 mean of the kept faces' vectors (FaceDuplicationFilter's best_encoding)."""
    out = {}
    kept = decisions["action"].to_numpy() == KEEP
    for ident in pd.unique(identities[kept]):
        idx = np.flatnonzero(kept & (identities == ident))
        out[ident] = np.asarray(vectors[idx], dtype=np.float64).mean(axis=0)
    return out
